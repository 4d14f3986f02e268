"""Successive halving (search/halving.py): its rungs, determinism, and its ranking against full evaluation."""
import random

import pytest

from scalenas.errors import ScaleNASError
from scalenas.search.halving import on_full_split, rungs, successive_halving
from scalenas.search.objectives import parse_objectives
from scalenas.search.pareto import select_by_layers
from scalenas.space.space import SearchSpace

SPACE = SearchSpace(width=8, modules_per_stage=(1, 1, 1), depth_choices=(1, 2), stem_channels=16, stage1_blocks=1)
OBJECTIVES = parse_objectives(["metric", "gflops"])


def _archs(n: int):
    rng = random.Random(0)
    out = {}
    while len(out) < n:
        a = SPACE.sample(rng, 0.5)
        out[a.hash] = a
    return list(out.values())


def _select(records, k):
    # equal costs: the Pareto layers are the metric's order
    return select_by_layers([{"metric": r["metric"], "gflops": 1.0} for r in records], OBJECTIVES, k)


def test_rungs():
    assert rungs(40, 4, 3) == [4, 12, 36, 40]
    assert rungs(27, 3, 3) == [3, 9, 27]
    assert rungs(10, 10, 3) == [10] and rungs(10, 50, 2) == [10]
    with pytest.raises(ScaleNASError, match="search.halving"):
        rungs(10, 2, 1)


def test_order_preserving_scores_give_the_full_ranking_and_the_stated_cost():
    """When fewer images keep the full evaluation's order (here: the score is the true quality scaled by
    the share of images), the best candidates always reach the last rung, so halving ranks them as full
    evaluation does, and the top one gets its full-evaluation score."""
    archs = _archs(27)
    quality = {a.hash: float(i) for i, a in enumerate(random.Random(1).sample(archs, len(archs)))}
    calls = []

    def score(batch, n):
        calls.append((len(batch), n))
        return [{"hash": a.hash, "metric": quality[a.hash] * n / 27} for a in batch]

    recs, spent = successive_halving(archs, score, 27, 3, 3, _select)
    assert calls == [(27, 3), (9, 9), (3, 27)]
    assert spent == 27 * 3 + 9 * 9 + 3 * 27  # = 27 * 27 / 3: three times cheaper than full
    order = lambda key: sorted(range(27), key=key, reverse=True)  # noqa: E731
    ranked = order(lambda i: (recs[i]["rung"], recs[i]["metric"]))
    assert ranked == order(lambda i: quality[archs[i].hash])
    best = max(range(27), key=lambda i: quality[archs[i].hash])
    assert recs[best]["eval_images"] == 27 and recs[best]["metric"] == quality[archs[best].hash]


def test_one_rung_is_full_evaluation_and_halving_is_deterministic():
    archs = _archs(10)
    noisy = lambda batch, n: [{"hash": a.hash, "metric": random.Random(a.hash + str(n)).random()}  # noqa: E731
                              for a in batch]
    full, spent = successive_halving(archs, noisy, 8, 8, 3, _select)
    assert spent == 80 and [r["metric"] for r in full] == [r["metric"] for r in noisy(archs, 8)]
    assert successive_halving(archs, noisy, 16, 2, 2, _select) == successive_halving(archs, noisy, 16, 2, 2, _select)


def test_dropped_candidates_are_put_on_the_full_splits_scale():
    """A subset of easier images lifts every score on it (here by 5 on the first 3 images, 2 on the first 9):
    raw, a dropped candidate would outrank the survivors; on the full split's scale (the offset measured on
    the promoted candidates) every metric is its full-evaluation value, and the raw one is kept."""
    archs = _archs(27)
    quality = {a.hash: float(i) for i, a in enumerate(random.Random(2).sample(archs, len(archs)))}
    lift = {3: 5.0, 9: 2.0, 27: 0.0}
    recs, _ = successive_halving(archs, lambda batch, n: [{"hash": a.hash, "metric": quality[a.hash] + lift[n]}
                                                          for a in batch], 27, 3, 3, _select)
    for a, r in zip(archs, recs):
        assert r["metric"] == pytest.approx(quality[a.hash])
        if r["eval_images"] < 27:
            assert r["measured_metric"] == quality[a.hash] + lift[r["eval_images"]]
        else:
            assert "measured_metric" not in r
    assert max(r["measured_metric"] for r in recs if r["rung"] == 1) > min(
        r["metric"] for r in recs if r["rung"] == 2)  # what the raw scores would have done


def test_on_full_split_by_hand():
    # rung 0 scores of 4 candidates; 2 go on (full-split scores 10 and 6: offsets -2 and -4, mean -3)
    assert on_full_split([[12.0, 10.0], [10.0, 6.0], [9.0], [1.0]], 2) == {2: 6.0, 3: -2.0}
