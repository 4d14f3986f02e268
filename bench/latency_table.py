"""How well the per-device latency table predicts measured latency, on archs it was not fitted on.

    python bench/latency_table.py [--width 16] [--input 256 512] [--head seg] [--n-fit 40] [--n-holdout 20]
                                  [--repeats 10] [--threads N] [--backend torch|onnxruntime] [--out table.json]

Measures ``n_fit + n_holdout`` archs of the space (smallest, largest, then the search's fusion x
depth grid) as extracted static ScaleNets (eval, batch 1, channels_last, interleaved rounds, median),
fits the table (non-negative least squares over per-type op counts) on ``n_fit`` of them and prints,
for the held-out ones, measured vs predicted latency, then Spearman rank correlation and mean
absolute % error, next to how well analytic GFLOPs alone rank latency (the FLOPs-proxy baseline).
Full-size W32/W48 at 1024x2048 takes seconds per forward on a CPU: keep the default reduced width
and input for a quick run, or run it on the deployment device at the real size.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine, print_table  # noqa: E402

from scalenas.search.latency import LatencySettings, LatencyTable, spearman  # noqa: E402
from scalenas.space import HeadSpec, SearchSpace, profile  # noqa: E402
from scalenas.space.arch import Arch  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--modules", type=int, nargs=3, default=[1, 4, 3], metavar=("S2", "S3", "S4"))
    p.add_argument("--depths", type=int, nargs="+", default=[2, 3, 4, 5])
    p.add_argument("--input", type=int, nargs=2, default=[256, 512], metavar=("H", "W"))
    p.add_argument("--head", default="seg", choices=["seg", "pose-bottomup", "pose-topdown"])
    p.add_argument("--n-fit", type=int, default=40)
    p.add_argument("--n-holdout", type=int, default=20)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="default: torch's current thread count")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="save the fitted table (JSON) here")
    a = p.parse_args(argv)

    space = SearchSpace(width=a.width, modules_per_stage=tuple(a.modules), depth_choices=tuple(a.depths))
    head = HeadSpec(a.head)
    settings = LatencySettings(tuple(a.input), a.threads, a.warmup, a.repeats, a.device, a.backend)
    print(f"machine: {machine()}")
    print(f"space: width {a.width}, modules {a.modules}, depths {a.depths}; head {a.head}; "
          f"input {a.input[0]}x{a.input[1]}; backend {a.backend}, device {a.device}, "
          f"threads {settings.resolved().threads}")
    t0 = time.perf_counter()

    def progress(done, total):
        print(f"\r  measured {done}/{total} archs ({time.perf_counter() - t0:.0f}s)", end="", flush=True)

    table = LatencyTable.build(space, head, settings, a.n_fit, a.n_holdout, a.seed, progress=progress)
    print()
    held = [m for m in table.measured if m["set"] == "holdout"]
    by_hash = {}
    from scalenas.search.latency import sample_archs

    for arch in sample_archs(space, a.n_fit + a.n_holdout, a.seed, head.pose_rule):
        by_hash[arch.hash] = arch
    rows, gflops, meas = [], [], []
    for m in sorted(held, key=lambda m: m["latency_ms"]):
        arch: Arch = by_hash[m["hash"]]
        g = profile(space, arch, head, tuple(a.input)).effective_gflops_2p30  # what the timed net runs
        gflops.append(g)
        meas.append(m["latency_ms"])
        err = 100.0 * (m["predicted_ms"] - m["latency_ms"]) / m["latency_ms"]
        rows.append([m["hash"], arch.depth_string(), arch.num_edges(), g, m["latency_ms"], m["predicted_ms"], err])
    print_table(["arch", "depths", "edges", "eff. GFLOPs (2^30)", "measured ms", "predicted ms", "error %"], rows,
                title=f"held-out archs ({len(held)})")
    fit = table.fit
    print_table(["predictor", "Spearman (held-out)", "mean abs % error (held-out)", "Spearman (fit)",
                 "mean abs % (fit)"],
                [["latency table", fit.get("holdout_spearman"), fit.get("holdout_mape"), fit["fit_spearman"],
                  fit["fit_mape"]],
                 ["GFLOPs alone (rank only)", spearman(gflops, meas), "-", "-", "-"]], title="prediction quality")
    print_table(["operation", "ms each"], [[k, v] for k, v in table.breakdown().items() if v > 0],
                title="fitted cost per operation (zero-cost kinds omitted)")
    if a.out:
        table.save(a.out)
        print(f"\ntable saved to {a.out} (use it with search.latency=table search.latency_table={a.out})")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
