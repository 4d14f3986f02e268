"""Initialise a supernet from a checkpoint of a ScaleNet, a supernet or an HRNet-family network.

Our parameter names make a ScaleNet's state dict a subset of the supernet's: a subnet's blocks sit
in the first slots of each branch and its fusion weights at their own step. So loading is by name:
every tensor whose name and shape match is copied; the rest keeps its initialisation. HRNet-family
state dicts are first translated to the names of the equivalent ``hrnet()`` ScaleNet (its module-end
fusion is step 3). The report lists what was loaded, skipped and left untouched.
"""
from __future__ import annotations

import os

import torch

from scalenas.errors import ScaleNASError
from scalenas.nets.convert import convert_hrnet_state_dict
from scalenas.utils.weights import read_weights


def _read_state_dict(path: str) -> tuple[dict, str]:
    if not os.path.exists(path):
        raise ScaleNASError(f"model.pretrained: {path} not found")
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if path.endswith(".safetensors"):
        return read_weights(path, "weights file"), "scalenet"
    obj = read_weights(path, "checkpoint")
    if isinstance(obj, dict) and "model" in obj and isinstance(obj.get("meta"), dict):
        return obj["model"], "supernet"
    for key in ("state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ScaleNASError(f"{path}: expected a state dict")
    sd = {(k[7:] if k.startswith("module.") else k[6:] if k.startswith("model.") else k): v for k, v in obj.items()}
    if any(k.startswith(("front.", "stages.")) for k in sd):
        return sd, "scalenet"
    return sd, "hrnet"


def init_supernet_from(supernet, path: str) -> dict:
    sd, kind = _read_state_dict(path)
    report: dict = {"source": path, "kind": kind}
    if kind == "hrnet":
        sd, conv = convert_hrnet_state_dict(sd, supernet.space, supernet.head_spec)
        report["conversion"] = conv.summary()  # counts and first keys, not ~1,800 key names
    own = supernet.state_dict()
    loaded, shape_mismatch, unknown = [], [], []
    with torch.no_grad():
        for k, v in sd.items():
            if k not in own:
                unknown.append(k)
            elif own[k].shape != v.shape:
                shape_mismatch.append(f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}")
            else:
                own[k].copy_(v)
                loaded.append(k)
    if not loaded:
        raise ScaleNASError(f"model.pretrained: {path}: no tensor matched the supernet "
                            f"({len(unknown)} unknown names, {len(shape_mismatch)} shape mismatches)")
    report.update(loaded=len(loaded), untouched=len(own) - len(loaded), unknown=unknown[:50],
                  num_unknown=len(unknown), shape_mismatch=shape_mismatch[:50], num_shape_mismatch=len(shape_mismatch))
    return report
