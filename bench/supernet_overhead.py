"""Supernet overhead: a training step and an inference pass of the supernet with an arch active,
divided by the same for the extracted ScaleNet (W32, 256x256, batch 4, CPU, channels_last).

A ratio is the median of per-round ratios (supernet and extracted net timed back to back, in
alternating order), which cancels slowdowns of the shared machine that outlast one round.
Targets: <= 1.10 for training, <= 1.05 for inference. ``--json``: the last line is one JSON object
with ``train_ratio`` and ``infer_ratio`` (the worst over the architectures).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

from _common import infer_fn, machine, paired_ratio, print_table, train_step_fn  # noqa: E402
from scalenas.nets.supernet import SuperScaleNet  # noqa: E402
from scalenas.space import SearchSpace  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--random", type=int, default=3, help="number of random architectures")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    setup_process()
    space = SearchSpace(width=args.width)
    sn = SuperScaleNet(space, "seg").to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    archs = [("hrnet", space.hrnet())]
    rng = random.Random(0)
    archs += [(f"random{i}", space.sample(rng, 0.5)) for i in range(args.random)]
    rows, worst_t, worst_i = [], 0.0, 0.0
    for name, arch in archs:
        sn.set_active(arch)
        net = sn.extract(arch).to(memory_format=torch.channels_last)
        opt_s = torch.optim.SGD(sn.parameters(), lr=1e-9, momentum=0.9)
        opt_n = torch.optim.SGD(net.parameters(), lr=1e-9, momentum=0.9)

        ts, tn, tr = paired_ratio(train_step_fn(sn, x, opt_s), train_step_fn(net, x, opt_n), args.repeats)
        is_, in_, ir = paired_ratio(infer_fn(sn, x), infer_fn(net, x), args.repeats)
        worst_t, worst_i = max(worst_t, tr), max(worst_i, ir)
        rows.append([name, arch.hash, tn * 1e3, ts * 1e3, tr, in_ * 1e3, is_ * 1e3, ir])
    print_table(["arch", "hash", "train static ms", "train super ms", "train ratio", "infer static ms",
                 "infer super ms", "infer ratio"], rows,
                f"Supernet overhead, W{args.width} seg, {args.size}x{args.size}, batch {args.batch} ({machine()})")
    print(f"worst train ratio {worst_t:.3f} (target <= 1.10), worst infer ratio {worst_i:.3f} (target <= 1.05)")
    if args.json:
        print(json.dumps({"train_ratio": round(worst_t, 4), "infer_ratio": round(worst_i, 4)}))


if __name__ == "__main__":
    main()
