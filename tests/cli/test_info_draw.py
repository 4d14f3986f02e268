"""``scalenas info`` and ``scalenas draw``."""
import json
import random

import pytest

from scalenas.cli import main
from scalenas.nets import get_preset, list_presets
from scalenas.space import SearchSpace, profile
from scalenas.space.legacy import save_official_mask


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_info_lists_presets(capsys):
    rc, out, _ = _run(capsys, "info")
    assert rc == 0
    for name in list_presets():
        assert name in out
    assert "DIFF" not in out and "MACs/1e9" in out and "MACs/2^30" in out
    rc, out, _ = _run(capsys, "info", "--json")
    rows = json.loads(out)["presets"]
    assert {r["name"] for r in rows} == set(list_presets())
    assert all(r["match"] is not False for r in rows)
    assert sum(r["match"] is True for r in rows) == 11
    # effective figures beside the published ones: lower only where a pose net has dead compute
    lower = {r["name"] for r in rows if r["effective_params"] < r["params"]}
    assert lower == {"scalenet-p1", "scalenet-p2"}
    assert all(r["effective_params"] == r["params"] for r in rows if r["name"] not in lower)


def test_info_effective_figures(capsys):
    rc, out, _ = _run(capsys, "info", "scalenet-p1", "--json")
    d = json.loads(out)
    p = get_preset("scalenet-p1")
    prof = profile(p.space, p.arch, p.head, p.input_hw)
    assert (d["params"], d["macs"]) == (prof.params, prof.macs)  # published convention unchanged
    assert (d["effective_params"], d["effective_macs"]) == (prof.effective_params, prof.effective_macs)
    assert d["params"] - d["effective_params"] == 90_496
    assert d["effective_gflops_2p30"] == pytest.approx(prof.effective_macs / 2**30, abs=1e-4)
    rc, out, _ = _run(capsys, "info", "scalenet-p1")
    assert "effective" in out and "28.39M params (28,393,137)" in out and "90,496 params" in out
    rc, out, _ = _run(capsys, "info", "scalenet-s1", "--json")
    d = json.loads(out)
    assert (d["effective_params"], d["effective_macs"]) == (d["params"], d["macs"])


def test_info_preset_text(capsys):
    rc, out, _ = _run(capsys, "info", "scalenet-s1")
    assert rc == 0
    assert "25.35M" in out and "265.54" in out and "285.12" in out
    assert "MACs/2^30" in out and "MACs/1e9" in out
    assert "68" in out and "95 active / 163 available" in out
    assert "M7" in out and "1/32 (256ch)" in out  # the depth table


def test_info_preset_json(capsys):
    rc, out, _ = _run(capsys, "info", "scalenet-p4", "--json")
    d = json.loads(out)
    p = get_preset("scalenet-p4")
    prof = profile(p.space, p.arch, p.head, p.input_hw)
    assert d["params"] == prof.params and d["macs"] == prof.macs
    assert d["gflops_2p30"] == pytest.approx(32.59, abs=0.005)
    assert d["gflops_1e9"] == pytest.approx(prof.macs / 1e9, abs=1e-4)
    assert (d["name"], d["arch_hash"], d["head"], d["input"]) == ("scalenet-p4", p.arch.hash, "pose-topdown", "384x288")
    assert d["edges"] == 139 and d["edges_available"] == 220 and d["blocks"] == 92
    assert d["published"]["params_M"] == 64.3


def test_info_overrides(capsys):
    rc, out, _ = _run(capsys, "info", "scalenet-s1", "--head", "pose-bottomup", "--input", "512x512", "--json")
    d = json.loads(out)
    assert d["head"] == "pose-bottomup" and d["input_hw"] == [512, 512]
    assert "published" not in d and any("pose rule" in n for n in d["notes"])
    space = get_preset("scalenet-s1").space
    arch = space.apply_pose_rule(get_preset("scalenet-s1").arch)
    assert d["macs"] == profile(space, arch, "pose-bottomup", (512, 512)).macs


