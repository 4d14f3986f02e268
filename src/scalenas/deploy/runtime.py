"""What a deployed model needs at run time besides its weights: the task (for decoding and overlays,
buildable without the dataset), input normalisation, an ONNX Runtime session that quacks like the
torch module, latency measurement, and a deterministic natural-looking test image."""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from scalenas.config import apply_overrides
from scalenas.errors import ScaleNASError
from scalenas.tasks.base import TASKS, build_task
from scalenas.utils.io import dumps_json

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# Tasks whose images are BGR uint8 files normalised HRNet-style (data/seg_transforms.py, data/pose_transforms.py).
_IMAGENET_TASKS = ("segmentation", "pose-bottomup", "pose-topdown")


# ------------------------------------------------------------------------------------ normalisation
def normalisation_of(task_name: str) -> dict:
    if task_name in _IMAGENET_TASKS:
        return {"kind": "imagenet", "input": "BGR uint8 (OpenCV) -> RGB float / 255", "mean": IMAGENET_MEAN,
                "std": IMAGENET_STD, "layout": "NCHW"}
    if task_name == "synthetic-regression":
        return {"kind": "standardise", "input": "BGR uint8 -> RGB float, zero mean and unit std over the image",
                "layout": "NCHW"}
    return {"kind": "task", "input": "as the task's own predict() prepares it", "layout": "NCHW"}


