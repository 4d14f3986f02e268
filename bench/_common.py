"""Shared helpers for bench scripts: interleaved timing (ratios measured side by side) and tables."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Run each function ``warmup`` times, then ``repeats`` rounds in alternating order; median seconds.

    Alternating within a round makes a machine-wide slowdown hit every variant alike, so ratios
    between them stay meaningful on a noisy shared machine.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    cols = [[str(h)] + [_fmt(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(x) for x in c) for c in cols]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(_fmt(v).ljust(w) for v, w in zip(r, widths)) + " |")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def machine() -> str:
    import torch

    from scalenas.deploy.runtime import device_string  # one CPU/GPU description for cards and benches

    return f"{device_string('cpu')}, torch {torch.__version__}, {torch.get_num_threads()} threads"
