"""``scalenas study --quick`` end to end: every section of study.json with finite numbers, the report
and plots; then a study stopped between (and inside) stages continues to the same study.json."""
import json
import math
import os
import shutil

import pytest
from scipy.stats import kendalltau

from scalenas.cli import main
from scalenas.errors import ScaleNASError
from scalenas.study.config import load_study_config
from scalenas.study.parallel import threads_per_worker
from scalenas.utils.runtime import torch_threads

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "study_seg_synth.yaml")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _check_sections(doc: dict) -> None:
    for name in ("grouped", "uniform", "sandwich"):
        t = doc["fidelity"][name]["kendall_tau"]
        assert _finite(t["value"]) and all(map(_finite, t["ci95"])) and t["ci95"][0] <= t["ci95"][1]
        for key in ("spearman_rho", "top3_overlap", "top5_overlap"):
            assert _finite(doc["fidelity"][name][key]["value"])
        s = doc["samplers"][name]
        assert _finite(s["hypervolume"]["mean"]) and _finite(s["hypervolume"]["std"]) and s["hypervolume"]["mean"] > 0
        assert len(s["hypervolume"]["per_seed"]) == 2
    for name in ("evolution", "random"):
        h = doc["strategies"][name]
        assert _finite(h["hypervolume"]["mean"]) and _finite(h["hypervolume"]["std"])
        assert len(h["hv_vs_evaluations"]["mean"]) == h["evaluations"] > 3
    for name in ("searched", "hrnet"):
        fs = doc["from_scratch"][name]
        assert _finite(fs["mean"]) and _finite(fs["std"]) and len(fs["per_seed"]) == 2
    assert doc["from_scratch"]["searched"]["gflops"] <= doc["from_scratch"]["hrnet"]["gflops"]
    fi = doc["fidelity_vs_images"]
    for kind in ("search_images", "calib_images"):
        assert fi[kind] and all(_finite(r["kendall_tau"]) for r in fi[kind]) and fi[kind][-1]["kendall_tau"] == 1.0
    assert _finite(fi["halving"]["kendall_tau"]) and fi["halving"]["cost_ratio"] > 0
    sh = fi["split_half"]
    assert _finite(sh["kendall_tau"]) and _finite(sh["spearman_rho"]) and all(map(_finite, sh["kendall_tau_ci95"]))
    assert sh["images"] == [4, 4] and sh["first_image"] == [0, 4]  # the 8-image search split, halved
    c = doc["noise_ceiling"]
    assert c["pairs"] == [[0, 1]] and c["seeds"] == [0, 1]
    for key in ("kendall_tau", "spearman_rho"):
        assert _finite(c[key]["value"]) and all(map(_finite, c[key]["ci95"]))
    for name in ("grouped", "uniform", "sandwich"):
        v = doc["fidelity"][name]["kendall_tau_vs_mean"]
        assert _finite(v["value"]) and all(map(_finite, v["ci95"]))
    assert {a["name"] for a in doc["archs"]} >= {"smallest", "largest", "hrnet"} and len(doc["archs"]) == 5
    assert len(doc["aims"]) == 6 and all(isinstance(a["met"], bool) for a in doc["aims"])


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    """The quick study, run once for the tests below (which stop and continue it)."""
    out = tmp_path_factory.mktemp("study") / "quick"
    assert main(["study", CONFIG, "--quick", "-o", str(out)]) == 0
    return out, json.loads((out / "study.json").read_text())


def _unit(out, key):
    return json.loads((out / "units" / f"{key}.json").read_text())["result"]


@pytest.mark.slow
def test_quick_study_has_every_section(quick_study):
    out, doc = quick_study
    _check_sections(doc)
    # the ceiling is scipy's tau between the fidelity archs' stand-alone seeds 0 and 1 (their unit results)
    alone = [[_unit(out, f"standalone/{a['hash']}-s{s}")["metric"] for a in doc["archs"]] for s in (0, 1)]
    assert doc["noise_ceiling"]["kendall_tau"]["value"] == pytest.approx(
        kendalltau(*alone).statistic, abs=1e-12)
    halves = [_unit(out, f"scores/half-{i}")["metrics"] for i in (0, 1)]
    assert doc["fidelity_vs_images"]["split_half"]["kendall_tau"] == pytest.approx(
        kendalltau(*halves).statistic, abs=1e-12)
    md = (out / "study.md").read_text()
    assert "## Reading" in md and ("**met**" in md or "**not met**" in md)
    assert "| stand-alone seed 0 vs seed k (noise ceiling) |" in md and "- Noise ceiling: " in md
    assert "Split-half reliability: " in md and "- Reliability of the full evaluation: " in md
    for png in ("fidelity.png", "hypervolume.png", "fidelity_vs_images.png"):
        assert (out / png).stat().st_size > 10_000


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_study(quick_study):
    """Stop the study "between stages" (unit results of every wave gone, with their runs) and "inside"
    one (a supernet whose result was not written yet, its checkpoint already saved), then continue it."""
    out, doc = quick_study
    searched = doc["from_scratch"]["searched"]["hash"]
    largest = next(a["hash"] for a in doc["archs"] if a["name"] == "largest")  # never the searched arch
    gone = ["supernet/uniform-s1", "scores/inherited-uniform-s1", "search/evolution-uniform-s1-s0",
            "search/random-grouped-s0-s1", "scores/images-2", "halving/main", f"standalone/{searched}-s1",
            f"standalone/{largest}-s1", "scores/half-1"]
    for key in gone:
        os.unlink(out / "units" / f"{key}.json")
        shutil.rmtree(out / "runs" / key, ignore_errors=True)
    os.unlink(out / "units" / "supernet" / "grouped-s1.json")
    os.unlink(out / "study.json")
    assert main(["study", CONFIG, "--quick", "-o", str(out)]) == 0
    assert json.loads((out / "study.json").read_text()) == doc


