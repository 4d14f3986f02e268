"""``scalenas demo``: the whole pipeline on embedded synthetic data, sized for a 2-core CPU."""
from __future__ import annotations

import argparse


def add_parser(sub):
    p = sub.add_parser(
        "demo", help="run the whole pipeline on generated data (CPU, ~12 minutes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate synthetic multi-scale data, train a CPU-sized supernet with grouped sampling,\n"
                    "run the evolutionary search, extract the best models along the Pareto front and the hrnet\n"
                    "point, evaluate them on the held-out test split, export one to ONNX with a parity check,\n"
                    "and write OUT/report.md with a table, pareto.png, architecture drawings and overlays.\n"
                    "Nothing is downloaded. Re-running with the same -o resumes an interrupted demo.")
    p.add_argument("--task", choices=["seg", "pose", "pose-bottomup", "both"], default="seg",
                   help="segmentation (ScaleNet-S), top-down pose (ScaleNet-P, one crop per person box), "
                        "bottom-up pose (HigherHRNet head) or both = seg and top-down pose (default: seg)")
    p.add_argument("--budget-minutes", type=float, default=12.0,
                   help="time budget for everything (default 12); training and search sizes follow from it")
    p.add_argument("-o", "--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--fresh", action="store_true", help="delete OUT first instead of resuming")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the supernet training and the search (default 0); the data stay the same, so "
                        "runs with different seeds show the method's spread on the same test images")
    return p


def run(args) -> int:
    from scalenas.demo import run_demo

    res = run_demo(args.out, args.task, args.budget_minutes, args.fresh, args.seed)
    print(f"done in {res['seconds'] / 60:.1f} min: {res['report']}")
    return 0