def normalise(norm: dict, image_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32, as the model was trained."""
    rgb = np.asarray(image_bgr)[..., ::-1].astype(np.float32)
    kind = norm.get("kind")
    if kind == "imagenet":
        x = (rgb / 255.0 - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    elif kind == "standardise":
        x = (rgb - rgb.mean()) / (rgb.std() + 1e-6)
    else:
        raise ScaleNASError(f"normalisation kind {kind!r}: no generic implementation; use the task's predict()")
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 BGR image with natural-image statistics: 1/f-like multi-octave
    colour noise, a vertical illumination gradient and a few sharp-edged shapes. Random uniform noise
    exercises a network very differently from photographs (flat spectra, no edges), so parity checks
    also run on this when no real image is available."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cell in (64, 32, 16, 8, 4):
        gh, gw = max(2, h // cell), max(2, w // cell)
        coarse = rng.standard_normal((gh, gw, 3)).astype(np.float32)
        img += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) * (cell / 32.0)
    img += np.linspace(1.5, -1.5, h, dtype=np.float32)[:, None, None]
    img = (img - img.mean()) / (img.std() + 1e-6) * 40 + 120
    for _ in range(6):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cx, cy = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        if rng.random() < 0.5:
            axes = (int(rng.uniform(4, w / 4 + 5)), int(rng.uniform(4, h / 4 + 5)))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            dx, dy = int(rng.uniform(4, w / 3 + 5)), int(rng.uniform(4, h / 3 + 5))
            cv2.rectangle(img, (cx, cy), (cx + dx, cy + dy), colour, -1)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- task
def portable_task(task, task_cfg: dict) -> tuple[dict, dict[str, bytes]]:
    """A task config that rebuilds ``task`` for predict/visualise without its dataset, plus files to
    ship in the model dir. Segmentation reads class names/palette from ``dataset_info.json`` under its
    root, so that file is written to the model dir (the root becomes the model dir at load time);
    pose (bottom-up and top-down) gets its keypoint definition inline and no split files (nor detection
    boxes: prediction takes its boxes from the caller)."""
    cfg = dict(task_cfg)
    files: dict[str, bytes] = {}
    name = cfg.get("name")
    if name == "segmentation":
        if cfg.get("format", "folder") == "folder":
            info = task.info.model_dump(mode="json")
            files["dataset_info.json"] = (dumps_json(info, indent=1) + "\n").encode()
            for k in ("img_dir", "ann_dir", "img_suffix", "ann_suffix", "ignore_index"):
                cfg.pop(k, None)  # already merged into the info written above
            cfg["info_file"] = "dataset_info.json"
        cfg["root"] = "."
    elif name in ("pose-bottomup", "pose-topdown"):
        cfg["keypoints"] = task.info.to_dict()
        cfg.pop("data_root", None)  # the old name of root (the portable config is written fresh)
        cfg["root"] = ""
        for k in ("train", "val", "test"):
            cfg[k] = None
        if name == "pose-topdown":
            cfg["inference"] = {**(cfg.get("inference") or {}), "boxes": "gt"}
    return cfg, files


def build_model_task(meta: dict, model_dir: str, need_data: bool, overrides: list[str] | None = None):
    """The task of a model dir: from the training config (``need_data``: evaluation, calibration) with
    ``overrides`` (``KEY=VALUE`` on the task section, or a bare dataset root), or from the portable
    config (prediction and overlays only)."""
    if need_data:
        return build_task(apply_task_overrides(dict(meta["task"]), overrides or []))
    cfg = dict(meta.get("predict_task") or meta["task"])
    if cfg.get("name") == "segmentation" and cfg.get("root") == ".":
        cfg["root"] = os.path.abspath(model_dir)
    return build_task(cfg)


def apply_task_overrides(cfg: dict, overrides: list[str]) -> dict:
    """``KEY=VALUE`` items set task keys (``root=/data/cityscapes``, ``val.images=...``); a bare path
    sets the task's ``root`` (or ``data_root``, its old name, where the run's config still says that)."""
    kv = [o for o in overrides if "=" in o]
    for o in overrides:
        if "=" in o:
            continue
        fields = getattr(TASKS.get(cfg.get("name", "")).Config, "model_fields", {})
        if "root" not in fields:
            raise ScaleNASError(f"--data {o}: task {cfg.get('name')!r} reads no dataset folder; "
                                f"give KEY=VALUE task overrides instead")
        cfg["data_root" if "data_root" in cfg else "root"] = o
    return apply_overrides(cfg, kv)


# ------------------------------------------------------------------------------------- ONNX Runtime
class OnnxModule(nn.Module):
    """An ONNX Runtime session as a module: ``forward(x)`` takes a normalised (B, 3, H, W) tensor and
    returns torch tensors shaped like the ScaleNet's outputs, so a task's ``evaluate`` and ``predict``
    (and pose decoding, which stays in Python) run unchanged on the exported graph."""

    def __init__(self, path: str, threads: int | None = None, device: str = "cpu"):
        super().__init__()
        import onnxruntime as ort

        if not os.path.isfile(path):
            raise ScaleNASError(f"{path}: ONNX file not found (create it with 'scalenas export MODEL_DIR "
                                f"--format onnx')")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(path, so, providers=providers)
        except Exception as e:
            raise ScaleNASError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {str(e)[:200]})") from None
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run_numpy(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})

    def forward(self, x):
        arr = x.detach().float().cpu().contiguous().numpy() if torch.is_tensor(x) else np.asarray(x)
        outs = [torch.from_numpy(o) for o in self.run_numpy(arr)]
        return outs[0] if len(outs) == 1 else tuple(outs)


# ------------------------------------------------------------------------------------------ latency
def device_string(device: str | torch.device = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {model} ({os.cpu_count()} logical cores)"


def time_call(fn: Callable[[], Any], iters: int = 10, warmup: int = 2, sync: Callable[[], None] | None = None) -> dict:
    """Median / min wall time of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(ts), 3), "min_ms": round(min(ts), 3), "iters": len(ts)}


@torch.no_grad()
def measure_latency(net: nn.Module, input_hw, batch: int = 1, iters: int = 10, warmup: int = 2,
                    channels_last: bool = True, device: str | torch.device = "cpu") -> dict:
    """Eager fp32 latency of ``net`` on a random batch, with where and how it ran."""
    device = torch.device(device)
    net = net.to(device).eval()
    x = torch.randn(batch, 3, int(input_hw[0]), int(input_hw[1]), device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    try:
        r = time_call(lambda: net(x), iters, warmup, sync)
    finally:
        if channels_last:
            net.to(memory_format=torch.contiguous_format)
    return {"device": device_string(device), "threads": torch.get_num_threads(), "backend": "torch eager fp32"
            + (", channels_last" if channels_last else ""), "torch": torch.__version__,
            "input_hw": [int(input_hw[0]), int(input_hw[1])], "batch": batch, **r}
