"""The deployable model directory: format, atomic writing, and safe, strict loading.

A model dir holds::

    model.safetensors   weights of the static ScaleNet (safetensors: no code runs when it is read)
    model.json          format tag, arch, space, head, task config, input size, normalisation,
                        calibration settings, weights checksum, provenance (see ``MODEL_FORMAT``)
    MODEL_CARD.md       human-readable card; card.json the same figures as data
    dataset_info.json   (segmentation only) the class names / palette, so predict needs no dataset

Loading is strict: a weights file whose checksum differs from model.json, that is truncated or not
a weights file, or whose tensors do not fit the arch (missing, unexpected, wrong shape or dtype,
non-finite values) is refused with a :class:`ScaleNASError` naming the file and the first offending
tensor. ``.pt`` weights are read with ``torch.load(weights_only=True)``; a pickle that asks for any
code object is refused, never executed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from scalenas.errors import ScaleNASError
from scalenas.nets.hrnas import HRNASNet
from scalenas.nets.scalenet import ScaleNet
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.hrnas import HRNASArch, HRNASSpace
from scalenas.space.liveness import liveness
from scalenas.space.space import SearchSpace
from scalenas.utils.io import dumps_json, read_json
from scalenas.utils.weights import read_weights as read_any_weights

MODEL_FORMAT = "scalenas.model/1"
META_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
CARD_MD = "MODEL_CARD.md"
CARD_JSON = "card.json"
REQUIRED_KEYS = ("format", "arch", "space", "head", "task", "input_hw", "normalisation", "weights")


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- weights I/O
def weights_bytes(net: torch.nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """The state dict as safetensors bytes (contiguous copies: channels_last tensors are not accepted)."""
    from safetensors.torch import save

    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return save(sd, metadata=metadata)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pt``/``.pth`` state dict read without running code
    (by the one safe reader, ``utils.weights.read_weights``)."""
    if os.path.isfile(path) and not path.endswith((".safetensors", ".pt", ".pth", ".bin")):
        raise ScaleNASError(f"{path}: unknown weights format (expected .safetensors, or .pt/.pth)")
    obj = read_any_weights(path, "weights file")
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):  # a training checkpoint: the weights are one entry of it
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise ScaleNASError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return obj


def check_state_dict(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], path: str,
                     what: str = "the arch in model.json") -> dict[str, torch.Tensor]:
    """Return ``got`` cast to the expected floating dtypes, or raise naming the first mismatching tensor
    (in the network's own parameter order, then the file's order for unexpected names)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    bad_shape = [k for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    bad_dtype = [k for k in expected if k in got and k not in bad_shape
                 and got[k].dtype != expected[k].dtype
                 and not (got[k].dtype.is_floating_point and expected[k].dtype.is_floating_point)]
    summary = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(bad_shape)} wrong shape"
    for k in expected:  # the first problem in network order
        if k in missing:
            raise ScaleNASError(f"{path}: weights do not fit {what} ({summary}); first: tensor {k!r} is missing")
        if k in bad_shape:
            raise ScaleNASError(f"{path}: weights do not fit {what} ({summary}); first: tensor {k!r} has shape "
                                f"{list(got[k].shape)}, the network needs {list(expected[k].shape)}")
        if k in bad_dtype:
            raise ScaleNASError(f"{path}: tensor {k!r} has dtype {got[k].dtype}, the network needs "
                                f"{expected[k].dtype}")
    if unexpected:
        raise ScaleNASError(f"{path}: weights do not fit {what} ({summary}); first: unexpected tensor "
                            f"{unexpected[0]!r} (shape {list(got[unexpected[0]].shape)})")
    out = {}
    for k, ref in expected.items():
        v = got[k]
        if v.dtype.is_floating_point:
            if not bool(torch.isfinite(v).all()):
                raise ScaleNASError(f"{path}: tensor {k!r} holds NaN or infinite values")
            v = v.to(ref.dtype)
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------ the dir
@dataclass
class LoadedModel:
    path: str
    meta: dict
    space: SearchSpace | HRNASSpace
    arch: Arch | HRNASArch
    head: HeadSpec
    net: torch.nn.Module  # a ScaleNet (an HRNASNet for the hrnas family) in eval mode

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.meta["input_hw"][0]), int(self.meta["input_hw"][1])

    @property
    def task_cfg(self) -> dict:
        return dict(self.meta["task"])


def read_meta(model_dir: str) -> dict:
    path = os.path.join(model_dir, META_FILE)
    if not os.path.isdir(model_dir):
        raise ScaleNASError(f"{model_dir}: model directory not found")
    if not os.path.isfile(path):
        raise ScaleNASError(f"{path}: not found; is {model_dir} a model directory written by 'scalenas extract'?")
    meta = read_json(path, "model metadata")
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise ScaleNASError(f"{path}: format {fmt!r} is not {MODEL_FORMAT!r}")
    for k in REQUIRED_KEYS:
        if k not in meta:
            raise ScaleNASError(f"{path}: missing key {k!r}")
    return meta


def is_hrnas(meta: dict) -> bool:
    """A model of the ``hrnas`` family (its space says so; model dirs of the ScaleNAS space have no family)."""
    return isinstance(meta.get("space"), dict) and meta["space"].get("family") == "hrnas"


def parse_meta(meta: dict, path: str) -> tuple[SearchSpace | HRNASSpace, Arch | HRNASArch, HeadSpec]:
    hrnas = is_hrnas(meta)
    try:
        space = HRNASSpace.from_dict(meta["space"]) if hrnas else SearchSpace.from_dict(meta["space"])
        head = HeadSpec.from_dict(meta["head"])
    except (TypeError, ScaleNASError) as e:
        raise ScaleNASError(f"{path}: invalid 'space' or 'head': {e}") from None
    if hrnas:
        return space, space.validate(HRNASArch.from_dict(meta["arch"], where=f"{path} arch"), f"{path} arch"), head
    arch = Arch.from_dict(meta["arch"], where=f"{path} arch")
    space.validate(arch, pose_rule=head.pose_rule)
    return space, arch, head


def build_net(meta: dict, space, arch, head) -> torch.nn.Module:
    """The untrained network a model dir's weights load into (on the meta device: no memory, no init)."""
    momentum = float(meta.get("bn_momentum", 0.1))
    with torch.device("meta"):
        if is_hrnas(meta):
            return HRNASNet(space, arch, head, bn_momentum=momentum, init="none")
        return ScaleNet(space, arch, head, bn_momentum=momentum, init="none")


