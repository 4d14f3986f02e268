"""Search evaluation throughput: archs evaluated per second with 1..N local workers (and Ray).

    python bench/search_throughput.py [--ckpt SUPERNET.pt] [--workers 1 2] [--evals 40] [--threads 1]
                                      [--calib-images 32] [--ray local]

Without --ckpt, a tiny supernet (width 8, synthetic task) is trained for a few steps first. Each
setting evaluates the same ``--evals`` random archs (random strategy, generation 0 only, no
reference points) in a fresh run folder; the table shows wall time including worker start-up,
archs/s, the mean time of one evaluation (BN recalibration + search-split metric) and whether the
results are identical to the first setting's (they must be: evaluation is deterministic).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine, print_table  # noqa: E402


def tiny_supernet(folder: str) -> str:
    from scalenas.train.config import RunConfig
    from scalenas.train.engine import train_supernet

    cfg = {"run_dir": folder, "seed": 0,
           "space": {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
                     "stage1_blocks": 1},
           "task": {"name": "synthetic-regression", "size": 64, "num_train": 256, "num_search": 32},
           "train": {"steps": 30, "batch_size": 8, "workers": 0, "threads": 1, "ckpt_every": 0, "progress": False,
                     "tensorboard": False, "optimizer": {"name": "adam", "lr": 0.01}}}
    return train_supernet(RunConfig.model_validate(cfg))["checkpoint"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--evals", type=int, default=40)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--eval-max-images", type=int, default=None)
    p.add_argument("--ray", default=None, help="also run on Ray (auto|local|ADDRESS) with the largest worker count")
    a = p.parse_args(argv)

    from scalenas.search.runner import run_search

    tmp = tempfile.mkdtemp(prefix="scalenas-bench-")
    ckpt = a.ckpt or tiny_supernet(os.path.join(tmp, "supernet"))
    cfg = {"strategy": "random", "initial": a.evals, "generations": 0, "references": False,
           "calib_images": a.calib_images, "calib_batch_size": 16, "eval_max_images": a.eval_max_images,
           "threads_per_worker": a.threads, "seed": 0}
    settings = [(w, None) for w in a.workers] + ([(max(a.workers), a.ray)] if a.ray else [])
    rows, ref = [], None
    print(f"machine: {machine()}")
    print(f"supernet: {ckpt}; {a.evals} archs per setting, {a.threads} thread(s) per worker")
    for workers, ray in settings:
        run = os.path.join(tmp, f"run_w{workers}_{ray or 'local'}")
        t0 = time.perf_counter()
        run_search(ckpt, run, cfg, workers=workers, ray=ray, progress=False)
        wall = time.perf_counter() - t0
        with open(os.path.join(run, "evaluations.jsonl")) as f:
            recs = [json.loads(x) for x in f]
        fp = sorted((r["hash"], r["metric"]) for r in recs)
        ref = ref or fp
        mean_eval = sum(r["eval_s"] for r in recs) / len(recs)
        rows.append([workers, f"ray ({ray})" if ray else ("in-process" if workers == 1 else "processes"),
                     wall, len(recs) / wall, mean_eval, fp == ref])
    print_table(["workers", "pool", "wall s (incl. start-up)", "archs/s", "s per evaluation", "identical results"],
                rows, title="search evaluation throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
