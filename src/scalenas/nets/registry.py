"""Named models, timm-style: a registry that is a dict of shipped JSON presets.

``create_model("scalenet-s1")`` builds the released ScaleNet-S1; ``get_preset(name)`` gives the plain
data (space, arch, head, input size, published figures). A preset whose JSON says ``"family": "hrnas"``
holds an ``HRNASSpace`` and an ``HRNASArch`` and builds an ``HRNASNet``; those are kept apart in
``HRNAS_PRESETS`` so that ``PRESETS`` / ``list_presets()`` stay the ScaleNAS family that every
ScaleNAS tool (search spaces, ``scalenas archs``, published-figure checks) iterates.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources

from scalenas.errors import ScaleNASError
from scalenas.nets.scalenet import ScaleNet
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.hrnas import HRNASArch, HRNASSpace
from scalenas.space.space import SearchSpace


@dataclass(frozen=True)
class Preset:
    name: str
    task: str
    description: str
    space: SearchSpace
    arch: Arch
    head: HeadSpec
    input_hw: tuple[int, int]
    published: dict | None = field(default=None, compare=False)
    family: str = "scalenas"


def _load_all(family: str = "scalenas") -> dict[str, Preset]:
    out = {}
    for f in sorted(resources.files("scalenas.nets.presets").iterdir()):
        if not f.name.endswith(".json"):
            continue
        d = json.loads(f.read_text())
        if d.get("family", "scalenas") != family:
            continue
        if family == "hrnas":
            out[d["name"]] = Preset(d["name"], d["task"], d["description"], HRNASSpace.from_dict(d["space"], f.name),
                                    HRNASArch.from_dict(d["arch"], f.name), HeadSpec.from_dict(d["head"]),
                                    tuple(d["input_hw"]), d.get("published"), "hrnas")
            continue
        out[d["name"]] = Preset(d["name"], d["task"], d["description"], SearchSpace.from_dict(d["space"]),
                                Arch.from_dict(d["arch"], f.name), HeadSpec.from_dict(d["head"]),
                                tuple(d["input_hw"]), d.get("published"))
    return out


PRESETS: dict[str, Preset] = _load_all()
HRNAS_PRESETS: dict[str, Preset] = _load_all("hrnas")


def list_presets(family: str = "scalenas") -> list[str]:
    return sorted(HRNAS_PRESETS if family == "hrnas" else PRESETS)


def get_preset(name: str) -> Preset:
    key = name.lower()
    if key in HRNAS_PRESETS:
        return HRNAS_PRESETS[key]
    if key not in PRESETS:
        raise ScaleNASError(f"unknown model {name!r}; presets: {', '.join(list_presets() + list_presets('hrnas'))}")
    return PRESETS[key]


def create_model(name: str, head: HeadSpec | str | dict | None = None, fuse_upsample: str | None = None, **kwargs):
    """Build a preset's ScaleNet. ``head`` overrides the preset's head (e.g. ``"pose-bottomup"``),
    ``fuse_upsample`` its space's fusion upsampling (``"bilinear"`` for HRNet-Seg weights)."""
    p = get_preset(name)
    h = HeadSpec.of(head) if head is not None else p.head
    if p.family == "hrnas":
        from scalenas.nets.hrnas import HRNASNet

        if fuse_upsample is not None:
            raise ScaleNASError(f"{name}: fuse_upsample applies to the ScaleNAS family only")
        return HRNASNet(p.space, p.arch, h, **kwargs)
    arch = p.arch
    if h.pose_rule and not p.head.pose_rule:
        arch = p.space.apply_pose_rule(arch)
    space = p.space if fuse_upsample is None else replace(p.space, fuse_upsample=fuse_upsample)
    return ScaleNet(space, arch, h, **kwargs)