def test_info_arch_files(capsys, tmp_path):
    arch = SearchSpace().sample(random.Random(0), 0.5)
    plain = tmp_path / "arch.json"
    plain.write_text(arch.to_json())
    rc, out, _ = _run(capsys, "info", str(plain), "--json")
    d = json.loads(out)  # a bare arch: W32 paper space, seg head, 1024x2048
    assert d["params"] == profile(SearchSpace(width=32), arch, "seg", (1024, 2048)).params
    assert d["arch_hash"] == arch.hash and d["input"] == "1024x2048"
    rc, out, _ = _run(capsys, "info", str(plain), "--width", "48", "--json")
    assert json.loads(out)["params"] == profile(SearchSpace(width=48), arch, "seg", (1024, 2048)).params
    # a model.json / preset-format file carries its own space, head and input
    model = tmp_path / "model.json"
    model.write_text(json.dumps({"name": "mine", "space": {"width": 16}, "head": {"kind": "pose-topdown"},
                                 "input_hw": [256, 192], "arch": SearchSpace().apply_pose_rule(arch).to_dict()}))
    rc, out, _ = _run(capsys, "info", str(model), "--json")
    d = json.loads(out)
    assert (d["name"], d["space"]["width"], d["head"], d["input"]) == ("mine", 16, "pose-topdown", "256x192")
    # an official .npy mask
    npy = tmp_path / "w32_S2.npy"
    save_official_mask(get_preset("scalenet-s2").arch, npy)
    rc, out, _ = _run(capsys, "info", str(npy), "--json")
    d = json.loads(out)
    assert d["arch_hash"] == get_preset("scalenet-s2").arch.hash
    assert round(d["gflops_2p30"], 1) == 309.5


def test_info_errors(capsys, tmp_path):
    rc, _, err = _run(capsys, "info", "no-such-model")
    assert rc == 2 and "neither a preset name nor an existing file" in err
    rc, _, err = _run(capsys, "info", "scalenet-s1", "--input", "100x100")
    assert rc == 2 and "multiples of 32" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"modules": [{"depth": [2, 2], "fuse": [["10", "10"], ["01"]]}] * 8}))
    rc, _, err = _run(capsys, "info", str(bad))
    assert rc == 2 and "module M0 branch 1 step 1" in err
    with pytest.raises(SystemExit):
        main(["info", "scalenet-s1", "--input", "big"])


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_draw_preset_and_tiny_space(capsys, tmp_path):
    out = tmp_path / "p1.png"
    rc, text, _ = _run(capsys, "draw", "scalenet-p1", "-o", str(out))
    assert rc == 0 and str(out) in text
    w, h = _png_size(out)
    assert w > 2 * h > 0  # wide: one column per block step
    tiny = SearchSpace(width=8, modules_per_stage=(1, 1, 1), depth_choices=(1, 2))
    model = tmp_path / "tiny.json"
    model.write_text(json.dumps({"space": tiny.to_dict(), "arch": tiny.sample(random.Random(1), 0.7).to_dict()}))
    out2 = tmp_path / "tiny.png"
    rc, _, _ = _run(capsys, "draw", str(model), "-o", str(out2), "--input", "256x256")
    assert rc == 0
    w2, _ = _png_size(out2)
    assert 0 < w2 < w


# ---- the hrnas family (HR-NAS's space) -------------------------------------------------------------

def test_info_and_draw_hrnas(capsys, tmp_path):
    from scalenas.space.hrnas import HRNASSpace
    from scalenas.space.hrnas_profile import hrnas_profile

    rc, out, _ = _run(capsys, "info", "hrnas-seg-cityscapes")
    assert rc == 0 and "MACs/2^30" in out and "MACs/1e9" in out and "8.92M" in out
    rc, out, _ = _run(capsys, "info", "hrnas-keypoint-coco", "--json")
    d = json.loads(out)
    p = get_preset("hrnas-keypoint-coco")
    prof = hrnas_profile(p.space, p.arch, p.head, p.input_hw)
    assert (d["family"], d["params"], d["macs"], d["input_hw"]) == ("hrnas", prof.params, prof.macs, [256, 192])
    assert sum(s["hidden"] for s in d["stages"]) == p.arch.total_hidden()
    rc, out, _ = _run(capsys, "info", "--json")
    assert {r["name"] for r in json.loads(out)["hrnas_presets"]} == {"hrnas-seg-cityscapes", "hrnas-keypoint-coco"}
    arch_file = tmp_path / "a.json"
    arch_file.write_text(HRNASSpace().largest().to_json())  # a bare hrnas arch: default space, seg head
    rc, out, _ = _run(capsys, "info", str(arch_file), "--json", "--input", "256x512")
    assert rc == 0 and json.loads(out)["macs"] == hrnas_profile(HRNASSpace(), HRNASSpace().largest(), "seg",
                                                                (256, 512)).macs
    png = tmp_path / "h.png"
    rc, out, _ = _run(capsys, "draw", "hrnas-keypoint-coco", "-o", str(png))
    assert rc == 0 and str(png) in out and _png_size(png)[0] > 2 * _png_size(png)[1]
    rc = main(["info", "hrnas-seg-cityscapes", "--width", "32"])
    _, err = capsys.readouterr()
    assert rc == 2 and "hrnas family" in err
