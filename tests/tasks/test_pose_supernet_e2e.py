"""A short CPU supernet run on the synthetic pose data through the engine: the heatmap and tag
losses fall and the BN-recalibrated subnets evaluate with pycocotools.

Whether AP rises above the untrained model's within a CPU-minutes budget is NOT asserted: measured
here, 150 steps from scratch left AP at 0.0 (heatmap peaks stay under the 0.1 detection threshold);
`bench/task_supernet.py --task pose` is the longer run.
"""
import math

import numpy as np
import pytest

from scalenas.data.synth_pose import generate
from scalenas.train.quickrun import quick_supernet_run


@pytest.mark.slow
def test_short_pose_supernet_run_trains_and_evaluates(tmp_path):
    data = tmp_path / "data"
    generate(str(data), train=32, val=6, test=2, size=(96, 96), seed=0)
    split = {"images": "images/{}", "annotations": "annotations/{}.json"}
    cfg = {"run_dir": str(tmp_path / "run"), "seed": 0,
           "space": {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
                     "stage1_blocks": 1},
           "task": {"name": "pose-bottomup", "data_root": str(data),
                    **{s: {k: v.format(s) for k, v in split.items()} for s in ("train", "val", "test")},
                    "keypoints": "coco", "input_size": 96, "search_holdout": 4, "workers": 0, "vis_images": 0},
           "sampler": {"kind": "grouped", "smallest_fusion": 0.0},
           "train": {"steps": 40, "batch_size": 8, "workers": 2, "ckpt_every": 0, "progress": False,
                     "tensorboard": False, "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
                     "schedule": {"name": "poly", "warmup_steps": 5}}}
    r = quick_supernet_run(cfg, calib_images=8)
    assert np.mean(r["losses"][-5:]) < 0.5 * np.mean(r["losses"][:5])
    for ap in list(r["before"].values()) + list(r["after"].values()):
        assert math.isfinite(ap) and 0.0 <= ap <= 100.0
