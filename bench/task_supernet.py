"""A longer CPU supernet run on the synthetic data of one task, with the metric of the largest,
smallest and hrnet subnets (BN-recalibrated) before and after training, and the data-loader
throughput next to the training throughput.

    python bench/task_supernet.py --task seg  --steps 600
    python bench/task_supernet.py --task pose-topdown    # W16, 4000 images, 3000 steps: 8-11 min (machine's pace)
    python bench/task_supernet.py --task pose-topdown --minutes 15   # as many steps as 15 min of training allow
    python bench/task_supernet.py --task pose-bottomup   # the top-down bench first (--init topdown), then 2,000
                                                         # steps on 960 256-px images: ~40-50 min on one core
    python bench/task_supernet.py --task pose-bottomup --init runs/td/run   # from that folder's last checkpoint
    python bench/task_supernet.py --task pose-bottomup --init none --size 128 --train-images 240 --val-images 40 \
        --rotation 30 --batch 8 --lr 3e-3 --warmup 20   # the bottom-up bench before session 20 (--task pose: an alias)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Sequence

import torch

sys.path.insert(0, os.path.dirname(__file__))

from _common import bench_json, machine, print_table  # noqa: E402
from quickrun import quick_supernet_run  # noqa: E402
from scalenas.demo.pipeline import TRAIN_MARGIN, probe_step_seconds  # noqa: E402
from scalenas.train.config import RunConfig  # noqa: E402
from scalenas.utils.io import dumps_json  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

SPACE = {"modules_per_stage": [1, 2, 1], "depth_choices": [2, 3, 4], "stem_channels": 16, "stage1_blocks": 1}
#: per task: branch-0 width, steps (or minutes of training, when set and --steps is not given), image size (the
#: top-down input is a person crop, see TOPDOWN_INPUT), batch, Adam LR, linear warm-up steps, training and
#: validation images. Bottom-up
#: needs more width to learn keypoints + tags in CPU-minutes. Top-down trained W12 for a fixed 6,000 steps on 4,000
#: images in sessions 15-18:
#: more images keep paying at that length (2,000: val AP 61.35 / 58.85 / 59.48; 4,000: 63.19 / 60.43 / 62.38 on one
#: thread, 61.16 / 59.63 / 59.92 on two), and
#: a clock-sized run gets ~4,700 steps in the machine's slow hours, too few (8,000 images: 55.9 / 54.5 / 54.2);
#: 200 val images (~460 people) because 40 moved a run by a few AP (README, the top-down bench). Its warm-up,
#: 1,000 steps: the 20 of the other tasks left subnets as low as 50.7 (seeds 0-2); over seeds 0-3 on one thread
#: 500 gave 66.2 / 63.9 / 63.5 with one seed under 60, 1,000 gave 67.9 / 64.9 / 63.8 with none under 63.0
#: (docs/results/topdown-bench-seeds.md). Since session 19 it is W16 (the bottom-up width) for 3,000 steps:
#: over seeds 0-3 on one thread 73.2 / 68.3 / 65.6, none under 63.7, in 8.3-10.4 minutes where W12 for 6,000
#: steps took 18.6-18.9, which leaves a slower machine (AVX2 only) room under the bar's 20 minutes.
#: Bottom-up since session 20 (init, rotation: --init and --rotation): the sweep's best recipe (bench/bottomup_sweep.py,
#: combined_256_960): 2,000 steps from the same seed's top-down supernet (it learns to locate joints in crops
#: first; from scratch the same run gave 1.72 / 3.11 / 2.55), 960 images drawn at 256 px (the 128-px images
#: left every run under 2), no rotation (the synthetic people carry their own), 200 val images (40 moved a run
#: by up to 3 AP), batch 16 and, since session 21, Adam 1.2e-2 after a 500-step warm-up (seeds 0, 2, 3: 11.62 /
#: 12.31 / 12.52, 15.87 / 15.58 / 15.49 and 11.54 / 11.90 / 13.29, where Adam 6e-3, session 20's, gave 10.29 /
#: 10.20 / 8.59, 10.51 / 9.54 / 9.04 and 10.50 / 10.06 / 10.14: its hrnet subnet under 10 in 2 of 4 seeds;
#: batch 8 and Adam 3e-3 from step 20 before that: 9.22 / 7.96 / 6.95 and 8.65 / 8.25 / 7.80 on seeds 1 and 2;
#: docs/results/bottomup-bench-seeds.md). Before: 128 px, 240 images, from scratch,
#: batch 8, Adam 3e-3 from step 20, rotation 30, 40 val images (the README's command for it).
DEFAULTS = {"seg": {"width": 8, "steps": 600, "minutes": None, "size": 128, "batch": 8, "lr": 0.004,
                    "warmup": 20, "train_images": 240, "val_images": 40, "init": None, "rotation": None},
            "pose-bottomup": {"width": 16, "steps": 2000, "minutes": None, "size": 256, "batch": 16, "lr": 0.012,
                              "warmup": 500, "train_images": 960, "val_images": 200, "init": "topdown",
                              "rotation": 0},
            "pose-topdown": {"width": 16, "steps": 3000, "minutes": None, "size": 256, "batch": 16, "lr": 0.02,
                             "warmup": 1000, "train_images": 4000, "val_images": 200, "init": None,
                             "rotation": None}}
CALIB_IMAGES = 32  # BN recalibration set of every scored subnet (crops, for top-down)
TOPDOWN_INPUT = [128, 96]  # (H, W) person crops; heatmaps 32x24
#: lighter than the 210-epoch recipe's rotation 45 / scale 0.35 / half-body 0.3 (method §5.4), for a run of
#: CPU-minutes: no rotation and no half-body crops, as the demo (see demo.settings.POSE and topdown-recipe.md)
TOPDOWN_AUGMENT = {"rotation_factor": 0, "scale_factor": 0.25, "half_body_prob": 0.0}
#: DARK encoding and decoding, as the demo: the rounded targets cap AP near 90 at 32x24 heatmaps
TOPDOWN_DARK = {"unbiased_encoding": True, "inference": {"dark": True}}
ALIASES = {"pose": "pose-bottomup"}


def config(task: str, data: str, run_dir: str, steps: int, size: int, width: int, batch: int, lr: float,
           seed: int = 0, warmup: int = 20, init: str | None = None, rotation: float | None = None) -> dict:
    """The run config; ``init``: a checkpoint whose tensors of matching names and shapes the supernet starts
    from (model.pretrained); ``rotation``: bottom-up's largest random rotation (None: HigherHRNet's 30)."""
    # top-down crops are read in the training process (2 torch threads), as in the demo: as fast as 2 loader
    # workers here (135-153 against 145-163 ms a step), and the step probe of --minutes then times what trains
    # (with 2 fresh workers it read 181-210 ms where training ran at 130-140)
    workers = 0 if task == "pose-topdown" else 2
    train = {"steps": steps, "batch_size": batch, "workers": workers, "ckpt_every": 0, "progress": True,
             "tensorboard": False, "schedule": {"name": "poly", "warmup_steps": warmup}, "amp": "auto",
             "optimizer": {"name": "adam", "lr": lr, "weight_decay": 0.0}}
    if task == "seg":
        t = {"name": "segmentation", "format": "folder", "root": data, "search_holdout": 16, "crop_size": [size, size],
             "base_size": size, "scale_range": [0.75, 1.25], "workers": 0, "eval_batch_size": 16, "vis_images": 0}
        sampler = {"kind": "grouped"}
    else:
        split = {"images": "images/{}", "annotations": "annotations/{}.json"}
        t = {"name": task, "root": data, "keypoints": "coco", "search_holdout": 16, "workers": 0, "vis_images": 0,
             **{s: {k: v.format(s) for k, v in split.items()} for s in ("train", "val", "test")}}
        t.update({"input_hw": TOPDOWN_INPUT, "augment": TOPDOWN_AUGMENT, **TOPDOWN_DARK} if task == "pose-topdown"
                 else {"input_size": size, **({"augment": {"max_rotation": rotation}} if rotation is not None else {})})
        sampler = {"kind": "grouped", "smallest_fusion": 0.0}
    return {"run_dir": run_dir, "seed": seed, "space": {**SPACE, "width": width}, "task": t, "sampler": sampler,
            "train": train, **({"model": {"pretrained": init}} if init else {})}


def init_checkpoint(spec: str, out: str, width: int, seed: int,
                    pinned: Sequence[str] = ()) -> tuple[str, dict | None]:
    """The checkpoint of ``--init`` and, for ``topdown``, the top-down run's JSON record. ``topdown``: this
    bench's top-down run (its defaults, the same width and seed, and the ``pinned`` arguments, e.g. the
    bottom-up sweep's ``--steps 3000``) trained once under OUT/topdown_init and kept there; a folder: the last
    checkpoint of that run folder (or of its ``run`` subfolder, as --out leaves it); a file: that checkpoint.
    A missing one raises ValueError naming it."""
    from scalenas.train.checkpoint import list_checkpoints
    from scalenas.utils.io import atomic_write_json

    record = None
    if spec == "topdown":
        spec = os.path.join(out, "topdown_init")
        done = os.path.join(spec, "record.json")
        args = ["--task", "pose-topdown", "--width", str(width), "--seed", str(seed), *pinned, "--out", spec]
        if not os.path.exists(done):
            print(f"--init topdown: training the top-down supernet first (task_supernet.py {' '.join(args)})")
            atomic_write_json(done, {"args": args, **bench_json("task_supernet.py", args)})
        record = json.load(open(done))
        if record["args"][:-2] != args[:-2]:  # a kept run of other settings (its --out aside: it may move)
            raise ValueError(f"--init topdown: {done} was trained with {' '.join(record['args'][:-2])}, not "
                             f"{' '.join(args[:-2])}; give another --out")
    if os.path.isdir(spec):
        run = os.path.join(spec, "run") if os.path.isdir(os.path.join(spec, "run")) else spec
        found = list_checkpoints(run)
        if not found:
            raise ValueError(f"--init {spec}: no checkpoint (checkpoints/step_*.pt) in {run}")
        return found[-1], record
    if not os.path.isfile(spec):
        raise ValueError(f"--init {spec}: no such file or folder (give a checkpoint, a run folder or 'topdown')")
    return spec, record


def _input(args) -> str:
    if args.task == "pose-topdown":
        data = f"{TOPDOWN_INPUT[0]}x{TOPDOWN_INPUT[1]} crops of {args.train_images} {args.size}x{args.size} images"
    else:
        data = f"{args.train_images} images of {args.size}x{args.size}"
    return f"{data} (val: {args.val_images} unseen images)"


def _aps(metrics: dict) -> str:
    return " / ".join(f"{metrics[k]:.2f}" for k in ("largest", "smallest", "hrnet"))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["seg", "pose-topdown", "pose-bottomup", "pose"], default="seg",
                    help="pose is pose-bottomup (its old name)")
    ap.add_argument("--steps", type=int, help="training steps (default: the task's, see DEFAULTS)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="instead of --steps: as many steps as fit this many minutes of training, from steps timed "
                         "on this machine first, as the demo sizes its training (default: the task's, see DEFAULTS)")
    ap.add_argument("--size", type=int, help="synthetic image size (default: the task's)")
    ap.add_argument("--batch", type=int, help="batch size (default: the task's)")
    ap.add_argument("--lr", type=float, help="Adam learning rate (default: the task's)")
    ap.add_argument("--train-images", type=int, help="synthetic training images (default: the task's)")
    ap.add_argument("--val-images", type=int, help="synthetic validation images (default: the task's)")
    ap.add_argument("--heights", default=None, metavar="LO,HI",
                    help="pose: person heights as fractions of the image's short side (default: the generator's)")
    ap.add_argument("--width", type=int, default=None, help="branch-0 width (default: the task's)")
    ap.add_argument("--warmup", type=int, help="linear warm-up steps of the poly schedule (default: the task's)")
    ap.add_argument("--init", default=None, metavar="CHECKPOINT|RUN|topdown|none",
                    help="pose-bottomup: start the supernet from a checkpoint's tensors of matching names and "
                         "shapes (a run folder: its last checkpoint; 'topdown': train this bench's top-down "
                         "supernet first, same width and seed, kept under OUT/topdown_init; 'none': from scratch); "
                         "the bottom-up head starts fresh (default: the task's)")
    ap.add_argument("--rotation", type=float, default=None,
                    help="pose-bottomup: largest random rotation in degrees (default: the task's)")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed (initial weights, sampling, augmentation); the data stays seed 0")
    ap.add_argument("--out", default=None, help="keep the data and run here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true")
    return ap


def main():
    ap = parser()
    args = ap.parse_args()
    args.task = ALIASES.get(args.task, args.task)
    d = DEFAULTS[args.task]
    if args.steps is None and args.minutes is None:
        args.minutes = d["minutes"]
    if args.task != "pose-bottomup" and (args.rotation is not None or args.init == "topdown"):
        ap.error(f"--rotation and --init topdown are pose-bottomup's; --task {args.task} takes neither")
    for key in ("steps", "size", "batch", "lr", "warmup", "width", "train_images", "val_images", "init", "rotation"):
        if getattr(args, key) is None:
            setattr(args, key, d[key])
    setup_process()
    out = args.out or tempfile.mkdtemp(prefix=f"bench_{args.task}_")
    init, init_record = None, None
    if args.init and args.init != "none":
        try:
            init, init_record = init_checkpoint(args.init, out, args.width, args.seed)
        except ValueError as e:
            ap.error(str(e))
    start_run = time.time()  # after the top-down head start of --init topdown, which its record times
    data = os.path.join(out, "data")
    if not os.path.exists(data):
        if args.task == "seg":
            from scalenas.data.synth_seg import generate
        else:
            from scalenas.data.synth_pose import generate
        pose_heights = args.heights and args.task != "seg"
        extra = {"heights": tuple(float(v) for v in args.heights.split(","))} if pose_heights else {}
        print(generate(data, train=args.train_images, val=args.val_images, test=8, size=(args.size, args.size),
                       seed=0, **extra))
    width = args.width
    cfg = config(args.task, data, os.path.join(out, "run"), args.steps, args.size, width, args.batch, args.lr,
                 args.seed, args.warmup, init, args.rotation)
    if args.minutes:
        probe = probe_step_seconds(RunConfig.model_validate(cfg))
        args.steps = cfg["train"]["steps"] = int(args.minutes * 60 / (probe * TRAIN_MARGIN))
        print(f"measured {probe * 1e3:.0f} ms per training step: {args.steps} steps fit {args.minutes:g} minutes")
    t0 = time.time()
    r = quick_supernet_run(cfg, calib_images=CALIB_IMAGES)
    end = time.time()
    run_s, wall = end - t0, end - start_run  # wall: data generation and probe included, the top-down start not
    rows = [[name, r["before"][name], r["after"][name]] for name in r["after"]]
    chance = None
    if args.task == "seg":
        from scalenas.tasks.base import build_task
        from scalenas.tasks.seg_metrics import majority_class_miou

        task = build_task(cfg["task"])
        chance = majority_class_miou(task.build_dataset("val", train=False), task.head.num_classes)
    print_table(["subnet", f"val {r['metric']} at step 0", f"val {r['metric']} after {args.steps} steps"], rows,
                f"{args.task} supernet W{width}, {_input(args)}, {args.steps} steps, batch {args.batch}, "
                f"Adam {args.lr:g} (warm-up {args.warmup} steps), seed {args.seed}, grouped sampling, "
                f"{'from ' + args.init + ', ' if init else ''}"
                f"{f'rotation {args.rotation:g}, ' if args.rotation is not None else ''}"
                f"BN recalibrated on {CALIB_IMAGES} train images ({machine()}); "
                f"wall {wall / 60:.1f} min in all, {run_s / 60:.1f} of them training and evaluating")
    logs = [json.loads(x) for x in open(os.path.join(out, "run", "train_log.jsonl"))]
    ips = sorted(x["img_per_s"] for x in logs)[len(logs) // 2]
    if chance is not None:
        print(f"chance (the most frequent class everywhere): val mIoU {chance:.2f}")
    print(f"median training throughput {ips:.1f} img/s; first/last loss {r['losses'][0]:.4f} / {r['losses'][-1]:.4f}")
    if init:
        print(f"started from {init}" + (f" (the top-down run: val AP {_aps(init_record['after'])}, "
                                        f"{init_record['wall_s'] / 60:.1f} min more)" if init_record else ""))
    if args.json:
        print(dumps_json({"before": r["before"], "after": r["after"], "metric": r["metric"], "steps": args.steps,
                          "train_images": args.train_images, "lr": args.lr, "warmup": args.warmup, "seed": args.seed,
                          "threads": torch.get_num_threads(), "train_img_per_s": ips, "wall_s": wall,
                          "train_eval_s": run_s, "chance": chance, "size": args.size, "batch": args.batch,
                          "width": width, "rotation": args.rotation, "init": init, "init_record": init_record},
                         indent=None))


if __name__ == "__main__":
    main()
