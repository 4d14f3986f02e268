"""extract -> export -> ONNX Runtime equals the supernet path (same arch, same calibration), for a
seg head and a bottom-up pose head, through the CLI; predict from eager and from ONNX."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from scalenas.deploy.model_dir import load_model
from scalenas.deploy.runtime import OnnxModule, natural_image
from scalenas.search.calibrate import Calibrator
from scalenas.train.checkpoint import load_supernet
from scalenas.tasks.base import build_task


def _supernet_path(ckpt, arch, task_cfg, n=8, bs=4):
    """The search's path: supernet, arch active, BN recalibrated with the Calibrator, eval mode."""
    net, _ = load_supernet(ckpt)
    net.set_active(arch)
    Calibrator(build_task(task_cfg), n, bs).calibrate(net)
    return net.eval()


def _refuse_non_json(token):
    raise ValueError(f"{token} is not JSON")


def _max_diff(a, b):
    a = a if isinstance(a, (tuple, list)) else [a]
    b = b if isinstance(b, (tuple, list)) else [b]
    assert len(a) == len(b)
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def test_seg_head_extract_export_matches_supernet(synth_ckpt, tmp_path, h, capsys):
    arch = h.sample_arch(3)
    (tmp_path / "arch.json").write_text(arch.to_json())
    out = tmp_path / "m"
    assert h.cli("extract", synth_ckpt, tmp_path / "arch.json", "-o", out, *h.CALIB, "--latency-iters", "2") == 0
    assert sorted(os.listdir(out)) == ["MODEL_CARD.md", "card.json", "model.json", "model.safetensors"]
    meta = json.loads((out / "model.json").read_text())
    card = json.loads((out / "card.json").read_text())
    assert meta["format"] == "scalenas.model/1" and meta["arch_hash"] == arch.hash
    assert meta["calibration"] | {"source": None} == {"enabled": True, "num_images": 8, "batch_size": 4,
                                                      "seed": 937162211, "source": None, "after_finetune": False}
    assert card["flops"]["gflops_2p30"] > 0 and "2^30" in card["flops"]["convention"]
    assert card["latency"]["device"].startswith("cpu") and card["latency"]["median_ms"] > 0
    assert len(card["provenance"]["supernet_sha256"]) == 64
    assert "MACs/2^30" in (out / "MODEL_CARD.md").read_text()

    capsys.readouterr()
    assert h.cli("export", out, "--format", "onnx") == 0
    printed = capsys.readouterr().out
    assert "parity onnxruntime" in printed and "OK" in printed
    rec = json.loads((out / "model.onnx.json").read_text())
    assert rec["parity"]["passed"] and rec["parity"]["max_abs"] <= 1e-4
    assert any(c["label"].startswith("real val") for c in rec["parity"]["cases"])
    shapes = [tuple(c["shape"]) for c in rec["parity"]["cases"]]
    assert len({s[0] for s in shapes}) >= 3 and len({s[2:] for s in shapes}) >= 3  # batches and sizes vary

    ref = _supernet_path(synth_ckpt, arch, h.SYNTH_TASK)
    ort = OnnxModule(str(out / "model.onnx"))
    for shape in [(1, 3, 64, 64), (3, 3, 96, 128)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert _max_diff(ort(x), ref(x)) <= 1e-4


def test_pose_head_extract_export_predict(pose_setup, tmp_path, h, capsys):
    ckpt, task_cfg, root = pose_setup
    arch = h.sample_arch(5, pose=True)
    (tmp_path / "arch.json").write_text(arch.to_json())
    out = tmp_path / "pose_model"
    assert h.cli("extract", ckpt, tmp_path / "arch.json", "-o", out, *h.CALIB, "--latency-iters", "1") == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["calibration"]["num_images"] == 4  # the tiny train split holds 4 images
    assert [o["name"] for o in meta["outputs"]] == ["heatmaps_tags", "heatmaps_half"]
    assert meta["predict_task"]["train"] is None and isinstance(meta["predict_task"]["keypoints"], dict)
    # this arch computes 31,408 params' worth that never reach branch 0; the model neither holds nor counts them
    card = json.loads((out / "card.json").read_text())
    assert card["params"] == sum(p.numel() for p in load_model(str(out)).net.parameters())
    assert card["flops"]["published_convention"]["params"] - card["params"] == 31_408
    assert "published convention (dead compute counted)" in (out / "MODEL_CARD.md").read_text()

    assert h.cli("export", out) == 0
    ref = _supernet_path(ckpt, arch, task_cfg, 8, 4)
    ort = OnnxModule(str(out / "model.onnx"))
    assert ort.output_names == ["heatmaps_tags", "heatmaps_half"]
    for shape in [(1, 3, 64, 64), (2, 3, 96, 64)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            y, r = ort(x), ref(x)
        assert [tuple(t.shape) for t in y] == [tuple(t.shape) for t in r]
        assert _max_diff(y, r) <= 1e-4

    for extra in ([], ["--onnx"]):  # the task's OKS AP through eager PyTorch and through ONNX Runtime
        assert h.cli("eval", out, "--split", "val", "--json", tmp_path / "ap.json", *extra) == 0
        doc = json.loads((tmp_path / "ap.json").read_text(), parse_constant=_refuse_non_json)
        assert doc["metric"] == "AP"

    img = os.path.join(root, "images", "val", sorted(os.listdir(os.path.join(root, "images", "val")))[0])
    pred = tmp_path / "pred"
    assert h.cli("predict", out, img, "-o", pred, "--onnx", out / "model.onnx") == 0
    stem = os.path.splitext(os.path.basename(img))[0]
    doc = json.loads((pred / f"{stem}.json").read_text())
    assert doc["backend"].startswith("onnxruntime") and isinstance(doc["prediction"]["people"], list)
    assert len(doc["prediction"]["keypoint_names"]) == 17
    assert cv2.imread(str(pred / f"{stem}_overlay.png")).shape == (64, 64, 3)


def test_predict_synthetic_eager_and_onnx(synth_model_dir, tmp_path, h):
    img = tmp_path / "scene.png"
    cv2.imwrite(str(img), natural_image(100, 72, seed=4))  # not a multiple of 32: predict pads
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        extra = []
        if backend == "onnx":
            assert h.cli("export", synth_model_dir, "-o", tmp_path / "m.onnx") == 0
            extra = ["--onnx", tmp_path / "m.onnx"]
        assert h.cli("predict", synth_model_dir, img, img, "-o", out, *extra) == 0
        assert sorted(os.listdir(out)) == ["scene.json", "scene_1.json", "scene_1_map.npy", "scene_1_overlay.png",
                                           "scene_map.npy", "scene_overlay.png"]
        doc = json.loads((out / "scene.json").read_text())
        assert len(doc["prediction"]["stats"]) == 4 and doc["prediction"]["size"] == [100, 72]
        assert np.load(out / "scene_map.npy").shape == (4, 25, 18)
        assert cv2.imread(str(out / "scene_overlay.png")).shape == (100, 72, 3)
    a, b = np.load(tmp_path / "torch" / "scene_map.npy"), np.load(tmp_path / "onnx" / "scene_map.npy")
    assert float(np.abs(a - b).max()) <= 1e-4


def test_predict_segmentation(seg_setup, tmp_path, h):
    ckpt, _, root = seg_setup
    (tmp_path / "arch.json").write_text(h.sample_arch(7).to_json())
    out = tmp_path / "seg_model"
    assert h.cli("extract", ckpt, tmp_path / "arch.json", "-o", out, *h.CALIB, "--latency-iters", "0",
                 "--eval-split", "val") == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["normalisation"]["kind"] == "imagenet" and "mIoU" == meta["metric"]["name"]
    assert (out / "dataset_info.json").exists()  # predict needs no dataset
    img = os.path.join(root, "images", "val", "00000.jpg")
    pred = tmp_path / "pred"
    assert h.cli("predict", out, img, "-o", pred) == 0
    doc = json.loads((pred / "00000.json").read_text())
    assert doc["prediction"]["mask"]["file"] == "00000_mask.png"
    mask = cv2.imread(str(pred / "00000_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 96) and sum(doc["prediction"]["class_pixels"].values()) == 64 * 96
    assert cv2.imread(str(pred / "00000_overlay.png")) is not None


@pytest.mark.parametrize("fmt", ["torchscript"])
def test_torchscript_export(synth_model_dir, tmp_path, h, fmt, capsys):
    out = tmp_path / "m.ts"
    assert h.cli("export", synth_model_dir, "--format", fmt, "-o", out) == 0
    assert "parity torchscript" in capsys.readouterr().out
    rec = json.loads(out.with_name("m.ts.json").read_text())
    assert rec["parity"]["passed"] and rec["exporter"] == "torch.jit.trace"
