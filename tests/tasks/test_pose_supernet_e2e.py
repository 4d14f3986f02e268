"""A short CPU supernet run on the synthetic pose data ends with AP clearly above the untrained
model's AP (both BN-recalibrated)."""
import numpy as np
import pytest

from scalenas.data.synth_pose import generate
from scalenas.train.quickrun import quick_supernet_run


@pytest.mark.slow
def test_short_pose_supernet_run_learns(tmp_path):
    data = tmp_path / "data"
    generate(str(data), train=64, val=12, test=4, size=(128, 128), seed=0)
    split = {"images": "images/{}", "annotations": "annotations/{}.json"}
    cfg = {"run_dir": str(tmp_path / "run"), "seed": 0,
           "space": {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
                     "stage1_blocks": 1},
           "task": {"name": "pose-bottomup", "data_root": str(data),
                    **{s: {k: v.format(s) for k, v in split.items()} for s in ("train", "val", "test")},
                    "keypoints": "coco", "input_size": 128, "search_holdout": 8, "workers": 0, "vis_images": 0},
           "sampler": {"kind": "grouped", "smallest_fusion": 0.0},
           "train": {"steps": 150, "batch_size": 8, "workers": 2, "ckpt_every": 0, "progress": False,
                     "tensorboard": False, "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
                     "schedule": {"name": "poly", "warmup_steps": 10}}}
    r = quick_supernet_run(cfg, calib_images=16)
    print("AP before", r["before"], "after", r["after"])
    best_after = max(r["after"].values())
    assert best_after > max(r["before"].values()) + 2.0
    assert np.mean(r["losses"][-10:]) < np.mean(r["losses"][:10])
