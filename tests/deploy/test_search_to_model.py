"""A real (tiny) search run -> extract --pick -> eval reproduces the metric the search recorded."""
import json
import math

import pytest

from scalenas.deploy.extract import pick_from_run
from scalenas.errors import ScaleNASError
from scalenas.search.pareto_doc import pick
from scalenas.search.runner import run_search


@pytest.fixture(scope="module")
def search_run(synth_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    cfg = {"initial": 3, "population": 2, "parents": 2, "generations": 0, "calib_images": 8, "calib_batch_size": 4,
           "eval_split": "search", "device": "cpu", "workers": 1}
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_search(synth_ckpt, str(out), cfg, progress=False)
    finally:
        torch.set_num_threads(prev)
    return str(out)


def _records(run):
    with open(f"{run}/evaluations.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_eval_reproduces_search_metric(synth_ckpt, search_run, tmp_path, h, capsys):
    recs = _records(search_run)
    budget = sorted(r["gflops_2p30"] for r in recs)[len(recs) // 2]
    chosen = pick(search_run, max_gflops=budget)
    out = tmp_path / "picked"
    assert h.cli("extract", synth_ckpt, "--pick", search_run, "--max-gflops", budget, "-o", out,
                 "--latency-iters", "1", "--eval-split", "search") == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["arch_hash"] == chosen["hash"]
    assert meta["calibration"]["num_images"] == 8 and meta["calibration"]["source"] == "search run config"
    assert meta["search"]["metric"] == chosen["metric"] and meta["search"]["split"] == "search"
    assert math.isclose(meta["metric"]["value"], chosen["metric"], rel_tol=1e-6, abs_tol=0)
    card_md = (out / "MODEL_CARD.md").read_text()
    assert "The search" in card_md and chosen["hash"] in card_md

    capsys.readouterr()
    assert h.cli("eval", out, "--split", "search", "--json", tmp_path / "m.json") == 0
    value = json.loads((tmp_path / "m.json").read_text())["value"]
    assert math.isclose(value, chosen["metric"], rel_tol=1e-6, abs_tol=0), (value, chosen["metric"])


def test_pick_budget_conventions(search_run):
    recs = _records(search_run)
    g = sorted(r["gflops_2p30"] for r in recs)[1]
    a, rec, cfg = pick_from_run(search_run, g)
    b, _, _ = pick_from_run(search_run, g * 2**30 / 1e9, convention="1e9")  # the same budget in MACs/1e9
    assert a == b and rec["gflops_2p30"] <= g and cfg["search"]["calib_images"] == 8
    with pytest.raises(ScaleNASError, match="budget"):
        pick_from_run(search_run, min(r["gflops_2p30"] for r in recs) / 2)
    with pytest.raises(ScaleNASError, match="convention"):
        pick_from_run(search_run, g, convention="GMAC")


def test_search_pick_file_names_its_run_in_the_model_card(synth_ckpt, search_run, tmp_path, h):
    """The arch written by 'search pick -o' keeps its origin through extract (not 'search run: None')."""
    import os

    from scalenas.space.arch import Arch

    assert h.cli("search", "pick", search_run, "-o", tmp_path / "arch.json") == 0
    arch = Arch.load(str(tmp_path / "arch.json"))
    assert arch.hash == pick(search_run)["hash"]
    assert h.cli("extract", synth_ckpt, tmp_path / "arch.json", "-o", tmp_path / "m", "--no-calibrate",
                 "--latency-iters", "0") == 0
    origin = json.loads((tmp_path / "m" / "card.json").read_text())["provenance"]["arch_origin"]
    assert origin == {"kind": "search", "run_dir": os.path.abspath(search_run), "record": arch.hash,
                      "file": str(tmp_path / "arch.json")}
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert f"- arch: picked from search run `{os.path.abspath(search_run)}`, record `{arch.hash}`" in card
    assert "None" not in card.split("## Provenance")[1].split("- created")[0]
