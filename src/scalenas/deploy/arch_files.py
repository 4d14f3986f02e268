"""Arch JSON files and where an arch came from.

``scalenas search pick -o`` writes the arch it chose with an ``origin`` object beside the arch's
``format`` and ``modules`` (``Arch.load`` reads only those two). ``scalenas archs`` writes the special
points of a space (largest, smallest, hrnet), presets and random samples without running a search, in
the preset layout (``name``, ``space``, ``head``, ``arch``, ``origin``), so that ``info`` and ``draw``
also see the space the arch belongs to. Every command that takes an arch accepts both, and
``scalenas extract`` copies the origin into the model card, which then says where the deployed arch
came from instead of "search run: None".

Origins (``kind``): ``search`` (``run_dir``, the run record's hash), ``space`` (``name``: largest /
smallest / hrnet, the ``space`` dict, the ``config`` it was read from), ``preset`` (``name``),
``random`` (``seed``, ``index``, ``fusion_prob``), and ``file`` for an arch file with no origin.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

from scalenas.errors import ScaleNASError
from scalenas.nets.registry import PRESETS, list_presets
from scalenas.space.arch import Arch
from scalenas.space.space import SearchSpace
from scalenas.utils.io import atomic_write_json, read_json

SPACE_POINTS = ("largest", "smallest", "hrnet")


@dataclass(frozen=True)
class NamedArch:
    name: str
    arch: Arch
    origin: dict


def arch_file_dict(arch: Arch, origin: dict, space: SearchSpace | None = None, head_kind: str | None = None) -> dict:
    """The arch file's contents: the canonical arch plus its origin; with ``space``, in the preset
    layout that also names the space and head."""
    if space is None:
        return {**arch.to_dict(), "origin": origin}
    return {"name": origin.get("name"), "space": space.to_dict(), "head": {"kind": head_kind or "seg"},
            "arch": arch.to_dict(), "origin": origin}


def write_arch_file(path: str, arch: Arch, origin: dict, space: SearchSpace | None = None,
                    head_kind: str | None = None) -> None:
    atomic_write_json(path, arch_file_dict(arch, origin, space, head_kind))


def special_archs(space: SearchSpace, which: list[str], pose_rule: bool = False, num_random: int = 0,
                  seed: int = 0, fusion_prob: float = 0.5, config: str | None = None) -> list[NamedArch]:
    """The archs named in ``which`` (largest, smallest, hrnet, or a preset name), then ``num_random``
    samples drawn from ``random.Random(seed)``; every one validated against ``space`` (with the pose
    rule on the last module when ``pose_rule``)."""
    base = {"width": space.width, "pose_rule": pose_rule, "config": os.path.abspath(config) if config else None}
    out: list[NamedArch] = []
    for name in which:
        if name in SPACE_POINTS:
            arch = getattr(space, name)(pose_rule=pose_rule)
            origin = {"kind": "space", "name": name, **base}
        elif name.lower() in PRESETS:
            arch = PRESETS[name.lower()].arch
            if pose_rule:
                arch = space.apply_pose_rule(arch)
            if not space.is_valid(arch, pose_rule=pose_rule):
                raise ScaleNASError(f"--which {name}: the preset is not a point of this space "
                                    f"({_space_brief(space)}); its own is {_space_brief(PRESETS[name.lower()].space)}")
            origin = {"kind": "preset", "name": name.lower(), **base}
        else:
            raise ScaleNASError(f"--which {name!r}: expected one of {', '.join(SPACE_POINTS)} or a preset "
                                f"({', '.join(list_presets())})")
        out.append(NamedArch(origin["name"], space.validate(arch, pose_rule=pose_rule), origin))
    if num_random < 0:
        raise ScaleNASError(f"--random {num_random}: must be 0 or more")
    if not 0.0 <= fusion_prob <= 1.0:
        raise ScaleNASError(f"--fusion-prob {fusion_prob}: must be within 0..1")
    rng = random.Random(seed)
    width = len(str(max(num_random - 1, 0)))
    for i in range(num_random):
        arch = space.sample(rng, fusion_prob, pose_rule=pose_rule)
        out.append(NamedArch(f"random_{i:0{width}d}", arch,
                             {"kind": "random", "name": f"random_{i:0{width}d}", "seed": seed, "index": i,
                              "fusion_prob": fusion_prob, **base}))
    return out


def _space_brief(space: SearchSpace) -> str:
    return f"modules per stage {list(space.modules_per_stage)}, depths {list(space.depth_choices)}"


def arch_file_origin(path: str) -> dict:
    """Where the arch in ``path`` came from: the file's own ``origin`` (written by ``scalenas archs`` or
    ``search pick -o``) with the file's path added, else ``{"kind": "file", "file": path}``; a
    ``model.json`` or preset file gives its name."""
    try:
        d = read_json(path, "arch file")
    except ScaleNASError:
        d = None  # Arch.load reports the problem; the origin is then just the file
    ap = os.path.abspath(path)
    if isinstance(d, dict) and isinstance(d.get("origin"), dict):
        return {**d["origin"], "file": ap}
    if isinstance(d, dict) and "arch" in d and "modules" not in d:
        if d.get("format") == "scalenas.model/1":
            return {"kind": "model", "name": d.get("name"), "file": ap}
        if d.get("name"):
            return {"kind": "preset", "name": d["name"], "file": ap}
    return {"kind": "file", "file": ap}


def describe_origin(origin: dict | None) -> str:
    """One line for the model card."""
    if not origin:
        return "not recorded"
    kind = origin.get("kind")
    f = f" (file `{origin['file']}`)" if origin.get("file") else ""
    if kind == "search":
        rec = f", record `{origin['record']}`" if origin.get("record") else ""
        return f"picked from search run `{origin.get('run_dir')}`{rec}{f}"
    if kind == "space":
        src = f" of `{origin['config']}`" if origin.get("config") else ""
        return (f"the `{origin.get('name')}` point of the W{origin.get('width')} space{src}"
                + (" (pose rule)" if origin.get("pose_rule") else "") + f", written by `scalenas archs`{f}")
    if kind == "preset":
        return f"preset `{origin.get('name')}`{f}"
    if kind == "random":
        return (f"random sample {origin.get('index')} (seed {origin.get('seed')}, fusion probability "
                f"{origin.get('fusion_prob')}) of the space, written by `scalenas archs`{f}")
    if kind == "model":
        return f"the arch of model `{origin.get('name')}`{f}"
    if kind == "shrink":
        reached = "reached" if origin.get("reached") else "not reached"
        return (f"shrunk during training by `scalenas shrink` (run `{origin.get('run_dir')}`, target "
                f"{origin.get('target_gflops')} GFLOPs MACs/{origin.get('gflops_convention')}, {reached})")
    return f"arch file `{origin.get('file')}`"
