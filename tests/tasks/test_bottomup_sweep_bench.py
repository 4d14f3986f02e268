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
    assert cfg["task"]["loss"]["push_factor"] == s["tag_weight"] and cfg["task"]["input_size"] == bs.input_side(s)
    assert cfg["train"]["optimizer"]["lr"] == s["lr"] and cfg["train"]["steps"] == 10
    assert cfg["train"]["schedule"]["warmup_steps"] == s["warmup"] and cfg["train"]["batch_size"] == s["batch"]
    if s["init"]:  # the starting weights: a checkpoint that one_run trains first (topdown_init)
        assert s["init"] == "topdown" and "model" not in cfg
        cfg = bs.run_config(s, "/data", "/run", steps=10, init="/ck.pt")
        assert cfg["model"] == {"pretrained": "/ck.pt"}
    if name != "base" and not name.startswith("images_"):  # those change the dataset, not the config
        assert cfg != base
    assert (cfg["sampler"]["kind"] == "fixed") == (name == "hrnet_alone")


def test_topdown_init_is_the_task_bench_head_start_with_the_sweeps_steps(tmp_path, monkeypatch):
    import task_supernet as ts

    calls = []

    def fake_bench(script, args):  # leaves a checkpoint where the real run would and the record of a run
        calls.append(args)
        ckpt = tmp_path / "topdown_init" / "run" / "checkpoints" / "step_00003000.pt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        return {"steps": 3000, "after": {"hrnet": 61.0}}

    monkeypatch.setattr(ts, "bench_json", fake_bench)
    init = bs.topdown_init(str(tmp_path))
    assert calls == [["--task", "pose-topdown", "--width", str(bs.SPACE["width"]), "--seed", "0", "--steps", "3000",
                      "--out", str(tmp_path / "topdown_init")]]
    assert init["checkpoint"].endswith("step_00003000.pt") and init["after"] == {"hrnet": 61.0}
    assert bs.topdown_init(str(tmp_path)) == init and len(calls) == 1  # trained once, then kept


def test_input_side_is_the_image_size_unless_set():
    assert bs.input_side(bs.BASE) == bs.BASE["size"] == 128
    assert bs.input_side({**bs.BASE, **bs.VARIANTS["input_256"]}) == 256
    assert bs.input_side({**bs.BASE, **bs.VARIANTS["size_256"]}) == 256


def test_attribution_report_rows():
    a = {"AP": 0.0, "AP_true_tags": 0.5, "AP_true_heatmaps": 12.0, "AP_oracle": 57.0}
    results = [{"name": "base", "attribution": {"train": a, "val": {**a, "AP_oracle": 51.0}}},
               {"name": "bg_0.1"}]  # an old run without attribution is left out of the table
    headers, rows = bs.attribution_report(results)
    assert headers[2:] == ["AP", "AP with true tags", "AP with true heatmaps", "perfect network"]
    assert rows == [["base", "train", 0.0, 0.5, 12.0, 57.0], ["base", "val", 0.0, 0.5, 12.0, 51.0]]


def test_checkpoints_every_and_trajectory_rows():
    assert bs.run_config(dict(bs.BASE), "/d", "/r", steps=10)["train"]["ckpt_every"] == 0
    cfg = bs.run_config(dict(bs.BASE), "/d", "/r", steps=10, every=5)
    assert cfg["train"]["ckpt_every"] == 5 and cfg["train"]["keep_last"] == 0  # every checkpoint is kept
    a = lambda v: {"AP": v, "AP_true_tags": v + 1, "AP_true_heatmaps": v + 10, "AP_oracle": 50.0}  # noqa: E731
    traj = {"1000": {"train": a(1.0), "val": a(0.5)}, "200": {"train": a(0.2), "val": a(0.1)}}
    headers, rows = bs.trajectory_report([{"name": "base", "trajectory": traj}, {"name": "bg_0.1"}])
    assert headers[1:] == ["step", "train AP", "val AP", "val AP with true tags", "val AP with true heatmaps"]
    assert rows == [["base", 200, 0.2, 0.1, 1.1, 10.1], ["base", 1000, 1.0, 0.5, 1.5, 10.5]]  # by step, not text


def test_docstring_examples_name_real_variants():
    for names in re.findall(r"--only ([\w.,-]+)", bs.__doc__):
        assert set(names.split(",")) <= set(bs.VARIANTS), names


def test_peaks_of_the_perfect_network_fall_on_their_own_joints(tmp_path):
    """The peaks table on a perfect network (the ground truth's outputs): every candidate on a joint of its
    own type, and in every height bin nearly every labelled joint found; a blank map finds nothing."""
    import torch
    from scalenas.data.synth_pose import generate
    from scalenas.tasks.base import build_task
    from scalenas.tasks.pose_targets import OracleForward

    s = dict(bs.BASE)
    generate(str(tmp_path / "d"), train=0, val=6, test=0, size=(128, 128), seed=0)
    task = build_task(bs.run_config(s, str(tmp_path / "d"), str(tmp_path / "r"), steps=1)["task"])
    dc = task.decode_config()
    idx = task.index("val")

    def oracle(iid, img):
        return OracleForward(idx.people(iid), img.shape[:2], task.info.flip_index, dc.input_size, dc.scales,
                             s["sigma"], dc.stride)

    p = bs.peaks(task, oracle, "val", images=6)
    total = p["own"] + p["mirror"] + p["other_joint"] + p["neither"]
    assert total > 50 and p["own"] >= 0.97 * total and p["neither"] == 0
    rec = p["recall_by_height"]
    assert list(rec) == ["<20", "20-40", ">=40"] and sum(v["joints"] for v in rec.values()) > 50
    assert all(v["found"] >= 0.9 * v["joints"] for v in rec.values() if v["joints"])

    def blank(iid, img):
        return lambda x: tuple(torch.zeros(1, 2 * task.info.num_joints, x.shape[2] // d, x.shape[3] // d)
                               for d in (4, 2))

    q = bs.peaks(task, blank, "val", images=6)
    assert q["own"] + q["mirror"] + q["other_joint"] + q["neither"] == 0
    assert all(v["found"] == 0 for v in q["recall_by_height"].values())
    headers, rows = bs.peaks_report([{"name": "oracle", "attribution": {"val": {"peaks": p}}}, {"name": "old"}])
    assert headers[-3:] == ["recall, people <20 px", "recall, people 20-40 px", "recall, people >=40 px"]
    assert len(rows) == 1 and rows[0][1] == total and abs(sum(rows[0][2:6]) - 1) < 1e-9


def test_readme_sweep_commands_name_real_variants():
    import os

    readme = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "README.md")
    with open(readme, encoding="utf-8") as f:
        commands = re.findall(r"bottomup_sweep\.py([^`]*)`", f.read())
    lists = [names for c in commands for names in re.findall(r"--only\s+([\w.,-]+)", c)]
    assert len(lists) >= 3  # the session-18 and -19 rows and the 8,000-step trajectory
    for names in lists:
        assert set(names.split(",")) <= set(bs.VARIANTS), names
