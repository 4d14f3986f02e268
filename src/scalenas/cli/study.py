"""``scalenas study``: does the search work? (ranking fidelity, sampler and strategy ablations, the
searched arch against hrnet from scratch, evaluation budget)."""
from __future__ import annotations

import argparse

from scalenas.cli import split_config_and_overrides

USAGE = ("scalenas study CONFIG.yaml [KEY=VALUE ...] -o DIR [--quick] [--workers N | --ray auto|local|ADDRESS] "
         "[--dry-run]")

DESCRIPTION = """\
Check, on your task and space, that one-shot search finds good architectures:
  1. ranking fidelity: N archs spread over the GFLOPs range (smallest, largest, hrnet among them),
     scored with inherited supernet weights (BN recalibrated, search split) and trained alone from
     scratch with the same recipe (test split): Kendall tau, Spearman rho, top-3/5 overlap with
     bootstrap 95% intervals; the noise ceiling: the same tau between stand-alone seed 0 and seeds
     1..study.ceiling_seeds (one more stand-alone run per arch and seed), and tau against their mean;
  2. sampler ablation (study.samplers) at equal images seen, and at equal subnet passes: tau and the
     test-split hypervolume of each supernet's searched front, over seeds;
  3. strategy ablation: every registered search strategy at equal evaluations, over seeds;
  4. the best searched arch at no more GFLOPs than hrnet and hrnet, both trained from scratch, over seeds;
  5. tau against full evaluation as search-split and BN-calibration images shrink, successive halving,
     and the full evaluation's split-half reliability (tau between two disjoint halves of the split).

DIR receives study.json, study.md, fidelity.png, hypervolume.png, fidelity_vs_images.png, timings.json,
and units/ (one result file per unit) and runs/ (supernets, stand-alone runs, searches). Re-running with
the same -o continues a stopped study; finished units are not re-run. The estimated time is printed at
the start (--dry-run: print it and stop). --quick applies the config's study.quick overrides (the
test-suite size); units run on N local processes (--workers) or Ray (--ray; DIR on a shared filesystem).
"""


def add_parser(sub):
    p = sub.add_parser("study", help="does the search work? ranking fidelity and ablations",
                       usage=USAGE, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rest", nargs="+", metavar="CONFIG.yaml|KEY=VALUE", help="the study config, then overrides")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the study folder")
    p.add_argument("--quick", action="store_true", help="apply the config's study.quick sizes (minutes)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--ray", default=None, metavar="auto|local|ADDRESS", help="run the units as Ray tasks")
    p.add_argument("--dry-run", action="store_true", help="print the plan's size and time estimate, run nothing")
    return p


def run(args) -> int:
    from scalenas.errors import ScaleNASError
    from scalenas.study import run_study

    config, overrides = split_config_and_overrides("study", args.rest)
    if config is None:
        raise ScaleNASError("study: give the study config (CONFIG.yaml)")
    res = run_study(config, args.output, args.quick, args.workers, args.ray, overrides, args.dry_run)
    if args.dry_run:
        print(f"{res['units']} units, estimated {res['estimate_s'] / 60:.1f} min")
    else:
        print(f"study: {res['json']}, {res['md']}")
    return 0
