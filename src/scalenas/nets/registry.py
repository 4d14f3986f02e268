"""Named models, timm-style: a registry that is a dict of shipped JSON presets.

``create_model("scalenet-s1")`` builds the released ScaleNet-S1; ``get_preset(name)`` gives the plain
data (space, arch, head, input size, published figures).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources

from scalenas.errors import ScaleNASError
from scalenas.nets.scalenet import ScaleNet
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
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


def _load_all() -> dict[str, Preset]:
    out = {}
    for f in sorted(resources.files("scalenas.nets.presets").iterdir()):
        if not f.name.endswith(".json"):
            continue
        d = json.loads(f.read_text())
        out[d["name"]] = Preset(d["name"], d["task"], d["description"], SearchSpace.from_dict(d["space"]),
                                Arch.from_dict(d["arch"], f.name), HeadSpec.from_dict(d["head"]),
                                tuple(d["input_hw"]), d.get("published"))
    return out


PRESETS: dict[str, Preset] = _load_all()


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    key = name.lower()
    if key not in PRESETS:
        raise ScaleNASError(f"unknown model {name!r}; presets: {', '.join(list_presets())}")
    return PRESETS[key]


def create_model(name: str, head: HeadSpec | str | dict | None = None, fuse_upsample: str | None = None, **kwargs):
    """Build a preset's ScaleNet. ``head`` overrides the preset's head (e.g. ``"pose-bottomup"``),
    ``fuse_upsample`` its space's fusion upsampling (``"bilinear"`` for HRNet-Seg weights)."""
    p = get_preset(name)
    h = HeadSpec.of(head) if head is not None else p.head
    arch = p.arch
    if h.pose_rule and not p.head.pose_rule:
        arch = p.space.apply_pose_rule(arch)
    space = p.space if fuse_upsample is None else replace(p.space, fuse_upsample=fuse_upsample)
    return ScaleNet(space, arch, h, **kwargs)
