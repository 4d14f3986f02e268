"""Successive halving for search evaluations (``search.halving: {min_images, eta}``).

Scoring a candidate costs its BN recalibration plus one forward pass per image of the search split,
and in a real search evaluation dominates (about 3,000 subnets in the reference). Successive
halving (Jamieson & Talwalkar, 2016) scores a whole batch cheaply and spends the full split only on
the candidates that could matter:

    rung r scores the candidates still in play on the first n_r = min_images * eta^r images of the
    split (n_last = the full split); the best ceil(k / eta) of the k candidates scored at rung r go on.

"Best" is the strategy's own order: successive Pareto layers of the objectives (cheapest first within
a layer), so among candidates of equal cost it is the metric. Every candidate's record is the
one of the last rung it reached, with ``eval_images`` saying on how many images it was scored; a
candidate dropped before the last rung has its metric put on the full split's scale
(``on_full_split``; its raw score is kept as ``measured_metric``), so that the strategy's ranking and
Pareto front compare like with like. With
``min_images`` at least the split size there is one rung: plain full evaluation. The rungs are nested
(the first n images of the split), and every step is a pure function of the scores, so the outcome
is deterministic and independent of the number of workers.

Cost: with N candidates, split size F, min_images = F / eta^R the eval-image cost is
sum_r N/eta^r * F/eta^(R-r) = (R+1) N F / eta^R, i.e. eta^R / (R+1) times cheaper than N F (3x for
eta = 3, R = 2). BN recalibration is paid once per candidate: the evaluator keeps a candidate's
recalibrated statistics for its later rungs (``Evaluator._calibrate``; a candidate re-scored on
another worker process is recalibrated there, with the same result).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from scalenas.errors import ScaleNASError
from scalenas.space.arch import Arch


def rungs(full_images: int, min_images: int, eta: int) -> list[int]:
    """Images per rung: min_images, min_images * eta, ... below ``full_images``, then ``full_images``."""
    if full_images < 1 or min_images < 1 or eta < 2:
        raise ScaleNASError(f"search.halving: need full images >= 1, min_images >= 1 and eta >= 2 "
                            f"(got {full_images}, {min_images}, {eta})")
    out, n = [], min_images
    while n < full_images:
        out.append(n)
        n *= eta
    return out + [full_images]


def successive_halving(archs: Sequence[Arch], score: Callable[[list[Arch], int], list[dict]], full_images: int,
                       min_images: int, eta: int,
                       select: Callable[[list[dict], int], list[int]]) -> tuple[list[dict], int]:
    """``(records, eval_images)``: one record per arch of ``archs`` (in their order), the one of the
    last rung it reached (``eval_images`` and ``rung`` added), and the images scored in all.

    ``score(archs, n)``: their records (in order) scored on the first ``n`` images; ``select(records, k)``:
    the positions of the ``k`` best of ``records``."""
    plan = rungs(full_images, min_images, eta)
    final: list[dict | None] = [None] * len(archs)
    measured: list[list[float]] = [[] for _ in archs]  # each arch's metric at every rung it reached
    alive = list(range(len(archs)))
    spent = 0
    for r, n in enumerate(plan):
        recs = score([archs[i] for i in alive], n)
        spent += n * len(alive)
        for i, rec in zip(alive, recs):
            final[i] = {**rec, "eval_images": n, "rung": r}
            measured[i].append(float(rec["metric"]))
        if r == len(plan) - 1:
            break
        keep = select([final[i] for i in alive], max(1, math.ceil(len(alive) / eta)))
        alive = [alive[j] for j in sorted(keep)]
    for i, estimate in on_full_split(measured, len(plan)).items():
        final[i] = {**final[i], "measured_metric": final[i]["metric"], "metric": estimate}
    return final, spent


def on_full_split(measured: list[list[float]], n_rungs: int) -> dict[int, float]:
    """Full-split estimates of the metrics of the candidates dropped before the last rung.

    A score on the first n images is not on the full split's scale: a subset of easier (or harder)
    images lifts (or lowers) every candidate scored on it, so a dropped candidate's raw score could
    sit above the survivors' full-split scores and, in a search, enter the Pareto front on the
    strength of its images. Each rung's offset is estimated on the candidates promoted from it,
    whose scores on both sides are known: the mean of (their full-split estimate - their score at
    this rung), applied to the candidates dropped there (rungs taken from the last down, so a
    candidate dropped at a later rung already has its estimate). An additive model of the subset's
    effect; it keeps the order within a rung. The promoted candidates were chosen for high scores at
    that rung, so the offset leans low (the winner's curse): dropped candidates are, if anything,
    placed too low, never lifted above the evidence."""
    est = {i: m[-1] for i, m in enumerate(measured) if len(m) == n_rungs}
    dropped: dict[int, float] = {}
    for r in range(n_rungs - 2, -1, -1):
        promoted = [i for i, m in enumerate(measured) if len(m) > r + 1]
        shift = sum(est[i] - measured[i][r] for i in promoted) / len(promoted)
        for i, m in enumerate(measured):
            if len(m) == r + 1:
                est[i] = dropped[i] = m[r] + shift
    return dropped
