"""A short supernet run on generated data, measured before and after training (used by the
end-to-end tests in ``tests/tasks`` and by the longer ``bench/task_supernet.py`` runs). It drives the
library from outside (training, then search's BN calibration), so it lives here, not in ``train``.

The metric of a subnet is always taken after BN recalibration on the task's calibration set, at
step 0 (untrained weights) and after training, on the validation split.
"""
from __future__ import annotations

import os

from scalenas.search.calibrate import Calibrator
from scalenas.tasks.base import build_task
from scalenas.train.checkpoint import load_supernet
from scalenas.train.config import RunConfig
from scalenas.train.engine import SupernetTrainer

def evaluate_points(supernet, task, archs: dict, split: str, calib: Calibrator, max_images=None) -> dict:
    out = {}
    for name, arch in archs.items():
        supernet.set_active(arch)
        calib.calibrate(supernet)
        out[name] = task.evaluate(supernet, split, max_images=max_images)[task.metric_name]
    return out


def quick_supernet_run(cfg_dict: dict, split: str = "val", calib_images: int = 16, max_images=None) -> dict:
    """Train ``cfg_dict`` and return the metric of the largest and hrnet-or-smallest subnets at step 0 and
    at the end, with the training losses."""
    cfg = RunConfig.model_validate(cfg_dict)
    task = build_task(cfg.task)
    space = cfg.space.build()
    pose = task.head.pose_rule
    archs = {"largest": space.largest(pose), "smallest": space.smallest(pose)}
    if 4 in space.depth_choices:
        archs["hrnet"] = space.hrnet(pose)
    calib = Calibrator(task, num_images=calib_images, batch_size=min(16, calib_images))
    trainer = SupernetTrainer(cfg)
    before = evaluate_points(trainer.net, task, archs, split, calib, max_images)
    res = trainer.train()
    trainer.close()
    net, _ = load_supernet(res["checkpoint"])
    after = evaluate_points(net, task, archs, split, calib, max_images)
    return {"before": before, "after": after, "losses": res["losses"], "checkpoint": res["checkpoint"],
            "metric": task.metric_name, "run_dir": os.path.abspath(cfg.run_dir)}