def load_model(model_dir: str, device: str | torch.device = "cpu", verify: bool = True) -> LoadedModel:
    """The network of ``model_dir`` (eval mode) with its metadata, loaded strictly (see module doc)."""
    from scalenas.nets.modules import is_dead_key

    meta = read_meta(model_dir)
    meta_path = os.path.join(model_dir, META_FILE)
    space, arch, head = parse_meta(meta, meta_path)
    winfo = meta["weights"]
    if not isinstance(winfo, dict) or not isinstance(winfo.get("file"), str):
        raise ScaleNASError(f"{meta_path}: 'weights' must be an object with a 'file' name")
    wfile = winfo["file"]
    if os.path.basename(wfile) != wfile:  # the weights live in the dir: no path escapes from a crafted model.json
        raise ScaleNASError(f"{meta_path}: weights.file {wfile!r} must be a plain file name inside the model dir")
    wpath = os.path.join(model_dir, wfile)
    if not os.path.isfile(wpath):
        raise ScaleNASError(f"{wpath}: weights file not found")
    if verify and winfo.get("sha256"):
        digest = sha256_file(wpath)
        if digest != winfo["sha256"]:
            raise ScaleNASError(f"{wpath}: SHA-256 {digest[:16]}... differs from model.json's "
                                f"{winfo['sha256'][:16]}...: "
                                f"the file was modified or damaged after it was written (re-run 'scalenas extract', "
                                f"or, if you replaced the weights on purpose, update weights.sha256 in model.json)")
    # Model dirs written before dead compute was dropped (pose nets' last module after branch 0's
    # last fusion) hold those tensors; the net no longer has them and never read their results.
    tensors = read_weights(wpath)
    if not is_hrnas(meta):
        live = liveness(arch, head)
        tensors = {k: v for k, v in tensors.items() if not is_dead_key(k, arch, live)}
    net = build_net(meta, space, arch, head)
    expected = net.state_dict()
    sd = check_state_dict(expected, tensors, wpath)
    net.load_state_dict(sd, strict=True, assign=True)
    net = net.to(device).eval()
    return LoadedModel(model_dir, meta, space, arch, head, net)


def write_model_dir(model_dir: str, files: dict[str, bytes], overwrite: bool = False) -> str:
    """Write ``files`` (name -> bytes) as the directory ``model_dir`` atomically: they are written to a
    temporary sibling folder, which is then renamed into place, so a reader never sees half a model.
    An existing model dir is replaced only with ``overwrite``."""
    model_dir = os.path.abspath(model_dir)
    check_target(model_dir, overwrite)
    parent = os.path.dirname(model_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(model_dir) + ".", suffix=".tmp", dir=parent)
    try:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        old = None
        if os.path.exists(model_dir):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(model_dir) + ".", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(model_dir, old)
        os.replace(tmp, model_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir


def check_target(model_dir: str, overwrite: bool) -> None:
    """Refuse early (before any expensive work) to clobber something that is not ours to replace."""
    if not os.path.exists(model_dir):
        return
    if not os.path.isdir(model_dir):
        raise ScaleNASError(f"{model_dir}: exists and is not a directory")
    if not os.listdir(model_dir):
        os.rmdir(model_dir)
        return
    if not os.path.isfile(os.path.join(model_dir, META_FILE)):
        raise ScaleNASError(f"{model_dir}: exists and is not a model directory; choose another -o")
    if not overwrite:
        raise ScaleNASError(f"{model_dir}: a model directory already exists; pass --overwrite to replace it")


def json_bytes(obj: Any) -> bytes:
    return (dumps_json(obj, indent=1) + "\n").encode("utf-8")
