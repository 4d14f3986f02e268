"""The top-down bench (``bench/task_supernet.py --task pose-topdown``) over several training seeds and
recipes: how far one run's val AP is from the mean, so that a single run's figure can be read.

Every row is one call of the bench with ``--json`` (its defaults: 4,000 training images, 200 unseen val
images, batches of 16 crops; since session 19 a W16 supernet for 3,000 steps) and one of the recipes below,
on one torch thread, two rows at a time (the 2-core machine's two cores); the data are the same (seed 0) in
every row. ``--threads 2 --workers 1`` gives the bench as shipped on this machine (alone, both cores).

    python bench/topdown_bench_seeds.py --out runs/topdown-seeds                   # 6 rows, ~45 min on 2 cores
    python bench/topdown_bench_seeds.py --out runs/topdown-seeds --only w16_3000 --seeds 3
    python bench/topdown_bench_seeds.py --out runs/topdown-seeds --only b32 --seeds 1,2
    python bench/topdown_bench_seeds.py --out runs/topdown-seeds --only w16_3000 --seeds 0 --threads 2 --workers 1
    python bench/topdown_bench_seeds.py --out runs/topdown-seeds --publish docs/results/topdown-bench-seeds

Each finished row is written to OUT/rows/<name>.json, so a stopped run continues where it stopped.
"""
from __future__ import annotations

import argparse
from functools import partial
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import bench_json, cached_rows, machine, publish  # noqa: E402
from scalenas.utils.markdown import markdown_table  # noqa: E402

SUBNETS = ("largest", "smallest", "hrnet")
BAR = 60.0  # issue 14: val AP of every one of SUBNETS within 20 minutes
W12_6000 = ["--width", "12", "--steps", "6000"]  # the bench's network and length in sessions 15-18
#: recipe name -> the bench's arguments (the rest are its defaults); each names its width and steps, so that a
#: change of the bench's defaults leaves the recipes' rows reproducible
RECIPES = {
    # the default since session 19: the sweep's bottom-up width, half the steps, in half the minutes
    "w16_3000": ["--lr", "0.02", "--warmup", "1000", "--width", "16", "--steps", "3000"],
    "warmup1000": ["--lr", "0.02", "--warmup", "1000", *W12_6000],  # session 18's (1/6 of the 6,000 steps)
    "warmup500": ["--lr", "0.02", "--warmup", "500", *W12_6000],  # session 17's
    "warmup20": ["--lr", "0.02", "--warmup", "20", *W12_6000],  # the one before (the other tasks' warm-up)
    "lr_1e-2": ["--lr", "0.01", "--warmup", "20", *W12_6000],
    # the same minutes in larger steps
    "b32": ["--lr", "0.02", "--warmup", "20", "--batch", "32", "--width", "12", "--steps", "3200"],
}


def row(out: str, recipe: str, seed: int, threads: int = 1) -> dict:
    """Run the bench once on ``threads`` torch threads and return its JSON record with the recipe's name."""
    record = bench_json("task_supernet.py", ["--task", "pose-topdown", *RECIPES[recipe], "--seed", str(seed),
                                             "--out", os.path.join(out, "runs", row_name(recipe, seed, threads))],
                        threads)
    return {"recipe": recipe, "args": RECIPES[recipe], **record}


def row_name(recipe: str, seed: int, threads: int = 1) -> str:
    return f"{recipe}-seed{seed}" + (f"-{threads}threads" if threads != 1 else "")


