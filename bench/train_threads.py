"""Supernet training step time for torch intra-op threads x loader workers, and the default rule.

    python bench/train_threads.py                  # threads {1,2} x workers {0,2}, W8 seg supernet
    python bench/train_threads.py --width 16 --steps 12 --rounds 3

Each (threads, workers) pair trains the same small segmentation supernet (synthetic 128x128 images,
batch 8, grouped sampling) for ``--steps`` steps; the pairs run in alternating order over
``--rounds`` rounds so that a machine-wide slowdown hits all alike. A step's time is read from the
engine's own log (batch / img_per_s); the first step of each run (warm-up) is dropped. The last column
is the thread count ``utils.runtime.default_threads`` picks for that number of loader workers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import print_table  # noqa: E402
from scalenas.deploy.runtime import device_string  # noqa: E402
from scalenas.train.config import RunConfig  # noqa: E402
from scalenas.train.engine import train_supernet  # noqa: E402
from scalenas.utils.runtime import default_threads, setup_process, usable_cores  # noqa: E402

SPACE = {"modules_per_stage": [1, 2, 1], "depth_choices": [2, 3, 4], "stem_channels": 16, "stage1_blocks": 1}
BATCH = 8


def config(data: str, run_dir: str, steps: int, size: int, width: int, threads: int, workers: int) -> dict:
    task = {"name": "segmentation", "format": "folder", "root": data, "crop_size": [size, size], "base_size": size,
            "scale_range": [0.75, 1.25], "workers": 0, "vis_images": 0}
    train = {"steps": steps, "batch_size": BATCH, "workers": workers, "threads": threads, "ckpt_every": 0,
             "log_every": 1, "progress": False, "tensorboard": False, "optimizer": {"name": "adam", "lr": 0.004}}
    return {"run_dir": run_dir, "seed": 0, "space": {**SPACE, "width": width}, "task": task, "train": train}


def step_times(cfg: dict) -> list[float]:
    """Seconds per step of one short run (the first, warm-up step dropped)."""
    if os.path.exists(cfg["run_dir"]):
        import shutil

        shutil.rmtree(cfg["run_dir"])
    train_supernet(RunConfig.model_validate(cfg))
    with open(os.path.join(cfg["run_dir"], "train_log.jsonl")) as f:
        recs = [json.loads(x) for x in f]
    return [BATCH / r["img_per_s"] for r in recs[1:]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--steps", type=int, default=8, help="steps per run (the first is dropped)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=8)
    args = ap.parse_args()
    setup_process()
    out = tempfile.mkdtemp(prefix="bench_threads_")
    data = os.path.join(out, "data")
    from scalenas.data.synth_seg import generate

    generate(data, train=64, val=2, test=1, size=(args.size, args.size), seed=0)
    pairs = [(t, w) for t in args.threads for w in args.workers]
    times: dict[tuple[int, int], list[float]] = {p: [] for p in pairs}
    t0 = time.time()
    for r in range(args.rounds):
        for t, w in (pairs if r % 2 == 0 else pairs[::-1]):
            cfg = config(data, os.path.join(out, f"run_t{t}_w{w}"), args.steps, args.size, args.width, t, w)
            times[(t, w)] += step_times(cfg)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [[t, w, round(1000 * statistics.median(v)), round(1000 * min(v)), round(1000 * max(v)),
             default_threads(w)] for (t, w), v in times.items()]
    print_table(["threads", "loader workers", "median step ms", "min ms", "max ms", "default threads"], rows,
                f"W{args.width} seg supernet, {args.size}x{args.size}, batch {BATCH}, {args.rounds} rounds x "
                f"{args.steps - 1} timed steps per pair; {usable_cores()} cores, load {load:.1f} at the end "
                f"({device_string('cpu')}); wall {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
