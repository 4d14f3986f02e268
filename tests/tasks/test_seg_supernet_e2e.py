"""A short CPU supernet run on the synthetic segmentation data ends clearly above chance and above
the same subnets' mIoU at step 0 (BN-recalibrated in both cases)."""
import numpy as np
import pytest

from scalenas.data.synth_seg import generate
from quickrun import quick_supernet_run


@pytest.mark.slow
def test_short_seg_supernet_run_learns(tmp_path, tiny_space_cfg):
    data = tmp_path / "data"
    generate(str(data), train=64, val=16, test=4, size=(64, 64), seed=0)
    cfg = {"run_dir": str(tmp_path / "run"), "seed": 0, "space": dict(tiny_space_cfg),
           "task": {"name": "segmentation", "format": "folder", "root": str(data), "search_holdout": 8,
                    "crop_size": [64, 64], "base_size": 64, "scale_range": [0.75, 1.25], "workers": 0,
                    "eval_batch_size": 16, "vis_images": 0},
           "sampler": {"kind": "grouped"},
           "train": {"steps": 200, "batch_size": 8, "workers": 1, "ckpt_every": 0, "progress": False,
                     "tensorboard": False, "optimizer": {"name": "adam", "lr": 0.004, "weight_decay": 0.0},
                     "schedule": {"name": "poly", "warmup_steps": 10}}}
    r = quick_supernet_run(cfg, calib_images=16)
    # chance: predict the most frequent class everywhere -> mIoU = freq(bg) / num_classes
    from scalenas.tasks.seg_metrics import majority_class_miou
    from scalenas.tasks.base import build_task

    task = build_task(cfg["task"])
    chance = majority_class_miou(task.build_dataset("val", train=False), task.head.num_classes)
    print("mIoU before", r["before"], "after", r["after"], "chance", round(chance, 2))
    for name in r["after"]:
        assert r["after"][name] > r["before"][name] + 5.0, name
        # measured after 200 steps: 14.1 / 14.8 vs chance 8.8 (120 steps gave 13-14 on some CPUs and 9.5 / 11.2 on
        # an AVX-512 BF16 EPYC, fp32 both: a run this short is chaotic, so the margin comes from steps)
        assert r["after"][name] > 1.3 * chance, name
    assert np.mean(r["losses"][-10:]) < 0.8 * np.mean(r["losses"][:10])
