"""The study's statistics against scipy and pymoo, and hand-computed values."""
import numpy as np
import pytest
from pymoo.indicators.hv import HV
from scipy import stats as sps

from scalenas.study import stats


def test_tau_and_rho_are_scipys_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 30).astype(float)  # ties on purpose: tau-b
    b = a + rng.normal(0, 1.5, 30)
    assert stats.kendall_tau(a, b) == pytest.approx(sps.kendalltau(a, b).statistic, abs=1e-12)
    assert stats.spearman_rho(a, b) == pytest.approx(sps.spearmanr(a, b).statistic, abs=1e-12)
    assert stats.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert stats.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0


def test_topk_overlap_by_hand():
    a = [5, 4, 3, 2, 1]
    b = [5, 1, 4, 3, 2]  # top-3 of b: positions 0, 2, 3; of a: 0, 1, 2
    assert stats.topk_overlap(a, b, 3) == pytest.approx(2 / 3)
    assert stats.topk_overlap(a, a, 5) == 1.0


def test_hypervolume_two_points_by_hand():
    # (metric %, GFLOPs) with GFLOPs(largest) = 10: minimised points (-0.5, 0.6) and (-0.3, 0.2), reference (0, 1.1):
    # 0.5 * 0.5 + 0.3 * 0.9 - 0.3 * 0.5 = 0.37
    assert stats.hypervolume([(50, 6.0), (30, 2.0)], 10.0) == pytest.approx(0.37, abs=1e-12)
    assert stats.hypervolume([], 10.0) == 0.0
    # a dominated point adds nothing
    assert stats.hypervolume([(50, 6.0), (30, 2.0), (20, 7.0)], 10.0) == pytest.approx(0.37, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hypervolume_is_pymoos(seed):
    rng = np.random.default_rng(seed)
    pts = [(float(m), float(g)) for m, g in zip(rng.uniform(0, 80, 25), rng.uniform(0.5, 9.5, 25))]
    F = np.array([[-m / 100, g / 10.0] for m, g in pts])
    assert stats.hypervolume(pts, 10.0) == pytest.approx(HV(ref_point=np.array([0.0, 1.1]))(F), abs=1e-12)
    curve = stats.hv_curve(pts, 10.0)
    assert len(curve) == 25 and all(b >= a - 1e-12 for a, b in zip(curve, curve[1:]))  # fronts only grow
    assert curve[-1] == pytest.approx(stats.hypervolume(pts, 10.0))


def _agreement(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    alone = rng.normal(size=n)
    inherited = [alone + rng.normal(0, 0.8, n) for _ in range(2)]
    return stats.rank_agreement(inherited, alone, resamples=200, seed=0)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_n():
    small, large = _agreement(12), _agreement(200)
    for doc in (small, large):
        t = doc["kendall_tau"]
        assert t["ci95"][0] <= t["value"] <= t["ci95"][1]
        assert t["value"] == pytest.approx(np.mean(t["per_seed"]))
    width = lambda d: d["kendall_tau"]["ci95"][1] - d["kendall_tau"]["ci95"][0]  # noqa: E731
    assert width(large) < 0.5 * width(small)
    assert _agreement(12) == small  # seeded: the same interval every time


def test_bootstrap_ci_of_a_constant_and_of_undefined_resamples():
    assert stats.bootstrap_ci(lambda idx: 0.5, 10, 100) == [0.5, 0.5]
    assert stats.bootstrap_ci(lambda idx: float("nan"), 10, 100) is None


def test_mean_std_uses_the_sample_std():
    d = stats.mean_std([1.0, 2.0, 3.0])
    assert d["mean"] == 2.0 and d["std"] == pytest.approx(1.0) and d["per_seed"] == [1.0, 2.0, 3.0]
    assert stats.mean_std([4.0])["std"] == 0.0


def test_noise_ceiling_is_scipys_tau_between_seeds():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=12)
    seeds = [truth + rng.normal(0, 0.7, 12) for _ in range(3)]  # stand-alone scores at seeds 0, 1, 2
    c = stats.noise_ceiling(seeds, resamples=200, seed=0)
    taus = [sps.kendalltau(seeds[0], seeds[k]).statistic for k in (1, 2)]
    rhos = [sps.spearmanr(seeds[0], seeds[k]).statistic for k in (1, 2)]
    assert c["pairs"] == [[0, 1], [0, 2]] and c["seeds"] == [0, 1, 2]
    assert c["kendall_tau"]["per_pair"] == pytest.approx(taus, abs=1e-12)
    assert c["kendall_tau"]["value"] == pytest.approx(np.mean(taus), abs=1e-12)
    assert c["spearman_rho"]["value"] == pytest.approx(np.mean(rhos), abs=1e-12)
    lo, hi = c["kendall_tau"]["ci95"]
    assert lo <= c["kendall_tau"]["value"] <= hi
    # one pair: exactly scipy's tau of the two seeds; a single seed has no ceiling
    one = stats.noise_ceiling(seeds[:2], resamples=50)
    assert one["kendall_tau"]["value"] == pytest.approx(taus[0], abs=1e-12) and one["pairs"] == [[0, 1]]
    assert stats.noise_ceiling(seeds[:1]) is None
