"""``bench/bottomup_sweep.py``: each variant changes only its setting in the run config, the attribution table
reads what the runs recorded, and the docstring's example commands name real variants; the runs themselves
are the bench's (minutes each)."""
import re

import bottomup_sweep as bs
import pytest


@pytest.mark.parametrize("name", sorted(bs.VARIANTS))
def test_each_variant_changes_only_its_setting(name):
    s = {**bs.BASE, **bs.VARIANTS[name]}
    cfg = bs.run_config(s, "/data", "/run", steps=10)
    base = bs.run_config(dict(bs.BASE), "/data", "/run", steps=10)
    assert cfg["task"]["loss"]["background_weight"] == s["background_weight"]
    assert cfg["task"]["loss"]["push_factor"] == s["tag_weight"] and cfg["task"]["input_size"] == s["size"]
    assert cfg["train"]["optimizer"]["lr"] == s["lr"] and cfg["train"]["steps"] == 10
    if name != "base" and not name.startswith("images_"):  # those change the dataset, not the config
        assert cfg != base
    assert (cfg["sampler"]["kind"] == "fixed") == (name == "hrnet_alone")


def test_attribution_report_rows():
    a = {"AP": 0.0, "AP_true_tags": 0.5, "AP_true_heatmaps": 12.0, "AP_oracle": 57.0}
    results = [{"name": "base", "attribution": {"train": a, "val": {**a, "AP_oracle": 51.0}}},
               {"name": "bg_0.1"}]  # an old run without attribution is left out of the table
    headers, rows = bs.attribution_report(results)
    assert headers[2:] == ["AP", "AP with true tags", "AP with true heatmaps", "perfect network"]
    assert rows == [["base", "train", 0.0, 0.5, 12.0, 57.0], ["base", "val", 0.0, 0.5, 12.0, 51.0]]


def test_docstring_examples_name_real_variants():
    for names in re.findall(r"--only ([\w.,-]+)", bs.__doc__):
        assert set(names.split(",")) <= set(bs.VARIANTS), names
