"""``scalenas shrink`` on a tiny segmentation dataset writes an ordinary model dir: eval, export (ONNX
parity) and predict work on it through the CLI, and its costs are the shrunk arch's."""
import json
import os

import cv2
import pytest
import torch
import yaml

from scalenas.deploy.model_dir import load_model
from scalenas.deploy.runtime import natural_image
from scalenas.errors import ScaleNASError
from scalenas.space.hrnas import HRNASArch
from scalenas.space.hrnas_profile import hrnas_profile
from scalenas.train.checkpoint import load_supernet

TINY = {"family": "hrnas", "stem_channels": [8, 8], "expand_ratio": 2,
        "stages": [[[1], [8]], [[1, 1], [6, 12]], [[1, 1, 1], [6, 12, 24]], [[1, 1, 1, 1], [6, 12, 24, 48]]]}


def test_shrink_cli_to_model_dir_eval_export_predict(seg_setup, tmp_path, h, capsys):
    _, task_cfg, _ = seg_setup
    cfg = {"run_dir": str(tmp_path / "run"), "seed": 0, "space": TINY, "task": task_cfg,
           "train": {"steps": 8, "batch_size": 2, "workers": 0, "optimizer": {"lr": 0.05}, "ckpt_every": 0,
                     "progress": False, "tensorboard": False},
           "shrink": {"rho": 2.0, "warmup_steps": 2, "threshold": 0.1, "step_gflops": 1e-5, "target_gflops": 0.007,
                      "check_every": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "model"
    assert h.cli("shrink", tmp_path / "c.yaml", "-o", out, "--eval-split", "val", *h.CALIB,
                 "--latency-iters", "1") == 0
    printed = capsys.readouterr().out
    assert "shrink at step" in printed and "mIoU on val" in printed
    summary = json.loads((tmp_path / "run" / "shrink_summary.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    card = json.loads((out / "card.json").read_text())
    arch = HRNASArch.from_dict(meta["arch"])
    assert meta["space"]["family"] == "hrnas" and arch.hash == meta["arch_hash"] == summary["arch_hash"]
    assert summary["events"] and summary["macs"] < summary["events"][0]["macs_before"]
    lm = load_model(str(out))
    assert lm.net.arch == arch and card["family"] == "hrnas"
    assert card["flops"]["macs"] == hrnas_profile(lm.space, arch, lm.head, (64, 64)).macs == summary["macs"]
    assert card["params"] == sum(p.numel() for p in lm.net.parameters())
    assert "shrunk during training" in (out / "MODEL_CARD.md").read_text()

    assert h.cli("eval", out, "--split", "val", "--json", tmp_path / "e.json") == 0
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["mIoU"] == meta["metric"]["value"]
    assert h.cli("export", out, "-o", tmp_path / "m.onnx") == 0
    rec = json.loads((tmp_path / "m.onnx.json").read_text())
    assert rec["parity"]["passed"]
    assert all(c["max_abs"] <= 1e-4 * max(1.0, c["max_ref"]) for c in rec["parity"]["cases"])
    img = tmp_path / "scene.png"
    cv2.imwrite(str(img), natural_image(64, 96, seed=1))
    assert h.cli("predict", out, img, "-o", tmp_path / "pred", "--onnx", tmp_path / "m.onnx") == 0
    assert json.loads((tmp_path / "pred" / "scene.json").read_text())["prediction"]["size"] == [64, 96]
    assert os.path.isfile(tmp_path / "pred" / "scene_overlay.png")
    with torch.no_grad():
        assert lm.net(torch.zeros(1, 3, 64, 64)).shape[-2:] == (16, 16)

    # the run's checkpoint makes the same model dir through 'scalenas extract' (no ARCH.json: it holds its arch)
    ckpt = meta["provenance"]["supernet_checkpoint"]
    assert h.cli("extract", ckpt, "-o", tmp_path / "again", "--eval-split", "val", *h.CALIB,
                 "--latency-iters", "0") == 0
    again = json.loads((tmp_path / "again" / "model.json").read_text())
    assert again["arch_hash"] == meta["arch_hash"] and again["metric"]["value"] == meta["metric"]["value"]
    assert again["provenance"]["arch_origin"] == meta["provenance"]["arch_origin"]
    assert load_model(str(tmp_path / "again")).net.state_dict().keys() == lm.net.state_dict().keys()
    assert h.cli("extract", ckpt, "-o", tmp_path / "tuned", "--finetune-epochs", "1", "--no-calibrate",
                 "--latency-iters", "0") == 0
    tuned = json.loads((tmp_path / "tuned" / "model.json").read_text())
    assert tuned["finetune"]["epochs"] == 1 and tuned["finetune"]["steps"] >= 1
    assert tuned["arch_hash"] == meta["arch_hash"]
    capsys.readouterr()
    # an arch beside it, or a command that wants a supernet, is refused in one line naming the file
    arch_file = tmp_path / "a.json"
    arch_file.write_text(json.dumps(meta["arch"]))
    assert h.cli("extract", ckpt, str(arch_file), "-o", tmp_path / "no") == 2
    err = capsys.readouterr().err.strip()
    assert ckpt in err and "give no ARCH.json" in err and "\n" not in err
    with pytest.raises(ScaleNASError, match="a shrink run's checkpoint .*'scalenas extract "):
        load_supernet(ckpt)


def test_shrink_cli_error_is_one_line(tmp_path, h, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"space": TINY, "shrink": {"target_gflops": 1, "rhoo": 1}}))
    assert h.cli("shrink", tmp_path / "c.yaml") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scalenas shrink: error: ") and "shrink.rhoo" in err and "\n" not in err
