"""``scalenas search``: evolutionary (or random) architecture search on a trained supernet, and
``scalenas search pick``: choose an arch off a finished search under a budget."""
from __future__ import annotations

import argparse
import os

from scalenas.cli import split_config_and_overrides
from scalenas.deploy.arch_files import write_arch_file
from scalenas.errors import ScaleNASError
from scalenas.search.strategies import STRATEGIES
from scalenas.space.arch import Arch
from scalenas.utils.io import dumps_json

USAGE = ("scalenas search SUPERNET_CKPT [CONFIG.yaml] [KEY=VALUE ...] -o RUN [--resume] [--workers N]\n"
         "                       [--ray auto|local|ADDRESS] [--strategy " + "|".join(STRATEGIES.names())
         + "] [--quiet]\n"
         "       scalenas search pick RUN [--max-gflops X] [--max-params-m M] [--max-latency-ms L] [-o arch.json]")

DESCRIPTION = """\
Search a trained supernet for architectures on the accuracy-cost Pareto front (ScaleNAS method §6):
every candidate subnet gets its BN statistics recalibrated on training images, is scored on the
task's held-out "search" split, and is costed analytically (params, GFLOPs) and optionally by
latency. Evolution keeps the successive Pareto layers of everything evaluated as parents.
Other strategies (--strategy): random search (the baseline); autoshrink, a path from the largest
subnet down to the smallest, keeping at each step the best of K one-move-smaller candidates (one
fusion edge removed or one branch a block shallower) by metric - lambda*ln(GFLOPs) (AutoShrink,
Zhang, Cheng et al., AAAI 2020); gram, node-wise resampling from a meta-graph of edge and depth
weights learnt from who beats each batch's median, plus models pruned from it at a ladder of
budgets (GRAM/SwiftNet, Cheng et al. 2019). Their settings: search.autoshrink.{candidates, beam,
score, cost_weight, cost_steps, floor} and search.gram.{lr, moves, budgets}.

CONFIG is a YAML file with a 'search:' section (a training config works: its search section is
used); without it, the search section stored in the checkpoint's training config is used.
KEY=VALUE pairs override it; keys are relative to the search section ('search.' is optional):
  generations=10 population=50 initial=200 objectives=[metric,gflops,latency_ms] latency=table
  constraints.max_gflops=8.0 constraints.gflops_window=[4,9] eval_max_images=200 task.root=/data

The run folder RUN receives config.yaml, versions.json, evaluations.jsonl (one record per
evaluated arch, appended as they finish), state.json (rewritten atomically every generation),
pareto.json (the front: arch, hash, metric, params, gflops_2p30, gflops_1e9, latency_ms) and
pareto.png. A killed search continues with --resume and loses at most the generation in progress
(evaluations already logged are reused); --resume generations=N extends a finished search.

GFLOPs are multiply-adds at search.input_hw: gflops_2p30 divides by 2^30 (ScaleNAS/HRNet papers),
gflops_1e9 by 1e9 (HigherHRNet). Constraints use gflops_2p30.

pick: the best-metric evaluated arch of RUN under the budget(s), printed as JSON; -o writes its
arch JSON with an "origin" naming the run, which extract copies into the model card (loadable by
every command that takes an arch).
"""


def add_parser(sub):
    p = sub.add_parser("search", help="architecture search on a trained supernet (and 'search pick')",
                       usage=USAGE, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="SUPERNET_CKPT|pick", help="supernet checkpoint (or 'pick' to choose from a run)")
    p.add_argument("rest", nargs="*", metavar="CONFIG.yaml|KEY=VALUE|RUN",
                   help="search: an optional YAML config, then KEY=VALUE overrides; pick: the search run folder")
    p.add_argument("-o", "--output", metavar="RUN|arch.json",
                   help="search: the run folder (required); pick: where to write the chosen arch JSON")
    g = p.add_argument_group("search")
    g.add_argument("--resume", action="store_true", help="continue the search in RUN (settings from RUN/config.yaml)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="evaluation workers, each with its own supernet copy (default: search.workers, 1)")
    g.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="evaluate on Ray actors (needs the 'ray' extra): auto = the running cluster or a local "
                        "one, local = a new local one, or a cluster address")
    g.add_argument("--strategy", choices=STRATEGIES.names(), default=None,
                   help="overrides search.strategy: evolution (the paper's), random (the baseline), autoshrink "
                        "(shrinking from the largest subnet, settings search.autoshrink.*), gram (meta-graph "
                        "search with structure-level pruning, search.gram.*)")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    k = p.add_argument_group("pick (scalenas search pick RUN ...)")
    k.add_argument("--max-gflops", type=float, default=None, metavar="X",
                   help="GFLOPs budget (effective multiply-adds / 2^30)")
    k.add_argument("--max-params-m", "--max-params", dest="max_params_m", type=float, default=None, metavar="M",
                   help="parameter budget in millions")
    k.add_argument("--max-latency-ms", type=float, default=None, metavar="L", help="latency budget (ms, as measured "
                   "or predicted by the search)")
    return p


def run(args) -> int:
    if args.target == "pick":
        return _pick(args)
    return _search(args)


def _pick(args) -> int:
    from scalenas.errors import ScaleNASError
    from scalenas.search.pareto_doc import pick

    if len(args.rest) != 1:
        raise ScaleNASError("search pick: give exactly one search run folder (scalenas search pick RUN ...)")
    run_dir = args.rest[0]
    if args.max_gflops is None and args.max_params_m is None and args.max_latency_ms is None:
        print("search pick: no budget given; choosing the best metric overall", flush=True)
    best = pick(run_dir, args.max_gflops, args.max_params_m, args.max_latency_ms)
    arch = Arch.from_dict(best["arch"], where=f"{run_dir} arch {best['hash']}")
    info = {k: v for k, v in best.items() if k != "arch"}
    print(dumps_json(info, indent=1))
    if args.output:
        write_arch_file(args.output, arch, {"kind": "search", "run_dir": os.path.abspath(run_dir),
                                            "record": best.get("hash")})
        print(f"arch {arch.hash} written to {args.output}")
    return 0


def _search(args) -> int:
    from scalenas.search.resolve import resolve_search_cfg
    from scalenas.search.runner import run_search

    if not args.output:
        raise ScaleNASError("search: -o RUN (the output folder) is required")
    config_path, overrides = split_config_and_overrides("search", args.rest)
    cfg = resolve_search_cfg(args.target, args.output, config_path, overrides, args.resume, args.strategy)
    summary = run_search(args.target, args.output, cfg, resume=args.resume, workers=args.workers, ray=args.ray,
                         progress=not args.quiet)
    front = summary["front"]
    print(f"{summary['num_evaluated']} archs evaluated; {len(front)} on the front ({summary['pareto_json']})")
    for m in front:
        lat = f", {m['latency_ms']:.2f} ms" if m.get("latency_ms") is not None else ""
        print(f"  {m['hash']}  {summary['metric_name']} {m['metric']:.3f}  {m['gflops_2p30']:.3f} GFLOPs(2^30)  "
              f"{m['params_m']:.2f}M{lat}")
    return 0
