"""The study's statistics: rank agreement (scipy), bootstrap intervals, hypervolume (pymoo).

* Kendall tau-b and Spearman rho are ``scipy.stats.kendalltau`` / ``spearmanr``; top-k overlap is
  ``|top_k(a) & top_k(b)| / k``.
* 95% intervals are percentile bootstrap intervals over the architectures (resampled with
  replacement, ``np.random.default_rng(seed)``, the same resamples for every statistic of a call);
  resamples where a statistic is undefined (e.g. all one arch: tau has no value) are dropped.
* Hypervolume: pymoo's ``HV`` on minimised, normalised objectives: ``-metric / 100`` (metrics in
  percent, maximised) and ``GFLOPs / GFLOPs(largest subnet)``, against the fixed reference point
  ``(0, 1.1)``: a point scoring 0 or costing 1.1x the largest subnet adds nothing, and a perfect
  metric at zero cost would give 1.1. Fronts of different runs are therefore comparable.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats

HV_REF = (0.0, 1.1)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    return float(stats.kendalltau(a, b).statistic)


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    return float(stats.spearmanr(a, b).statistic)


def topk_overlap(a: Sequence[float], b: Sequence[float], k: int) -> float:
    """Share of the ``k`` best by ``a`` that are among the ``k`` best by ``b`` (ties by position)."""
    k = min(k, len(a))

    def top(v) -> set[int]:
        return set(np.argsort(-np.asarray(v, dtype=float), kind="stable")[:k].tolist())

    return len(top(a) & top(b)) / k if k else float("nan")


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[float] | None:
    """Percentile interval of ``stat(idx)`` over ``resamples`` draws of ``n`` indices with replacement;
    None when fewer than half the resamples give a finite value."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(resamples):
        v = stat(rng.integers(0, n, n))
        if v is not None and math.isfinite(v):
            vals.append(v)
    if len(vals) < resamples / 2:
        return None
    lo, hi = np.percentile(vals, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return [float(lo), float(hi)]


def _silent(f, *args) -> float:
    """``f(*args)`` without scipy's warnings for constant inputs (the value is then NaN, dropped)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return f(*args)


def rank_agreement(inherited: Sequence[Sequence[float]], standalone: Sequence[float], resamples: int = 1000,
                   seed: int = 0, ks: Sequence[int] = (3, 5)) -> dict:
    """tau, rho and top-k overlap between each seed's inherited scores (``inherited[s][i]`` for arch
    ``i``) and the stand-alone scores: per seed, their mean and std over seeds, and a bootstrap 95%
    interval of the seed mean (archs resampled, the same draw for every seed)."""
    inh = np.asarray(inherited, dtype=float)
    ref = np.asarray(standalone, dtype=float)
    funcs = {"kendall_tau": kendall_tau, "spearman_rho": spearman_rho}
    funcs.update({f"top{k}_overlap": (lambda a, b, k=k: topk_overlap(a, b, k)) for k in ks})
    out = {}
    for name, f in funcs.items():
        def mean_over_seeds(idx, f=f):
            if name.startswith("top"):
                idx = np.unique(idx)  # a duplicated arch would fill the top-k twice
            return float(np.mean([_silent(f, row[idx], ref[idx]) for row in inh]))

        per_seed = [_silent(f, row, ref) for row in inh]
        out[name] = {"value": float(np.mean(per_seed)), "per_seed": per_seed,
                     "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
                     "ci95": bootstrap_ci(mean_over_seeds, len(ref), resamples, seed)}
    return out


def noise_ceiling(standalone: Sequence[Sequence[float]], resamples: int = 1000, seed: int = 0) -> dict | None:
    """The rank agreement of stand-alone seed 0 with seeds 1..K (``standalone[k][i]``: arch ``i`` at
    seed ``k``): what two runs of the same recipe agree on, the tau no proxy can be expected to beat.
    :func:`rank_agreement` with seed 0 as the reference: ``value`` is the mean over the pairs
    (0, k), ``per_pair`` lists them in the order of ``pairs``; None with fewer than two seeds."""
    if len(standalone) < 2:
        return None
    agree = rank_agreement(standalone[1:], standalone[0], resamples, seed)
    out = {name: {k: v for k, v in d.items() if k != "per_seed"} | {"per_pair": d["per_seed"]}
           for name, d in agree.items()}
    return {**out, "pairs": [[0, k] for k in range(1, len(standalone))], "seeds": list(range(len(standalone)))}


def normalised(points: Sequence[tuple[float, float]], gflops_max: float) -> np.ndarray:
    """(metric %, GFLOPs) pairs as the minimised, normalised objectives of :data:`HV_REF`."""
    return np.array([[-m / 100.0, g / gflops_max] for m, g in points], dtype=float).reshape(-1, 2)


def hypervolume(points: Sequence[tuple[float, float]], gflops_max: float) -> float:
    """Hypervolume (pymoo) of (metric %, GFLOPs) points, normalised as the module says; 0 for none."""
    from pymoo.indicators.hv import HV

    if not len(points):
        return 0.0
    return float(HV(ref_point=np.array(HV_REF))(normalised(points, gflops_max)))


def hv_curve(points: Sequence[tuple[float, float]], gflops_max: float) -> list[float]:
    """Hypervolume of the first k points for k = 1 .. len(points) (the search's evaluation order)."""
    return [hypervolume(points[:k], gflops_max) for k in range(1, len(points) + 1)]


def mean_std(values: Sequence[float]) -> dict:
    """``{"mean", "std" (sample, ddof 1; 0 for one value), "per_seed"}``."""
    v = [float(x) for x in values]
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "per_seed": v}
