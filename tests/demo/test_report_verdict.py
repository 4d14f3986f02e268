"""The demo report's verdict and its caution for undertrained supernets (pure functions)."""
from scalenas.demo.report import undertrained_note, verdict


def _m(name, gflops, test, ref=False, metric="AP"):
    return {"name": name, "hash": name * 3, "gflops_2p30": gflops, "metric_test": test, "reference": ref,
            "metric_name": metric}


def test_verdict_yes_when_a_searched_model_matches_hrnet_at_no_more_gflops():
    ok, text = verdict([_m("a", 0.05, 27.5), _m("hrnet", 0.08, 26.5, ref=True)])
    assert ok and text.startswith("**Yes**") and "27.50" in text


def test_verdict_no_when_the_better_model_costs_more():
    ok, text = verdict([_m("a", 0.09, 30.0), _m("hrnet", 0.08, 26.5, ref=True)])
    assert not ok and text.startswith("**No**")


def test_caution_only_when_every_metric_is_below_the_floor():
    low = [_m("a", 0.05, 0.19), _m("hrnet", 0.08, 0.09, ref=True)]
    note = undertrained_note(low)
    assert note is not None and "best 0.19" in note and "AP" in note
    assert undertrained_note([_m("a", 0.05, 0.19), _m("hrnet", 0.08, 5.0, ref=True)]) is None
    assert undertrained_note([_m("a", 0.05, None), _m("hrnet", 0.08, None, ref=True)]) is None
