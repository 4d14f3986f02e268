"""What DARK (Zhang et al. 2020) buys the top-down pose demo: HRNet's rounded Gaussian targets against DARK's
unbiased ones, each decoded by HRNet's quarter-offset refinement ("plain") and by DARK's Taylor refinement,
over several seeds.

Every row trains the demo's supernet (``demo.settings.POSE``: W12 space, grouped sampling, Adam 5e-3, batch
16, no rotation) on the demo's data for ``--steps`` steps (the demo's ~2,400 on a quiet 2-core machine) with
one target encoding and one seed, then scores the largest, smallest and hrnet subnets after BN recalibration on
64 crops with both decoders (flip test, ground-truth boxes, pycocotools; val: 40 unseen images, test: 60). The
ceiling of each (encoding, decoder) pair, a perfect network's AP on the test people (targets rendered from the
ground truth, decoded by the real decoder), comes first: at 32x24 heatmaps half a heatmap pixel is 2 input
pixels, which the rounded targets lose.

    python bench/topdown_dark.py --out runs/topdown-dark                  # 6 rows, ~40 min on 2 cores
    python bench/topdown_dark.py --out runs/topdown-dark --publish docs/results/topdown-dark

Each finished row is written to OUT/rows/<encoding>-s<seed>.json, so a stopped run continues where it stopped.
"""
from __future__ import annotations

import copy
from functools import partial
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import cached_rows, machine, publish  # noqa: E402
from topdown_budget import SUBNETS, _scores, _train, bench_parser, make_data, recipe, run_config  # noqa: E402
from scalenas.demo.settings import POSE  # noqa: E402
from scalenas.utils.markdown import markdown_table  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

ENCODINGS = {"rounded": False, "unbiased": True}  # the name -> task.unbiased_encoding
DECODERS = {"plain": False, "dark": True}          # the name -> task.inference.dark


def task_config(args, encoding: str, decoder: str) -> dict:
    """The demo's task section with one target encoding and one decoder."""
    t = copy.deepcopy(run_config(args, "unused", 1)["task"])
    t["unbiased_encoding"] = ENCODINGS[encoding]
    t["inference"] = {**t.get("inference", {}), "dark": DECODERS[decoder]}
    return t


def ceilings(args) -> dict:
    """Test AP of a perfect network, per encoding and decoder (flip test)."""
    from scalenas.tasks.base import build_task

    return {enc: {dec: build_task(task_config(args, enc, dec)).evaluate_oracle("test")["AP"] for dec in DECODERS}
            for enc in ENCODINGS}


def row(args, encoding: str, seed: int) -> dict:
    """The demo's supernet trained with ``encoding`` and ``seed`` (one torch thread), scored with both decoders."""
    setup_process(1)
    out = os.path.join(os.path.abspath(args.out), "runs", f"{encoding}-s{seed}")
    cfg = run_config(args, out, args.steps, task=task_config(args, encoding, "dark"), train={"workers": 0})
    cfg["seed"] = seed
    ckpt, wall = _train(cfg)
    return {"encoding": encoding, "seed": seed, "steps": args.steps, "wall_s": wall,
            **{dec: _scores(args, ckpt, task_cfg=task_config(args, encoding, dec)) for dec in DECODERS}}


def run_rows(args) -> list[dict]:
    jobs = {f"{enc}-s{seed}": partial(row, args, enc, seed) for seed in args.seeds for enc in ENCODINGS}
    rows = cached_rows(args.out, jobs, args.workers)
    return [rows[f"{enc}-s{seed}"] for enc in ENCODINGS for seed in args.seeds]


def summary(rows: list[dict], split: str = "test") -> dict:
    """Mean and sample sd over seeds of ``split`` AP, per (encoding, decoder) and subnet."""
    out = {}
    for enc in ENCODINGS:
        for dec in DECODERS:
            vals = {s: [r[dec][split][s] for r in rows if r["encoding"] == enc] for s in SUBNETS}
            out[f"{enc}+{dec}"] = {s: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
                                   for s, v in vals.items()}
    return out


def report(args, rows: list[dict], ceiling: dict) -> str:
    table = [[r["encoding"], r["seed"], f"{r['wall_s'] / 60:.1f}",
              *[f"{r[dec]['test'][s]:.2f}" for dec in DECODERS for s in SUBNETS]] for r in rows]
    mean = summary(rows)
    means = [[combo, f"{ceiling[combo.split('+')[0]][combo.split('+')[1]]:.2f}",
              *[f"{m:.2f} ± {sd:.2f}" for m, sd in (mean[combo][s] for s in SUBNETS)]] for combo in mean]
    n = len(args.seeds)
    lines = [f"# Top-down demo supernet: DARK encoding and decoding ({args.steps} steps of "
             f"{POSE['train']['batch_size']})", "",
             f"The demo's data and recipe (`demo.settings.POSE`, W{POSE['space']['width']} space, grouped sampling, "
             f"{POSE['task']['input_hw'][0]}x{POSE['task']['input_hw'][1]} crops, heatmaps 1/4), one torch thread "
             f"per row, {args.workers} rows at a time ({machine()}). Test AP (60 unseen images, ground-truth "
             "boxes, flip test) after BN recalibration on 64 crops; `rounded`: HRNet's targets (peak at the "
             "nearest heatmap pixel), `unbiased`: DARK's (peak at the sub-pixel joint); `plain`: HRNet's "
             "quarter-offset decoding, `dark`: DARK's.", "",
             *markdown_table(["targets", "seed", "wall min (1 core)",
                              *[f"{dec} {s}" for dec in DECODERS for s in SUBNETS]], table), "",
             f"Mean ± sd over {n} seeds, and the ceiling (a perfect network's test AP with the same targets and "
             "decoder):", "",
             *markdown_table(["targets+decoder", "ceiling", *SUBNETS], means), ""]
    return "\n".join(lines)


def plot(path: str, rows: list[dict]) -> str:
    from scalenas.study.plots import _figure, _save

    plt = _figure()
    fig, axes = plt.subplots(1, len(SUBNETS), figsize=(9.6, 3.2), sharey=True)
    combos = [(enc, dec) for enc in ENCODINGS for dec in DECODERS]
    for ax, sub in zip(axes, SUBNETS):
        for i, (enc, dec) in enumerate(combos):
            ys = [r[dec]["test"][sub] for r in rows if r["encoding"] == enc]
            ax.scatter([i] * len(ys), ys, s=18)
            ax.hlines(statistics.fmean(ys), i - 0.3, i + 0.3, color="k", lw=1)
        ax.set_xticks(range(len(combos)), [f"{e}\n+{d}" for e, d in combos], fontsize=7)
        ax.set_title(sub, fontsize=9)
    axes[0].set_ylabel("test AP (one dot per seed)")
    return _save(plt, fig, path)


def main():
    ap = bench_parser(__doc__, "PREFIX.json, PREFIX.md and PREFIX.png")
    ap.add_argument("--steps", type=int, default=2400, help="training steps per row (default 2400, the demo's)")
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2],
                    help="comma-separated seeds (default 0,1,2)")
    args = ap.parse_args()
    setup_process(1)
    make_data(args)
    ceiling = ceilings(args)
    rows = run_rows(args)
    md = report(args, rows, ceiling)
    print(md)
    if args.publish:
        publish(args.publish, {"steps": args.steps, "seeds": args.seeds, "workers": args.workers},
                {"ceiling_test_ap": ceiling, "recipe": recipe(), "rows": rows}, md, partial(plot, rows=rows),
                "test AP per seed")


if __name__ == "__main__":
    main()
