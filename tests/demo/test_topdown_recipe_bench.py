"""``bench/topdown_recipe.py``: each row changes exactly what it names in the demo's run config, and the report
says which change each row measured; the training itself is the bench's (~35 minutes)."""
import argparse
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))

import topdown_recipe as tr  # noqa: E402


def _args(tmp_path, **kw):
    return argparse.Namespace(out=str(tmp_path), steps=kw.get("steps", 1600), workers=2, only=list(tr.VARIANTS))


def _diff(a, b, path=""):
    """Dotted keys where two nested dicts differ."""
    keys = set(a) | set(b)
    out = []
    for k in sorted(keys):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{path}{k}.")
        elif va != vb:
            out.append(f"{path}{k}")
    return out


@pytest.mark.parametrize("name", [n for n in tr.VARIANTS if n != "demo"])
def test_variant_changes_only_what_it_names(tmp_path, name):
    args = _args(tmp_path)
    base = tr.variant_config(args, "demo", "r")
    changed = tr.variant_config(args, name, "r")
    named = sorted(f"{section}.{key}" for section, key, _ in tr.VARIANTS[name])
    assert _diff(base, changed) == named
    assert base["train"]["steps"] == 1600 and base["train"]["workers"] == 0


def test_variant_does_not_leak_into_the_demo_settings(tmp_path):
    from scalenas.demo.settings import POSE

    before = repr(POSE)
    tr.variant_config(_args(tmp_path), "previous", "r")
    assert repr(POSE) == before


def test_report_names_each_rows_change(tmp_path):
    three = lambda a, b, c: {"largest": a, "smallest": b, "hrnet": c}  # noqa: E731
    rows = [{"name": "demo", "seed": 0, "changes": [], "wall_s": 600.0, "val": three(44.6, 41.6, 39.2),
             "test": three(40.6, 37.9, 36.1)},
            {"name": "lr_5e-3", "seed": 0, "changes": [["train", "optimizer.lr", 0.005]], "wall_s": 630.0,
             "val": three(36.1, 33.6, 33.4), "test": three(31.3, 29.1, 27.4)}]
    md = tr.report(_args(tmp_path), rows)
    assert "| demo | 0 | (as shipped) | 10.0 | 44.60 | 41.60 | 39.20 | 40.60 | 37.90 | 36.10 |" in md
    assert "| lr_5e-3 | 0 | optimizer.lr 0.005 | 10.5 | 36.10 |" in md and "Mean over seeds" not in md


def test_rows_of_other_seeds_are_kept_and_averaged(tmp_path):
    from scalenas.utils.io import atomic_write_json

    three = lambda a: {"largest": a, "smallest": a - 2, "hrnet": a - 4}  # noqa: E731
    for name, seed, ap in [("previous", 0, 30.0), ("demo", 1, 40.0), ("demo", 0, 36.0)]:
        atomic_write_json(str(tmp_path / "rows" / f"{tr.row_name(name, seed)}.json"),
                          {"name": name, "seed": seed, "changes": [], "wall_s": 60.0, "val": three(ap + 5),
                           "test": three(ap)})
    args = argparse.Namespace(out=str(tmp_path), steps=1600, workers=1, only=["demo"], seeds=[0])
    rows = tr.run_rows(args)  # every row is kept: nothing trains
    assert [(r["name"], r["seed"]) for r in rows] == [("demo", 0), ("demo", 1), ("previous", 0)]
    md = tr.report(args, rows)
    assert "Mean over seeds:" in md and "| demo | 2 | 43.00 | 41.00 | 39.00 | 38.00 | 36.00 | 34.00 |" in md
    assert "| previous | 2 |" not in md
