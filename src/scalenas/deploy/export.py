"""Export a model dir to ONNX or TorchScript, with a parity check that always runs.

The exported graph maps a normalised image batch (B, 3, H, W) to the head outputs (bottom-up pose:
two outputs), with batch, height and width dynamic (H, W multiples of 32). Decoding (argmax, pose
grouping) stays in Python, outside the graph.

Exporter: ``legacy`` (TorchScript-based, ``dynamo=False`` with ``dynamic_axes``) by default. Both it
and ``dynamo`` (torch.export with ``dynamic_shapes``, H and W declared as 32·k) produce correct dynamic
graphs here (same parity), but the dynamo path took ~11x longer (168 s vs 15 s for HRNet-W32 on our
2-core CPU, 35 s vs 3 s for a tiny net), mostly in symbolic-shape reasoning. ``auto`` uses legacy and
falls back to dynamo if the legacy exporter fails or is gone in a later torch.

Parity: the exported model (ONNX Runtime, or the loaded TorchScript module) against PyTorch eager on
random inputs and on real ones (an image of the task's val/test split when the data is reachable,
else a deterministic natural-looking synthetic image), at two input sizes and batch sizes other
than the export example's, so a graph that baked in a shape fails. Each input's max abs diff must be
<= ``tol`` x max(1, its max |output|): fp32 rounding grows with the outputs' magnitude.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from scalenas.deploy import model_dir as md
from scalenas.deploy.runtime import OnnxModule, build_model_task, natural_image, normalise
from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_json

DEFAULT_TOL = 1e-4
FORMATS = ("onnx", "torchscript")
DEFAULT_FILE = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


# ------------------------------------------------------------------------------------------ shapes
def _fit(hw, cap: int = 256) -> tuple[int, int]:
    """``hw`` scaled to at most ``cap`` on the long side, rounded to multiples of 32 (at least 32)."""
    h, w = int(hw[0]), int(hw[1])
    s = min(1.0, cap / max(h, w))
    return max(32, int(h * s) // 32 * 32), max(32, int(w * s) // 32 * 32)


def check_shapes(input_hw) -> dict[str, tuple[int, int, int]]:
    """(batch, H, W) of the export example and the two random-input checks: all different."""
    h, w = _fit(input_hw)
    return {"example": (2, h + 32, w + 64), "random_a": (1, h, w), "random_b": (3, h + 64, w + 32)}


def output_names(meta: dict) -> list[str]:
    return [o["name"] for o in meta.get("outputs") or [{"name": "output"}]]


# ---------------------------------------------------------------------------------------- exporters
def export_onnx(net: torch.nn.Module, path: str, example: torch.Tensor, out_names: list[str],
                opset: int | None = None, exporter: str = "auto") -> dict:
    if exporter not in ("auto", "legacy", "dynamo"):
        raise ScaleNASError(f"--exporter {exporter!r}: use auto, legacy or dynamo")
    order = ["legacy", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for kind in order:
        t0 = time.perf_counter()
        try:
            if kind == "legacy":
                _onnx_legacy(net, path, example, out_names, opset or 17)
            else:
                _onnx_dynamo(net, path, example, out_names, opset or 18)
        except ScaleNASError:
            raise
        except Exception as e:  # noqa: BLE001 - any exporter failure: try the next one, report all
            errors.append(f"{kind}: {type(e).__name__}: {str(e)[:300]}")
            continue
        return {"exporter": kind, "opset": opset or (17 if kind == "legacy" else 18),
                "export_s": round(time.perf_counter() - t0, 2), "torch": torch.__version__}
    raise ScaleNASError(f"{path}: ONNX export failed ({'; '.join(errors)})")


def _onnx_legacy(net, path, example, out_names, opset):
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    for n in out_names:
        axes[n] = {0: "batch", 2: f"{n}_height", 3: f"{n}_width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DeprecationWarning of the exporter itself, TracerWarnings
        torch.onnx.export(net, (example,), path, dynamo=False, input_names=["image"], output_names=out_names,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


def _onnx_dynamo(net, path, example, out_names, opset):
    from torch.export import Dim

    # H and W are 32·k: declaring them so lets torch.export prove every stride-2 conv and upsample
    # divides exactly, instead of specialising the graph to the example's size.
    b = Dim("batch", min=1, max=4096)
    h = 32 * Dim("h32", min=1, max=1024)
    w = 32 * Dim("w32", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), path, dynamo=True, external_data=False, input_names=["image"],
                          output_names=out_names, dynamic_shapes=({0: b, 2: h, 3: w},), opset_version=opset,
                          verbose=False)


def export_torchscript(net: torch.nn.Module, path: str, example: torch.Tensor) -> dict:
    """Traced, not scripted: the forward runs a precompiled plan of Python tuples, which tracing
    flattens into a straight-line graph; size-dependent ops (interpolate to a branch's size) are
    recorded as shape ops, so the trace stays dynamic (the parity check proves it)."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, (example,), check_trace=False)
        torch.jit.save(traced, path)
    return {"exporter": "torch.jit.trace", "export_s": round(time.perf_counter() - t0, 2), "torch": torch.__version__}


def load_torchscript(path: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.load(path, map_location="cpu").eval()
        except Exception as e:
            raise ScaleNASError(f"{path}: cannot load TorchScript ({type(e).__name__}: {str(e)[:200]})") from None


# ------------------------------------------------------------------------------------------ parity
@dataclass
class ParityCase:
    label: str
    shape: list[int]
    max_abs: float
    max_ref: float


@dataclass
class ParityReport:
    runtime: str
    tol: float
    cases: list[ParityCase] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.cases), default=float("nan"))

    def bound(self, case: ParityCase) -> float:
        # relative above |output| 1: two correct fp32 conv implementations differ with the outputs' size
        # (a HR-NAS net's logits of |22| by 1.08e-4 on an AVX-512 BF16 EPYC, 5e-6 of their magnitude)
        return self.tol * max(1.0, case.max_ref)

    @property
    def rule(self) -> str:
        return f"tol {self.tol:g} x max(1, max |output|)"

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.max_abs <= self.bound(c) for c in self.cases)

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "tol": self.tol, "max_abs": self.max_abs, "passed": self.passed,
                "cases": [asdict(c) for c in self.cases]}

    def lines(self) -> list[str]:
        out = [f"parity {self.runtime} vs torch eager fp32: max abs diff {self.max_abs:.3g} "
               f"({self.rule}) over {len(self.cases)} inputs: {'OK' if self.passed else 'FAILED'}"]
        for c in self.cases:
            out.append(f"  {c.label:<28} {'x'.join(map(str, c.shape)):<16} max abs diff {c.max_abs:.3g}  "
                       f"(max |output| {c.max_ref:.3g})")
        return out