@pytest.mark.slow
def test_units_on_two_worker_processes(quick_study, monkeypatch):
    """Units re-run on 2 spawned worker processes give the results they give in-process with the same
    torch threads (a score differs in its 3rd decimal between thread counts, by CPU, so the reference
    is re-run at the workers' count: OMP_NUM_THREADS caps the in-process setting)."""
    out, _ = quick_study
    keys = ["scores/images-2", "scores/calib-2"]

    def rerun(*extra):
        for k in keys:
            os.unlink(out / "units" / f"{k}.json")
        with torch_threads(None):  # restores the count the study sets
            assert main(["study", CONFIG, "--quick", "-o", str(out), *extra]) == 0
        return {k: _unit(out, k)["metrics"] for k in keys}

    monkeypatch.setenv("OMP_NUM_THREADS", str(threads_per_worker(2)))
    in_process = rerun()
    on_workers = rerun("--workers", "2")
    for k in keys:
        assert on_workers[k] == pytest.approx(in_process[k], abs=1e-9), k


def test_a_folder_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    os.makedirs(out)
    (out / "config.yaml").write_text("seed: 5\n")
    assert main(["study", CONFIG, "--quick", "-o", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "holds a study with other settings (seed: 5 -> 0)" in err and len(err.strip().splitlines()) == 1


def test_study_config_errors_name_the_key():
    with pytest.raises(ScaleNASError, match="study.samplers"):
        load_study_config(CONFIG, ["study.samplers=[uniform]"])
    with pytest.raises(ScaleNASError, match="study.strategies"):
        load_study_config(CONFIG, ["study.strategies=[evolutoin]"])
    with pytest.raises(ScaleNASError, match="study.seedz: unknown key"):
        load_study_config(CONFIG, ["study.seedz=2"])
    quick = load_study_config(CONFIG, quick=True)
    assert quick.study.archs == 5 and quick.train.batch_size == 4 and load_study_config(CONFIG).study.archs == 16


@pytest.mark.slow
def test_halving_reliability_bench_on_the_quick_study(quick_study, tmp_path, monkeypatch, capsys):
    """``bench/halving_reliability.py``: the quick study's archs scored on new images; its split-half and
    prefix taus are scipy's on the scores it reports, and halving scores fewer images than full evaluation."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))
    import halving_reliability as hr

    out, doc = quick_study
    monkeypatch.setattr(sys, "argv", ["halving_reliability.py", str(out), "--images", "12", "--min-images", "3,6",
                                      "--eta", "2", "-o", str(tmp_path / "hr")])
    hr.main()
    r = json.loads((tmp_path / "hr.json").read_text())
    assert r["archs"] == len(doc["archs"]) == len(r["full"]) and all(map(_finite, r["full"]))
    sh = r["split_half"]
    assert sh["images"] == [6, 6] and sh["kendall_tau"] == pytest.approx(
        kendalltau(*sh["metrics"]).statistic, abs=1e-12, nan_ok=True)
    assert [p["images"] for p in r["prefixes"]] == [3, 6]
    assert [h["min_images"] for h in r["halving"]] == [3, 6]
    for h in r["halving"]:
        assert max(h["eval_images"]) == 12 and min(h["eval_images"]) == h["min_images"]
        assert h["kendall_tau"] == pytest.approx(kendalltau(h["metrics"], r["full"]).statistic, abs=1e-12,
                                                 nan_ok=True)
        assert 0 <= h["top3_overlap"] <= 1 and h["top1"] in (0, 1)
    # 5 archs on 3 images, 3 on 6, 2 on 12 (5 on 6, 3 on 12 for the second), against 5 on 12 in full
    assert [h["eval_images_ratio"] for h in r["halving"]] == pytest.approx([60 / 57, 60 / 66])
    assert "successive halving (min 6, eta 2)" in (tmp_path / "hr.md").read_text()
