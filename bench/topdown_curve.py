"""How the top-down pose demo's supernet improves with training steps: the demo's recipe
(``demo.settings.POSE``, grouped sampling) trained for several step counts on the demo's data, with the
val and test AP of the largest, smallest and hrnet subnets after BN recalibration on 64 crops (flip test,
ground-truth boxes, pycocotools).

It answers what the demo's 12 minutes lack: where the curve crosses the issue's bars (test AP 40 for the
hrnet point) and so how many CPU-minutes the bar costs on this machine. Each row runs in its own process
with one torch thread (longest first, ``--workers`` at a time), so a row's wall time is one core's.

    python bench/topdown_curve.py --out runs/topdown-curve                     # ~25 min on 2 cores
    python bench/topdown_curve.py --out runs/topdown-curve --publish docs/results/topdown-curve

Each finished row is written to OUT/rows/supernet-<steps>.json, so a stopped run continues where it stopped.
"""
from __future__ import annotations

from functools import partial
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import cached_rows, machine, publish  # noqa: E402
from topdown_budget import SUBNETS, _scores, _train, bench_parser, recipe, run_and_report, run_config  # noqa: E402
from scalenas.demo.settings import POSE  # noqa: E402
from scalenas.utils.markdown import markdown_table  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

BAR = 40.0  # issue 14's demo bar: test AP of the hrnet point and of the best searched model


def row(args, steps: int) -> dict:
    """The demo's supernet trained for ``steps`` steps (one torch thread, crops read in-process, as the demo)."""
    setup_process(1)
    out = os.path.join(os.path.abspath(args.out), "runs", f"supernet-{steps}")
    ckpt, wall = _train(run_config(args, out, steps, train={"workers": 0}))
    bs = POSE["train"]["batch_size"]
    return {"steps": steps, "crops": steps * bs, "wall_s": wall, **_scores(args, ckpt)}


def run_rows(args) -> list[dict]:
    """Longest first: the pool then ends close to together."""
    jobs = {f"supernet-{s}": partial(row, args, s) for s in sorted(args.steps, reverse=True)}
    rows = cached_rows(args.out, jobs, args.workers)
    return [rows[f"supernet-{s}"] for s in sorted(args.steps)]


def crossing(rows: list[dict], split: str, sub: str, bar: float) -> str:
    """Where the ``split`` AP of ``sub`` first reaches ``bar``, linearly interpolated between rows
    (``"not reached"`` when no row reaches it)."""
    prev = None
    for r in rows:
        v = r[split][sub]
        if v >= bar:
            if prev is None:
                return f"by {r['steps']} steps"
            s0, v0 = prev["steps"], prev[split][sub]
            s = s0 + (bar - v0) / (v - v0) * (r["steps"] - s0)
            return f"~{s:.0f} steps (~{s / r['steps'] * r['wall_s'] / 60:.0f} min of one core)"
        prev = r
    return "not reached"


def report(args, rows: list[dict]) -> str:
    table = [[r["steps"], r["crops"], f"{r['wall_s'] / 60:.1f}",
              *[f"{r[split][s]:.2f}" for split in ("val", "test") for s in SUBNETS]] for r in rows]
    lines = [f"# Top-down demo supernet: AP against training steps (batch {POSE['train']['batch_size']})", "",
             f"The demo's data and recipe (`demo.settings.POSE`: W{POSE['space']['width']} space, grouped "
             f"sampling), one torch thread per row, {args.workers} rows at a time ({machine()}). AP after BN "
             f"recalibration on 64 crops, flip test, ground-truth boxes; val: 40 unseen images, test: 60.", "",
             *markdown_table(["steps", "crops", "wall min (1 core)", *[f"{sp} AP {s}" for sp in ("val", "test")
                                                                       for s in SUBNETS]], table), "",
             f"Test AP {BAR:g} (issue 14's demo bar): " + "; ".join(
                 f"{s} {crossing(rows, 'test', s, BAR)}" for s in SUBNETS) + ".", ""]
    return "\n".join(lines)


def plot(path: str, rows: list[dict]) -> str:
    from scalenas.study.plots import _figure, _save

    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    steps = [r["steps"] for r in rows]
    for sub in SUBNETS:
        ax.plot(steps, [r["test"][sub] for r in rows], marker="o", label=f"{sub} (test)")
        ax.plot(steps, [r["val"][sub] for r in rows], marker=".", ls=":", alpha=0.6, label=f"{sub} (val)")
    ax.axhline(BAR, color="k", ls="--", lw=1, label=f"demo bar (test AP {BAR:g})")
    ax.set_xlabel("training steps")
    ax.set_ylabel("AP (unseen images)")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    return _save(plt, fig, path)


def main():
    ap = bench_parser(__doc__, "PREFIX.json, PREFIX.md and PREFIX.png")
    ap.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")], default=[1600, 3200, 4800],
                    help="comma-separated step counts (default 1600,3200,4800)")
    args = ap.parse_args()
    rows, md = run_and_report(args, run_rows, report)
    if args.publish:
        publish(args.publish, {"steps": args.steps, "workers": args.workers}, {"recipe": recipe(), "rows": rows}, md,
                partial(plot, rows=rows), "AP against steps")


if __name__ == "__main__":
    main()