def report(rows: list[dict]) -> str:
    table = [[r["recipe"], r["seed"], r["threads"], r["steps"], f"{r['wall_s'] / 60:.1f}",
              *[f"{r['after'][s]:.2f}" for s in SUBNETS], "yes" if _meets(r) else "no"] for r in rows]
    summary = []
    for name in RECIPES:
        rs = [r for r in rows if r["recipe"] == name]
        if len(rs) > 1:
            summary.append([name, len(rs), *[_mean_sd([r["after"][s] for r in rs]) for s in SUBNETS],
                            f"{min(min(r['after'][s] for s in SUBNETS) for r in rs):.2f}",
                            f"{sum(_meets(r) for r in rs)} of {len(rs)}"])
    return "\n".join([
        "# Top-down bench over seeds", "",
        "`bench/task_supernet.py --task pose-topdown` (a W16 supernet for 3,000 steps, W12 for 6,000 in the "
        "recipes before session 19; 128x96 crops of 4,000 synthetic 256x256 images, grouped sampling, Adam poly, "
        "BN recalibrated on 32 crops; val AP on 200 unseen images with flip "
        f"test and DARK), one row per recipe, training seed and thread count, the data the same in every row "
        f"({machine().rsplit(',', 1)[0]}). "
        f"`meets` is val AP >= {BAR:g} for all three subnets within 20 minutes of wall time.", "",
        *markdown_table(["recipe", "seed", "threads", "steps", "wall min", *[f"val AP {s}" for s in SUBNETS],
                         "meets"], table), "",
        "Per recipe (mean ± sample sd over its runs; min: the lowest subnet AP of any run):", "",
        *markdown_table(["recipe", "runs", *[f"val AP {s}" for s in SUBNETS], "min", "runs that meet the bar"],
                        summary), ""])


def _meets(r: dict) -> bool:
    return r["wall_s"] <= 20 * 60 and all(r["after"][s] >= BAR for s in SUBNETS)


def _mean_sd(v: list[float]) -> str:
    return f"{statistics.fmean(v):.2f} ± {statistics.stdev(v):.2f}"


def plot(rows: list[dict], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    names = [n for n in RECIPES if any(r["recipe"] == n for r in rows)]
    for i, s in enumerate(SUBNETS):
        for j, n in enumerate(names):
            v = [r["after"][s] for r in rows if r["recipe"] == n]
            ax.scatter([j + (i - 1) * 0.2] * len(v), v, label=s if j == 0 else None, color=f"C{i}")
    ax.axhline(BAR, color="grey", ls="--", lw=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("val AP (200 unseen images)")
    ax.legend()
    ax.set_title("top-down bench: one point per run (training seed, thread count)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="working folder (runs and finished rows)")
    ap.add_argument("--only", type=lambda s: s.split(","), default=["w16_3000", "warmup1000"],
                    help=f"comma-separated recipes (default w16_3000,warmup1000; known: {','.join(RECIPES)})")
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2, help="rows at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each row (default 1)")
    ap.add_argument("--publish", metavar="PREFIX", help="write PREFIX.json, PREFIX.md and PREFIX.png")
    args = ap.parse_args()
    unknown = [n for n in args.only if n not in RECIPES]
    if unknown:
        ap.error(f"--only: unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    cores = len(os.sched_getaffinity(0))
    if args.threads < 1 or args.workers < 1 or args.threads * args.workers > cores:
        # rows side by side must not share a core: the table compares their minutes
        ap.error(f"--threads {args.threads} x --workers {args.workers} must be between 1 and this process's "
                 f"{cores} cores")
    out = os.path.abspath(args.out)
    cached_rows(out, {row_name(n, s, args.threads): partial(row, out, n, s, args.threads)
                      for n in args.only for s in args.seeds}, args.workers)
    folder = os.path.join(out, "rows")
    kept = [json.load(open(os.path.join(folder, f))) for f in sorted(os.listdir(folder)) if f.endswith(".json")]
    rows = sorted((r for r in kept if r["recipe"] in RECIPES), key=lambda r: (list(RECIPES).index(r["recipe"]),
                                                                             r["seed"], r["threads"]))
    md = report(rows)
    print(md)
    if args.publish:
        publish(args.publish, {"recipes": RECIPES, "bar": BAR}, {"rows": rows}, md,
                partial(plot, rows), "val AP per recipe and seed")


if __name__ == "__main__":
    main()
