"""Demo sizes as plain data: the space, data, training and search settings per task, scaled to a
time budget. Everything here is an ordinary run config, so the demo exercises the same code paths
as a full-scale run."""
from __future__ import annotations

import copy

#: the demo's space (width 12 for pose): depths 2..4, so the hrnet point (depth 4) is one of its subnets
DEMO_SPACE = {"width": 8, "modules_per_stage": [1, 2, 1], "depth_choices": [2, 3, 4], "stem_channels": 16,
              "stage1_blocks": 1}

SEG = {
    "data": {"size": (128, 128), "train": 240, "val": 40, "test": 60},
    "space": DEMO_SPACE,
    "task": {"name": "segmentation", "format": "folder", "splits": {"train": "train", "val": "val", "test": "test"},
             "search_holdout": 40, "crop_size": [128, 128], "base_size": 128, "scale_range": [0.75, 1.25],
             "scale_step": 0.05, "flip": True, "ignore_index": 255, "ohem": False, "class_weights": False,
             "test_mode": "single", "eval_batch_size": 10, "workers": 0, "vis_images": 6},
    "model": {"bn_momentum": 0.1, "init": "kaiming"},
    "sampler": {"kind": "grouped"},
    "train": {"batch_size": 8, "workers": 2, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                                                            "weight_decay": 1e-4},
              "schedule": {"name": "poly", "power": 0.9, "warmup_steps": 20}, "amp": "auto", "ckpt_every": 50,
              "log_every": 10},
    "search": {"strategy": "evolution", "parents": 16, "crossover_prob": 0.25, "bit_mutation_prob": 0.2,
               "depth_mutation_prob": 0.1, "objectives": ["metric", "gflops"], "calib_images": 32,
               "calib_batch_size": 16, "latency": "none"},
}

#: top-down pose (`--task pose`): one 128x96 crop per ground-truth person box (heatmaps 32x24), people of
#: 0.15-0.95 of the 256-px image (38-243 px, a 1:6 span; from 0.065, most of the loss is in people under 50 px
#: whose crops are a blur), and a lighter augmentation than the 210-epoch recipe's (no rotation instead of 45,
#: scale 0.25 instead of 0.35). Batch 16: a step costs 0.31 s against 0.44 s at 32 on the quiet 2-core machine
#: (the W12 supernet is overhead-bound), and 1000 steps of 16 crops reach val AP 27.8 / 24.4 / 22.0 (largest /
#: smallest / hrnet) where 500 of 32 reach 20.5 / 18.0 / 15.1 (the same crops seen; both with rotation 30);
#: with two torch threads batch 32 runs 1.2x the crops per second, and 1,000 steps of 32 then match 1,600 of 16
#: (test AP 31.1 / 27.9 / 24.3 against 32.1 / 26.7 / 24.1, one core each, no rotation), so 16 stays.
POSE = {
    "data": {"size": (256, 256), "train": 240, "val": 40, "test": 60, "heights": (0.15, 0.95)},
    "space": {**DEMO_SPACE, "width": 12},
    "task": {"name": "pose-topdown", "train": {"images": "images/train", "annotations": "annotations/train.json"},
             "val": {"images": "images/val", "annotations": "annotations/val.json"},
             "test": {"images": "images/test", "annotations": "annotations/test.json"},
             "keypoints": "coco", "input_hw": [128, 96], "sigma": 2.0, "search_holdout": 40, "workers": 0,
             # no rotation augmentation: the synthetic people carry their own (a fifth at any angle, the rest
             # within ~8 degrees of upright), and at the demo's 1,600 steps rotation 30 cost 6-8 test AP
             # (bench/topdown_curve.py's data, one core: largest/smallest/hrnet 24.3/19.4/17.9 against
             # 32.1/26.7/24.1 without); a recipe of 210 epochs keeps method §5.4's rotation 45
             # no half-body crops (method §5.4's p 0.3): a run of minutes spends its crops better on the whole
             # people it is tested on. 1,600 steps, seed 0, val AP largest / smallest / hrnet 47.1 / 43.4 / 44.5
             # without, 44.2 / 40.8 / 39.4 with (test 39.5 / 37.8 / 38.1 and 40.1 / 38.2 / 36.0; topdown-recipe.md)
             "vis_images": 6, "augment": {"rotation_factor": 0, "scale_factor": 0.25, "half_body_prob": 0.0},
             # DARK (Zhang et al. 2020), encoding and decoding: at 32x24 heatmaps HRNet's rounded targets cap a
             # perfect network at test AP 91 (100 unbiased). 2,400 steps, test AP largest/smallest/hrnet: DARK's
             # decoding added 4-7 to every subnet of five supernets; unbiased targets (DARK decoder) gave
             # 45.0/41.3/39.3 and 44.6/40.6/36.9 against rounded 45.6/41.7/39.4 and 34.3/31.5/28.7 (seeds 0, 1)
             "unbiased_encoding": True, "inference": {"batch_size": 32, "dark": True}},
    "model": {"bn_momentum": 0.1, "init": "kaiming"},
    "sampler": {"kind": "grouped", "smallest_fusion": 0.0},
    # crops read in the training process: a crop is one affine warp, and the two cores then both train (2
    # torch threads, not 1 beside 2 loader workers): 88 demo steps took 32.4 s against 37.6 on 2 cores
    # Adam 0.02: 1,600 steps (one core, seed 0) gave the hrnet point val / test AP 37.5 / 32.7, 40.6 / 32.6,
    # 44.5 / 38.1 and 23.5 / 20.8 at 0.005 / 0.01 / 0.02 / 0.04 (docs/results/topdown-recipe.md): a run of minutes
    # needs the large steps, and 0.04 overshoots. A warm-up of 8 epochs (~216 steps of 442 crops; 6-11% of the
    # 2,000-3,700 steps a 12-minute demo trains): from step 20, Adam 2e-2 left seed 0 (one core, 2,854 steps) at
    # test AP best <= hrnet / hrnet 42.18 / 41.67, and 221 warm-up steps gave 51.45 / 47.50 (the top-down bench over
    # 4 seeds: every subnet's mean +3 to +6 AP with 500 of 6,000 steps; docs/results/topdown-bench-seeds.md)
    "train": {"batch_size": 16, "workers": 0, "optimizer": {"name": "adam", "lr": 0.02, "weight_decay": 0.0},
              "schedule": {"name": "poly", "power": 0.9, "warmup_epochs": 8}, "amp": "auto", "ckpt_every": 50,
              "log_every": 10},
    "search": {"strategy": "evolution", "parents": 16, "crossover_prob": 0.25, "bit_mutation_prob": 0.2,
               "depth_mutation_prob": 0.1, "objectives": ["metric", "gflops"], "calib_images": 64,
               "calib_batch_size": 32, "latency": "none"},
}

