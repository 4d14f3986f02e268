"""``bench/families_front.py``: the two families' fronts at equal training budget, in its quick size
(32x32 synthetic images, 4 training steps, 2 shrink targets), and its pure helpers."""
import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))

import families_front as ff  # noqa: E402

from scalenas.errors import ScaleNASError  # noqa: E402


def test_targets_spread_over_the_overlap():
    assert ff.targets(0.01, 0.03, (0.001, 0.1), 3) == [0.01, 0.02, 0.03]
    # clipped strictly inside what shrinking reaches (5% margins)
    assert ff.targets(0.01, 0.03, (0.001, 0.02), 2) == [0.01, 0.019]
    with pytest.raises(ScaleNASError, match="do not overlap"):
        ff.targets(0.01, 0.03, (0.04, 0.1), 3)


def test_matched_takes_the_best_front_member_at_no_more_gflops():
    front = [{"gflops": 1.0, "test_metric": 10.0}, {"gflops": 2.0, "test_metric": 30.0},
             {"gflops": 3.0, "test_metric": 20.0}]
    runs = [{"gflops": 0.5, "test_metric": 5.0}, {"gflops": 2.5, "test_metric": 25.0}]
    assert ff.matched(front, runs) == [
        {"hrnas_gflops": 0.5, "hrnas_metric": 5.0, "scalenas_gflops": None, "scalenas_metric": None},
        {"hrnas_gflops": 2.5, "hrnas_metric": 25.0, "scalenas_gflops": 2.0, "scalenas_metric": 30.0}]


def _numbers(doc):
    if isinstance(doc, dict):
        return [x for v in doc.values() for x in _numbers(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _numbers(v)]
    return [doc] if isinstance(doc, (int, float)) and not isinstance(doc, bool) else []


def test_quick_run_writes_every_field_and_resumes(tmp_path, capsys):
    out = tmp_path / "fam"
    res = ff.run(str(out), quick=True, workers=1, steps=4, k=2, report_dir=None)
    doc = json.loads(open(res["json"]).read())
    assert all(math.isfinite(x) for x in _numbers(doc))
    assert doc["gflops_convention"] == "MACs/2^30" and doc["input_hw"] == [32, 32]
    sc, runs = doc["scalenas"], doc["hrnas"]["runs"]
    assert sc["supernet"]["steps"] == 4 and sc["supernet"]["images"] == 16 and sc["search"]["evaluations"] > 0
    assert sc["front"] and all(set(m) == {"hash", "gflops", "test_metric", "search_metric"} for m in sc["front"])
    lo, hi = doc["settings"]["scalenas_range"]
    assert all(lo - 1e-9 <= m["gflops"] <= hi + 1e-9 for m in sc["front"] + [sc["hrnet"]])
    # equal budget: every shrink run has the supernet's steps and batch
    assert len(runs) == 2 and all(r["steps"] == 4 and r["images"] == 16 for r in runs)
    assert [r["target_gflops"] for r in runs] == pytest.approx([lo, hi], abs=1e-6)
    assert doc["totals"]["hrnas"]["train_steps"] == 8 and doc["totals"]["scalenas"]["train_steps"] == 4
    assert len(doc["comparisons"]) == 2 and 0 <= doc["hypervolume_test"]["scalenas"] <= 1.1
    md = open(res["md"]).read()
    assert "| HR-NAS shrink |" in md and "## Reading" in md and open(res["png"], "rb").read(4) == b"\x89PNG"
    units = sorted(p.name for p in (out / "units").rglob("*.json"))
    assert len(units) == 5  # supernet, 2 shrink runs, search, hrnet score
    # a rerun skips every finished unit and reports the same numbers
    capsys.readouterr()
    again = ff.run(str(out), quick=True, workers=1, steps=4, k=2, report_dir=None)
    assert " done (" not in capsys.readouterr().out
    assert json.loads(open(again["json"]).read()) == doc
    with pytest.raises(ScaleNASError, match=r"other settings \(families.steps: 4 -> 5\)"):
        ff.run(str(out), quick=True, workers=1, steps=5, k=2, report_dir=None)
