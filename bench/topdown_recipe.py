"""Which training settings the top-down pose demo's minutes reward: a one-factor-at-a-time sweep around
the demo's recipe (``demo.settings.POSE``) at a fixed number of training steps, on the demo's data.

Every row trains the demo's W12 supernet (grouped sampling, batch 16, poly schedule) for ``--steps``
steps with one setting changed, one torch thread per row, and reports the val and test AP of the largest,
smallest and hrnet subnets after BN recalibration on 64 crops (flip test, DARK, ground-truth boxes,
pycocotools). ``demo`` is the recipe as it ships; ``previous`` is the recipe before this sweep (Adam 5e-3,
half-body crops with p 0.3), so the table shows what the change bought at equal steps.

    python bench/topdown_recipe.py --out runs/topdown-recipe                # 6 rows, ~32 min on 2 cores
    python bench/topdown_recipe.py --out runs/topdown-recipe --only demo,previous --seeds 1,2   # ~20 min more
    python bench/topdown_recipe.py --out runs/topdown-recipe --publish docs/results/topdown-recipe

Each finished row is written to OUT/rows/<name>.json, so a stopped run continues where it stopped.
"""
from __future__ import annotations

from functools import partial
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import cached_rows, machine, publish  # noqa: E402
from topdown_budget import SUBNETS, _scores, _train, bench_parser, recipe, run_and_report, run_config  # noqa: E402
from scalenas.demo.settings import POSE  # noqa: E402
from scalenas.utils.markdown import markdown_table  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

#: one factor at a time: name -> (section, key, value) changes to the demo's run config
VARIANTS = {
    "demo": [],
    "lr_5e-3": [("train", "optimizer.lr", 5e-3)],
    "lr_1e-2": [("train", "optimizer.lr", 1e-2)],
    "lr_4e-2": [("train", "optimizer.lr", 4e-2)],
    "half_body_0.3": [("task", "augment.half_body_prob", 0.3)],
    "previous": [("train", "optimizer.lr", 5e-3), ("task", "augment.half_body_prob", 0.3)],
}


def variant_config(args, name: str, run_dir: str, seed: int = 0) -> dict:
    """The demo's run config for ``--steps`` steps (crops read in-process, as the demo) with ``name``'s changes."""
    d = {**run_config(args, run_dir, args.steps, train={"workers": 0}), "seed": seed}
    for section, dotted, value in VARIANTS[name]:
        *parents, key = dotted.split(".")
        node = d[section]
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return d


def row(args, name: str, seed: int) -> dict:
    setup_process(1)
    out = os.path.join(os.path.abspath(args.out), "runs", row_name(name, seed))
    ckpt, wall = _train(variant_config(args, name, out, seed))
    return {"name": name, "seed": seed, "changes": [list(c) for c in VARIANTS[name]], "steps": args.steps,
            "wall_s": wall, **_scores(args, ckpt)}


def row_name(name: str, seed: int) -> str:
    return name if seed == 0 else f"{name}-seed{seed}"


def run_rows(args) -> list[dict]:
    """The rows of ``--only`` x ``--seeds``, together with those of earlier calls kept in OUT/rows (other seeds)."""
    jobs = {row_name(n, s): partial(row, args, n, s) for s in args.seeds for n in args.only}
    cached_rows(args.out, jobs, args.workers)
    folder = os.path.join(args.out, "rows")
    kept = [json.load(open(os.path.join(folder, f))) for f in os.listdir(folder) if f.endswith(".json")]
    order = list(VARIANTS)
    return sorted((r for r in kept if r["name"] in VARIANTS), key=lambda r: (order.index(r["name"]), r["seed"]))


def report(args, rows: list[dict]) -> str:
    def changes(r):
        return ", ".join(f"{k} {v:g}" for _, k, v in r["changes"]) or "(as shipped)"

    table = [[r["name"], r["seed"], changes(r), f"{r['wall_s'] / 60:.1f}",
              *[f"{r[split][s]:.2f}" for split in ("val", "test") for s in SUBNETS]] for r in rows]
    t = POSE["train"]
    lines = [f"# Top-down demo recipe: one factor at a time, {args.steps} steps", "",
             f"The demo's data and recipe (`demo.settings.POSE`: W{POSE['space']['width']} space, grouped sampling, "
             f"batch {t['batch_size']}, Adam {t['optimizer']['lr']:g} poly, half-body p "
             f"{POSE['task']['augment'].get('half_body_prob', 0.3):g}), each row changing what its second column "
             f"says; one torch thread per row, {args.workers} rows at a time ({machine()}). AP after BN "
             f"recalibration on 64 crops, flip test, DARK, ground-truth boxes; val: 40 unseen images, test: 60.", "",
             *markdown_table(["row", "seed", "changes", "wall min (1 core)",
                              *[f"{sp} AP {s}" for sp in ("val", "test") for s in SUBNETS]], table), ""]
    seeded = [n for n in VARIANTS if len({r["seed"] for r in rows if r["name"] == n}) > 1]
    if seeded:
        means = [[n, len(rs), *[f"{statistics.fmean(r[split][s] for r in rs):.2f}" for split in ("val", "test")
                                for s in SUBNETS]] for n in seeded for rs in [[r for r in rows if r["name"] == n]]]
        lines += ["Mean over seeds:", "", *markdown_table(["row", "seeds", *[f"{sp} AP {s}" for sp in ("val", "test")
                                                                            for s in SUBNETS]], means), ""]
    return "\n".join(lines)


def main():
    ap = bench_parser(__doc__, "PREFIX.json and PREFIX.md")
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--only", type=lambda s: s.split(","), default=list(VARIANTS),
                    help=f"comma-separated rows (default all: {','.join(VARIANTS)})")
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0],
                    help="comma-separated training seeds (default 0; the data stay the same)")
    args = ap.parse_args()
    unknown = [n for n in args.only if n not in VARIANTS]
    if unknown:
        ap.error(f"--only: unknown row(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    rows, md = run_and_report(args, run_rows, report)
    if args.publish:
        publish(args.publish, {"steps": args.steps, "workers": args.workers,
                               "seeds": sorted({r["seed"] for r in rows})}, {"recipe": recipe(), "rows": rows}, md)


if __name__ == "__main__":
    main()
