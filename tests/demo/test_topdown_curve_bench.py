"""``bench/topdown_curve.py``: where the AP curve crosses the demo bar, and a report that says what the rows
measured; the training itself is the bench's (~30 minutes)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))

import topdown_curve as tc  # noqa: E402


def _rows():
    three = lambda a, b, c: {"largest": a, "smallest": b, "hrnet": c}  # noqa: E731
    return [{"steps": 1600, "crops": 25600, "wall_s": 480.0, "val": three(32.3, 25.5, 23.3),
             "test": three(24.3, 19.4, 17.9)},
            {"steps": 3200, "crops": 51200, "wall_s": 960.0, "val": three(49.6, 42.0, 39.2),
             "test": three(42.4, 36.6, 33.8)}]


def test_crossing_interpolates_between_rows():
    rows = _rows()
    # largest: 24.3 -> 42.4 over 1600..3200 steps crosses 40 at 1600 + 15.7/18.1 * 1600 = 2988 steps,
    # 2988 steps at 0.3 s each (960 s / 3200) = 14.9 min
    assert tc.crossing(rows, "test", "largest", 40.0) == "~2988 steps (~15 min of one core)"
    assert tc.crossing(rows, "test", "hrnet", 40.0) == "not reached"
    assert tc.crossing(rows, "val", "largest", 30.0) == "by 1600 steps"


def test_report_and_plot(tmp_path):
    rows = _rows()
    md = tc.report(argparse.Namespace(workers=2), rows)
    assert "| 3200 | 51200 | 16.0 | 49.60 | 42.00 | 39.20 | 42.40 | 36.60 | 33.80 |" in md
    assert "largest ~2988 steps" in md and "hrnet not reached" in md
    assert os.path.getsize(tc.plot(str(tmp_path / "c.png"), rows)) > 5000


def _job(tag):
    _job.calls.append(tag)
    return {"tag": tag}


_job.calls = []


def test_cached_rows_runs_each_row_once(tmp_path):
    from functools import partial

    from _common import cached_rows

    jobs = {"a": partial(_job, 1), "b": partial(_job, 2)}
    assert cached_rows(str(tmp_path), jobs) == {"a": {"tag": 1}, "b": {"tag": 2}}
    # a second run (a restarted bench) reads the kept rows and runs nothing
    assert cached_rows(str(tmp_path), jobs) == {"a": {"tag": 1}, "b": {"tag": 2}}
    assert _job.calls == [1, 2]