#: bottom-up pose (`--task pose-bottomup`): whole images, HigherHRNet head and grouping
POSE_BOTTOMUP = {
    "data": {"size": (128, 128), "train": 240, "val": 40, "test": 60},
    "space": {**DEMO_SPACE, "width": 12},
    "task": {"name": "pose-bottomup", "train": {"images": "images/train", "annotations": "annotations/train.json"},
             "val": {"images": "images/val", "annotations": "annotations/val.json"},
             "test": {"images": "images/test", "annotations": "annotations/test.json"},
             "keypoints": "coco", "input_size": 128, "sigma": 2.0, "search_holdout": 40, "workers": 0,
             "vis_images": 6},
    "model": {"bn_momentum": 0.1, "init": "kaiming"},
    "sampler": {"kind": "grouped", "smallest_fusion": 0.0},
    "train": {"batch_size": 8, "workers": 2, "optimizer": {"name": "adam", "lr": 0.002, "weight_decay": 0.0},
              "schedule": {"name": "poly", "power": 0.9, "warmup_steps": 20}, "amp": "auto", "ckpt_every": 50,
              "log_every": 10},
    "search": {"strategy": "evolution", "parents": 16, "crossover_prob": 0.25, "bit_mutation_prob": 0.2,
               "depth_mutation_prob": 0.1, "objectives": ["metric", "gflops"], "calib_images": 32,
               "calib_batch_size": 16, "latency": "none"},
}


#: the demo's tasks (``--task``; ``both`` runs seg and pose), their settings and their report headings
TASKS = {"seg": SEG, "pose": POSE, "pose-bottomup": POSE_BOTTOMUP}
HEADINGS = {"seg": "Segmentation (ScaleNet-S)", "pose": "Top-down pose (ScaleNet-P)",
            "pose-bottomup": "Bottom-up pose (ScaleNet-P, HigherHRNet head)"}


def settings_for(task: str, budget_s: float) -> dict:
    """Copy of the task's settings with data and search sizes scaled down for small budgets."""
    s = copy.deepcopy(TASKS[task])
    if budget_s < 240:  # the test-suite budget: a few minutes at most
        s["data"].update(train=48, val=12, test=12)
        s["task"]["search_holdout"] = 12
        s["search"]["calib_images"] = 16
        s["search"]["parents"] = 6
        s["train"]["ckpt_every"] = 10
        s["task"]["vis_images"] = 2
    return s


#: shares of the budget per phase: training gets most of it, the search the next share (and whatever training
#: leaves). A top-down evaluation is a few crops per image (no grouping: ~2 s on the 2-core machine), so its
#: search needs less time and training, which sets its AP, gets more. Its deploy (4 extractions, test AP,
#: latency, one ONNX export) took 15 s of a 12-minute budget (2%) on the 2-core machine: 6% leaves it 3x.
PHASES = {"default": {"data": 0.04, "train": 0.50, "search": 0.28, "deploy": 0.18},
          "pose": {"data": 0.02, "train": 0.82, "search": 0.10, "deploy": 0.06}}


def phase_budgets(budget_s: float, task: str = "seg") -> dict:
    """Seconds per phase of ``task``'s demo."""
    return {k: share * budget_s for k, share in PHASES.get(task, PHASES["default"]).items()}
