"""``bench/topdown_dark.py``: its task sections, the seed summary and a report that says what the rows
measured; the training itself is the bench's (~40 minutes)."""
import argparse
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))

import topdown_dark as td  # noqa: E402


def _rows():
    three = lambda a, b, c: {"largest": a, "smallest": b, "hrnet": c}  # noqa: E731
    rows = []
    for enc, base in (("rounded", 30.0), ("unbiased", 34.0)):
        for seed, shift in ((0, 1.0), (1, -1.0)):
            p = three(base + shift, base - 4 + shift, base - 6 + shift)
            d = three(*(v + 5 for v in p.values()))
            rows.append({"encoding": enc, "seed": seed, "steps": 2400, "wall_s": 780.0,
                         "plain": {"val": p, "test": p}, "dark": {"val": d, "test": d}})
    return rows


def test_task_sections_switch_only_encoding_and_decoder(tmp_path):
    args = argparse.Namespace(out=str(tmp_path))
    base = td.task_config(args, "rounded", "plain")
    dark = td.task_config(args, "unbiased", "dark")
    assert base["unbiased_encoding"] is False and base["inference"]["dark"] is False
    assert dark["unbiased_encoding"] is True and dark["inference"]["dark"] is True
    assert {k: v for k, v in base.items() if k not in ("unbiased_encoding", "inference")} == \
        {k: v for k, v in dark.items() if k not in ("unbiased_encoding", "inference")}
    assert base["input_hw"] == [128, 96] and base["root"] == os.path.join(str(tmp_path), "data")


def test_summary_is_mean_and_sd_over_seeds():
    s = td.summary(_rows())
    assert s["rounded+plain"]["largest"] == pytest.approx((30.0, 2 ** 0.5))
    assert s["unbiased+dark"]["hrnet"] == pytest.approx((33.0, 2 ** 0.5))


def test_report_and_plot(tmp_path):
    rows = _rows()
    ceiling = {"rounded": {"plain": 91.08, "dark": 91.32}, "unbiased": {"plain": 99.51, "dark": 100.0}}
    md = td.report(argparse.Namespace(workers=2, steps=2400, seeds=[0, 1]), rows, ceiling)
    assert "| rounded | 0 | 13.0 | 31.00 | 27.00 | 25.00 | 36.00 | 32.00 | 30.00 |" in md
    assert "| unbiased+dark | 100.00 | 39.00 ± 1.41 | 35.00 ± 1.41 | 33.00 ± 1.41 |" in md
    assert "Mean ± sd over 2 seeds" in md
    assert os.path.getsize(td.plot(str(tmp_path / "d.png"), rows)) > 5000
