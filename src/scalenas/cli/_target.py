"""Resolve the ``NAME|ARCH`` argument shared by ``scalenas info`` and ``scalenas draw``.

A target is a preset name, or a file: an arch JSON, a ``model.json`` / preset-format JSON that also
holds ``space`` (and maybe ``head``, ``input_hw``), or an official ScaleNAS ``.npy`` mask.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field

from scalenas.errors import ScaleNASError
from scalenas.nets.registry import HRNAS_PRESETS, PRESETS, get_preset, list_presets
from scalenas.space.arch import Arch
from scalenas.space.heads import HEAD_KINDS, HeadSpec
from scalenas.space.hrnas import HRNASArch, HRNASSpace, arch_family
from scalenas.space.legacy import load_official_mask
from scalenas.space.space import SearchSpace
from scalenas.utils.io import read_json

@dataclass
class Target:
    name: str
    space: SearchSpace
    arch: Arch
    head: HeadSpec
    input_hw: tuple[int, int]
    published: dict | None = None  # only when the preset is shown exactly as published
    notes: list[str] = field(default_factory=list)


@dataclass
class HRNASTarget:
    """A target of the ``hrnas`` family (HR-NAS's space): an ``HRNASSpace`` and an ``HRNASArch``."""

    name: str
    space: HRNASSpace
    arch: HRNASArch
    head: HeadSpec
    input_hw: tuple[int, int]


def resolve_hrnas_target(target: str, head: str | None = None, input_hw=None,
                         width: int | None = None) -> HRNASTarget | None:
    """The target if it is an hrnas preset or a file whose arch is tagged ``scalenas.hrnas-arch/1``, else None."""
    if target.lower() in HRNAS_PRESETS and not os.path.isfile(target):
        p = get_preset(target)
        name, space, arch, spec, hw = p.name, p.space, p.arch, p.head, p.input_hw
    elif os.path.isfile(target) and not target.lower().endswith(".npy"):
        d = read_json(target, "architecture or preset file")
        if arch_family(d) != "hrnas":
            return None
        name = (d.get("name") if "stages" not in d else None) or os.path.splitext(os.path.basename(target))[0]
        space = HRNASSpace.from_dict(d["space"], f"{target}: space") if "space" in d else HRNASSpace()
        spec = HeadSpec.of(d["head"]) if "head" in d else HeadSpec()
        hw = tuple(d["input_hw"]) if "input_hw" in d else spec.default_input_hw
        ad = d if "stages" in d else d["arch"]
        arch = HRNASArch.from_dict({k: v for k, v in ad.items() if k != "origin"}, where=target)
    else:
        return None
    if width is not None:
        raise ScaleNASError(f"--width: {name} is of the hrnas family, whose widths are fixed by its space")
    if head is not None and head != spec.kind:
        spec = HeadSpec(kind=head)
        hw = spec.default_input_hw
    hw = tuple(input_hw) if input_hw is not None else hw
    space.validate(arch, where=target)
    return HRNASTarget(name, space, arch, spec, (int(hw[0]), int(hw[1])))


def parse_hw(text: str) -> tuple[int, int]:
    """``"HxW"`` (or a single number for a square) -> (H, W); an argparse type."""
    try:
        parts = [int(v) for v in text.lower().replace("×", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 512x1024")
    return parts[0], parts[1]


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", choices=HEAD_KINDS, help="head to count/draw (default: the preset's own, else seg)")
    p.add_argument("--input", type=parse_hw, metavar="HxW",
                   help="input size (default: the preset's own, else 1024x2048 seg, 256x192 top-down, "
                        "512x512 bottom-up)")
    p.add_argument("--width", type=int, metavar="C", help="branch-0 width C (32 or 48 in the paper); "
                                                           "overrides the preset's or file's space")


def resolve_target(target: str, head: str | None = None, input_hw=None, width: int | None = None) -> Target:
    notes: list[str] = []
    published = None
    if target.lower() in PRESETS and not os.path.isfile(target):
        p = get_preset(target)
        name, space, arch, spec, hw = p.name, p.space, p.arch, p.head, p.input_hw
        published = p.published
        if head is not None and head != spec.kind:
            spec = HeadSpec(kind=head)
            hw = spec.default_input_hw
    elif os.path.isfile(target):
        name = os.path.splitext(os.path.basename(target))[0]
        space, spec, hw = SearchSpace(), None, None
        if target.lower().endswith(".npy"):
            arch = load_official_mask(target)
            notes.append("official ScaleNAS mask (.npy)")
        else:
            d = read_json(target, "architecture or preset file")
            if isinstance(d, dict) and "arch" in d and "modules" not in d:
                if "space" in d:
                    space = SearchSpace.from_dict(d["space"])
                if "head" in d:
                    spec = HeadSpec.of(d["head"])
                if "input_hw" in d:
                    hw = tuple(int(v) for v in d["input_hw"])
                name = d.get("name") or name
                d = d["arch"]
            arch = Arch.from_dict(d, where=target)
        if spec is None or (head is not None and head != spec.kind):
            spec = HeadSpec(kind=head or "seg")
            hw = None
        hw = hw or spec.default_input_hw
    else:
        raise ScaleNASError(f"{target!r} is neither a preset name nor an existing file; presets: "
                            f"{', '.join(list_presets() + list_presets('hrnas'))}")
    if width is not None:
        if width < 1:
            raise ScaleNASError(f"--width {width}: must be positive")
        if width != space.width:
            space = dataclasses.replace(space, width=width)
            published = None
    if input_hw is not None and tuple(input_hw) != tuple(hw):
        hw = tuple(input_hw)
        published = None
    if spec.pose_rule and not space.is_valid(arch, pose_rule=True) and space.is_valid(arch):
        arch = space.apply_pose_rule(arch)  # as create_model does for a pose head on a seg arch
        notes.append(f"pose rule applied to M{arch.num_modules - 1} (only branch 0 feeds a pose head)")
        published = None
    if published is not None and spec != get_preset(name).head:
        published = None
    space.validate(arch, pose_rule=spec.pose_rule, where=target)
    return Target(name, space, arch, spec, (int(hw[0]), int(hw[1])), published, notes)
