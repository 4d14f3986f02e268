"""The demo pipeline at a tiny budget writes every report artefact, and its table agrees with
`scalenas info` on the same architectures."""
import json
import os

import pytest

from scalenas.cli import main
from scalenas.demo import run_demo


@pytest.mark.slow
def test_demo_tiny_budget(tmp_path, capsys):
    out = tmp_path / "demo-out"
    res = run_demo(str(out), task="seg", budget_minutes=1.0)
    report = (out / "report.md").read_text()
    assert res["report"] == str(out / "report.md")
    assert (out / "pareto.png").stat().st_size > 10_000
    summary = json.loads((out / "report.json").read_text())
    models = summary["seg"]["models"]
    names = [m["name"] for m in models]
    assert "hrnet" in names and len(names) >= 2
    for m in models:
        assert os.path.getsize(m["drawing"]) > 10_000
        assert os.path.exists(os.path.join(m["model_dir"], "model.safetensors"))
        assert m["hash"] in report and f"{m['gflops_2p30']:.4f}" in report
        assert m["latency_ms"] and m["latency_ms"] > 0 and m["metric_test"] is not None
        # the table's GFLOPs equal `scalenas info` on the same arch and input size
        capsys.readouterr()
        h, w = m["input_hw"]
        assert main(["info", os.path.join(m["model_dir"], "model.json"), "--input", f"{h}x{w}", "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["arch_hash"] == m["hash"]
        assert abs(info["effective_gflops_2p30"] - m["gflops_2p30"]) < 5e-5 and info["effective_params"] == m["params"]
    main_pick = next(m for m in models if m.get("onnx"))
    assert os.path.exists(main_pick["onnx"]["path"]) and main_pick["onnx"]["parity_max_abs"] <= 1e-4
    assert main_pick["overlays"] and all(os.path.exists(p) for p in main_pick["overlays"])
    assert "Pareto front" in report and ("**Yes**" in report or "**No**" in report)
    # resuming a finished demo redoes nothing and gives the same table
    again = run_demo(str(out), task="seg", budget_minutes=1.0)
    assert json.loads((out / "report.json").read_text())["seg"]["models"] == models
    assert again["seconds"] < res["seconds"]


@pytest.mark.slow
def test_demo_pose_is_top_down(tmp_path):
    """`--task pose` runs the top-down task (the bottom-up one is `--task pose-bottomup`), with the same report
    shape: report.json's pose models carry metric_name "AP" and a test AP."""
    out = tmp_path / "demo-out"
    run_demo(str(out), task="pose", budget_minutes=1.0, seed=3)
    report = (out / "report.md").read_text()
    assert "## Top-down pose (ScaleNet-P)" in report and "Bottom-up" not in report
    assert "steps, seed 3 (" in report and json.loads((out / "report.json").read_text())["pose"]["seed"] == 3
    run_cfg = (out / "pose" / "supernet" / "config.yaml").read_text()
    search_cfg = (out / "pose" / "search" / "config.yaml").read_text()
    assert "\nseed: 3\n" in run_cfg and "\n  seed: 3\n" in search_cfg
    models = json.loads((out / "report.json").read_text())["pose"]["models"]
    assert "hrnet" in [m["name"] for m in models]
    for m in models:
        assert m["metric_name"] == "AP" and 0.0 <= m["metric_test"] <= 100.0
        assert json.loads(open(os.path.join(m["model_dir"], "model.json")).read())["head"]["kind"] == "pose-topdown"
    main_pick = next(m for m in models if m.get("onnx"))
    assert main_pick["onnx"]["parity_max_abs"] <= 1e-4 and main_pick["overlays"]


def test_demo_refuses_another_seed_in_the_same_folder(tmp_path, capsys):
    """The seed is part of a demo folder's state: resuming it with another seed would mix two runs."""
    out = tmp_path / "demo-out"
    out.mkdir()
    (out / "demo_state.json").write_text(json.dumps({"pose": {"seed": 0, "budget_s": 60}}))
    assert main(["demo", "--task", "pose", "-o", str(out), "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seed 1" in err[0] and "seed 0" in err[0] and str(out) in err[0]


@pytest.mark.parametrize("task", ["seg", "pose", "pose-bottomup"])
def test_phase_shares_split_the_whole_budget(task):
    """Every phase gets a positive share and together they are the budget, so the demo neither leaves time
    unplanned nor plans more than it has."""
    from scalenas.demo.settings import phase_budgets

    b = phase_budgets(720.0, task)
    assert set(b) == {"data", "train", "search", "deploy"} and min(b.values()) > 0
    assert sum(b.values()) == pytest.approx(720.0)
