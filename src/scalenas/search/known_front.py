"""A search problem with a known answer: strategies measured against the exact Pareto front.

The space has depth 1 everywhere, so an arch is its 2 + 6 + 12 = 20 fusion bits and the space holds
2^20 = 1,048,576 archs, few enough to enumerate with numpy. The "metric" is a weighted sum of the
edges (distinct gains, a fifth of them harmful, so for each edge count the best arch is unique) and
the cost ("gflops") is 1 + the number of edges (a positive cost, as real FLOPs are: the log-cost
scores of AutoShrink and GRAM need it; the offset changes no dominance). The true front is the
metric-vs-cost staircase of the exhaustive evaluation. The tests and ``bench/strategies_known_front.py``
drive every strategy on it.
"""
from __future__ import annotations

import numpy as np

from scalenas.search.objectives import parse_objectives
from scalenas.search.pareto import pareto_front
from scalenas.space.arch import Arch, ModuleArch
from scalenas.space.space import SearchSpace

SPACE = SearchSpace(width=8, modules_per_stage=(1, 1, 1), depth_choices=(1,), stem_channels=16, stage1_blocks=1)
BITS = [(m, j, k) for m, nb in enumerate(SPACE.module_branches) for j in range(nb) for k in range(nb) if k != j]
OBJ = parse_objectives(["metric", "gflops"])


def _weights() -> np.ndarray:
    rs = np.random.default_rng(0)
    return rs.uniform(0.2, 1.0, len(BITS)) * np.where(rs.random(len(BITS)) < 0.8, 1, -1)


W = _weights()


def bits_of(arch: Arch) -> np.ndarray:
    return np.array([1 if k in arch.modules[m].inputs(j, 0) else 0 for m, j, k in BITS])


def values(arch: Arch) -> dict[str, float]:
    """The objective values of ``arch``: metric (weighted edges) and gflops (1 + edges)."""
    b = bits_of(arch)
    return {"metric": float(b @ W), "gflops": float(1 + b.sum())}


def arch_of(bits) -> Arch:
    mods = []
    for m, nb in enumerate(SPACE.module_branches):
        fuse = tuple(("".join("1" if k == j or bits[BITS.index((m, j, k))] else "0" for k in range(nb)),)
                     for j in range(nb))
        mods.append(ModuleArch((1,) * nb, fuse))
    return Arch(tuple(mods))


def true_front() -> set[str]:
    """Hashes of the exact front: all 2^20 archs evaluated, the metric-vs-cost staircase kept."""
    n = len(BITS)
    allb = ((np.arange(2 ** n, dtype=np.int64)[:, None] >> np.arange(n)) & 1).astype(np.float32)
    metric, cost = allb @ W.astype(np.float32), allb.sum(1)
    front, best = set(), -np.inf
    for c in range(n + 1):
        sel = np.flatnonzero(cost == c)
        i = sel[np.argmax(metric[sel])]
        if metric[i] > best:
            best = metric[i]
            front.add(arch_of(allb[i].astype(int)).hash)
    return front


def drive(strategy, max_evals: int | None = None) -> int:
    """Ask and tell until the strategy is done (or ``max_evals`` archs are told); the archs told."""
    n = 0
    while max_evals is None or n < max_evals:
        batch = strategy.ask()
        if not batch:
            break
        batch = batch if max_evals is None else batch[:max_evals - n]
        n += len(batch)
        strategy.tell([(a, values(a)) for a in batch])
    return n


def recovered(strategy, truth: set[str], evaluations: int) -> float:
    """The fraction of ``truth`` on the front of the first ``evaluations`` archs told to ``strategy``."""
    hist = strategy.history[:evaluations]
    got = {hist[i][0].hash for i in pareto_front([v for _, v in hist], strategy.objectives)}
    return len(got & truth) / len(truth)