def _as_list(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


@torch.no_grad()
def check_parity(net: torch.nn.Module, exported, inputs: list[tuple[str, torch.Tensor]], runtime: str,
                 tol: float = DEFAULT_TOL) -> ParityReport:
    rep = ParityReport(runtime, tol)
    net = net.eval()
    for label, x in inputs:
        ref = [r.float() for r in _as_list(net(x))]
        got = [torch.as_tensor(g).float() for g in _as_list(exported(x))]
        if len(got) != len(ref) or any(g.shape != r.shape for g, r in zip(got, ref)):
            raise ScaleNASError(f"parity ({label}): exported outputs {[list(g.shape) for g in got]} differ in shape "
                                f"from eager {[list(r.shape) for r in ref]}: the graph is not dynamic")
        diff = max(float((g - r).abs().max()) for g, r in zip(got, ref))
        if not np.isfinite(diff):
            diff = float("inf")
        rep.cases.append(ParityCase(label, list(x.shape), diff, max(float(r.abs().max()) for r in ref)))
    return rep


def _crop32(x: torch.Tensor, cap: int = 256) -> torch.Tensor:
    """Centre crop of a (3, H, W) image to multiples of 32, at most ``cap`` per side; edge-padded
    first when a side is under 32."""
    h, w = x.shape[-2:]
    if h < 32 or w < 32:
        x = torch.nn.functional.pad(x[None], (0, max(0, 32 - w), 0, max(0, 32 - h)), mode="replicate")[0]
        h, w = x.shape[-2:]
    th, tw = min(cap, h // 32 * 32), min(cap, w // 32 * 32)
    y0, x0 = (h - th) // 2, (w - tw) // 2
    return x[:, y0:y0 + th, x0:x0 + tw]


def real_inputs(image: torch.Tensor, label: str) -> list[tuple[str, torch.Tensor]]:
    """Two checks from one real (3, H, W) image: batch 1 at its crop size; batch 2 (image and mirror)
    at a size 32 px different in height."""
    a = _crop32(torch.as_tensor(image).float())
    h, w = a.shape[-2:]
    if h > 32:
        b = a[:, :h - 32]
    else:
        b = torch.cat([a, a.flip(-2)], -2)
    return [(f"{label} b1", a[None].contiguous()),
            (f"{label} b2", torch.stack([b, b.flip(-1)]).contiguous())]


def parity_inputs(meta: dict, model_path: str, data: list[str] | None = None, seed: int = 0,
                  log=print) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    shapes = check_shapes(meta["input_hw"])
    out = [(f"random {k[-1]}", torch.randn(b, 3, h, w, generator=g)) for k, (b, h, w) in shapes.items()
           if k != "example"]
    img, label = _real_image(meta, model_path, data, log)
    if img is None:
        h, w = _fit(meta["input_hw"])
        bgr = natural_image(h + 64, w, seed)  # a size the random checks do not use
        try:
            img = torch.from_numpy(normalise(meta["normalisation"], bgr))
        except ScaleNASError:
            img = torch.from_numpy((bgr[..., ::-1].astype(np.float32) / 255.0 - 0.5) / 0.25).permute(2, 0, 1)
        label = "natural-synthetic"
    return out + real_inputs(img, label)


def _real_image(meta: dict, model_path: str, data, log):
    """The first image of the task's val (else test) split as the model sees it, or (None, None)."""
    try:
        task = build_model_task(meta, model_path, need_data=True, overrides=data)
    except ScaleNASError as e:
        log(f"parity: task data not reachable ({str(e)[:120]}); using a synthetic natural-looking image")
        return None, None
    for split in ("val", "test"):
        try:
            ds = task.build_dataset(split, train=False)
            if len(ds):
                return ds[0]["image"], f"real {split}[0]"
        except (ScaleNASError, OSError, KeyError, IndexError):
            continue
    log("parity: no val/test image found; using a synthetic natural-looking image")
    return None, None


# -------------------------------------------------------------------------------------- orchestrate
def export_model_dir(model_path: str, fmt: str, out: str | None = None, opset: int | None = None,
                     exporter: str = "auto", tol: float = DEFAULT_TOL, data: list[str] | None = None,
                     log=print) -> dict:
    """Export ``model_path`` to ``fmt`` and check parity; the file appears (atomically) only if parity
    passes. Writes ``<file>.json`` beside it with the exporter, opset and parity figures."""
    if fmt not in FORMATS:
        raise ScaleNASError(f"--format {fmt!r}: use onnx or torchscript")
    if fmt == "torchscript" and (opset is not None or exporter != "auto"):
        raise ScaleNASError("--opset and --exporter apply to ONNX only")
    lm = md.load_model(model_path)
    net = lm.net.float().eval()
    out = os.path.abspath(out or os.path.join(model_path, DEFAULT_FILE[fmt]))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    b, h, w = check_shapes(lm.meta["input_hw"])["example"]
    example = torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(1))
    tmp = f"{os.path.dirname(out)}/.{os.path.basename(out)}.{os.getpid()}.tmp"
    try:
        if fmt == "onnx":
            import onnxruntime

            info = export_onnx(net, tmp, example, output_names(lm.meta), opset, exporter)
            runner, runtime = OnnxModule(tmp), f"onnxruntime {onnxruntime.__version__}"
        else:
            info = export_torchscript(net, tmp, example)
            runner, runtime = load_torchscript(tmp), f"torchscript (torch {torch.__version__})"
        log(f"exported with {info['exporter']} in {info['export_s']:.1f} s")
        rep = check_parity(net, runner, parity_inputs(lm.meta, model_path, data, log=log), runtime, tol)
        for line in rep.lines():
            log(line)
        if not rep.passed:
            raise ScaleNASError(f"{out}: parity check failed: max abs diff {rep.max_abs:.3g} above "
                                f"{rep.rule} (see the table above); the file was not written")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    record = {"format": fmt, "file": os.path.basename(out), **info,
              "inputs": ["image"], "outputs": output_names(lm.meta),
              "dynamic": {"batch": True, "height": "multiple of 32", "width": "multiple of 32"},
              "normalisation": lm.meta["normalisation"], "model_dir": os.path.abspath(model_path),
              "weights_sha256": lm.meta["weights"].get("sha256"), "arch_hash": lm.arch.hash,
              "parity": rep.to_dict(), "sha256": md.sha256_file(out)}
    atomic_write_json(out + ".json", record)
    return {"path": out, "record": record, "parity": rep}
