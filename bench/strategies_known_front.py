"""Search strategies on the known-front problem: the fraction of the exact Pareto front recovered at
equal evaluations.

    python bench/strategies_known_front.py [--evals 200 600 1500] [--seeds 5]

The problem (``scalenas.search.known_front``): 2^20 archs of a depth-1 space, an additive metric
over the 20 fusion edges and cost 1 + edges, so the true front is known exactly. Every strategy
runs with the same ``search:`` settings (initial 40, population 20, parents 20, bit mutation 0.05,
depth mutation off, autoshrink K = 16, gram defaults) and is scored on the front of its first N
evaluations; AutoShrink's whole path takes ~200 evaluations, so at a larger N it has stopped
(its count is then below N). Mean +- std over seeds 0..4. No timing: the figures do not depend on
the machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table  # noqa: E402

NAMES = ("autoshrink", "gram", "evolution", "random")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--evals", type=int, nargs="+", default=[200, 600, 1500])
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args(argv)

    from scalenas.config import validate_section
    from scalenas.search.config import SearchCfg
    from scalenas.search.known_front import OBJ, SPACE, drive, recovered, true_front
    from scalenas.search.strategies import STRATEGIES

    truth = true_front()
    top = max(args.evals)
    settings = validate_section(SearchCfg, {"initial": 40, "population": 20, "parents": 20,
                                            "generations": (top - 40 + 19) // 20, "bit_mutation_prob": 0.05,
                                            "depth_mutation_prob": 0.0, "autoshrink": {"candidates": 16}}, "search")
    found = {(name, n): [] for name in NAMES for n in args.evals}
    used = {name: [] for name in NAMES}
    for seed in range(args.seeds):
        for name in NAMES:
            s = STRATEGIES.build(name, SPACE, OBJ, settings, seed=seed)
            used[name].append(drive(s, top))
            for n in args.evals:
                found[name, n].append(recovered(s, truth, n))
    rows = []
    for name in NAMES:
        cells = []
        for n in args.evals:
            v = found[name, n]
            cells.append(f"{statistics.mean(v):.0%} ± {statistics.pstdev(v):.0%}")
        rows.append([name, *cells, f"{min(used[name])}-{max(used[name])}"])
    print_table(["strategy", *[f"{n} evals" for n in args.evals], "evals used"], rows,
                title=f"True front recovered ({len(truth)} archs of 2^20), mean ± std over {args.seeds} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
