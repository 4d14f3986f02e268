"""Load official HRNet-family checkpoints into a ScaleNet by key translation.

Supported sources (their module layouts are the HRNet papers' public code):

* HRNet ImageNet classification (``cls_hrnet``): the backbone loads; the classification-only parts
  (``incre_modules``, ``downsamp_modules``, ``final_layer.N``, ``classifier``) are reported as ignored.
* HRNetV2 segmentation (``seg_hrnet``): backbone and ``last_layer.{0,1,3}`` -> seg head.
* HigherHRNet bottom-up pose (``pose_higher_hrnet``): backbone, ``final_layers.{0,1}`` and
  ``deconv_layers.0`` -> bottom-up head.
* HRNet top-down pose (``pose_hrnet``): backbone and ``final_layer`` (a single conv) -> top-down head.

HRNet is the point of the space with depth 4 everywhere and fusion only at each module's last step
(method §3.4), so its names map one to one onto ``hrnet()`` ScaleNet names:

====================================================  ===============================================
original                                              ScaleNet
====================================================  ===============================================
``conv1 / bn1 / conv2 / bn2``                         ``front.stem.{conv1,bn1,conv2,bn2}``
``layer1.*``                                          ``front.layer1.*``
``transition1.0.{0,1}`` / ``transition1.1.0.{0,1}``   ``front.transition1.{0,1}.{0,1}``
``transition2.2.0.{0,1}``, ``transition3.3.0.{0,1}``  ``transitions.{first module of the stage}.{0,1}``
``stageS.n.branches.i.b.*``                           ``stages.m.blocks.i.b.*``
``stageS.n.fuse_layers.i.j.*`` (i: output, j: input)  ``stages.m.fuse.{d_i - 1}.i_j.ops.*`` (last step)
====================================================  ===============================================

where ``m`` is the global module index (stage 2 -> M0, stage 3 -> M1..M4, stage 4 -> M5..M7). An up
edge's ``{0,1}`` (conv, BN) becomes ``ops.0.{0,1}``; a down edge's ``t.{0,1}`` becomes ``ops.t.{0,1}``.
Fusion weights go to the *output branch's last step*; for ``hrnet()`` that is step 3, and for any other
arch this still initialises every block and last-step edge that exists (ScaleNAS-style initialisation
of searched nets from HRNet weights). Pose models fuse only into branch 0 in their last module
(``multi_scale_output=False``); a classification or segmentation checkpoint's other last-module edges
are then reported as ignored.

Fusion upsampling: HRNet, HigherHRNet and ScaleNAS use nearest; HRNet-Seg's own code interpolates
bilinearly, so build the space with ``fuse_upsample="bilinear"`` to reproduce it exactly.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from scalenas.errors import ScaleNASError
from scalenas.nets.registry import create_model
from scalenas.nets.scalenet import ScaleNet
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.space import SearchSpace
from scalenas.utils.weights import read_weights

_PREFIXES = ("module.", "model.")  # DataParallel / DDP wrappers; HRNet-Seg's FullModel wrapper

_CLS_ONLY = re.compile(r"^(incre_modules|downsamp_modules|classifier)\.|^final_layer\.\d+\.")
_HEAD_OF = {  # original head keys -> the family they belong to (used for "ignored: other task's head")
    "hrnet-seg": re.compile(r"^last_layer\."),
    "higher-hrnet": re.compile(r"^(final_layers|deconv_layers)\."),
    "hrnet-pose": re.compile(r"^final_layer\.(weight|bias)$"),
}
_HEAD_KIND = {"hrnet-seg": "seg", "higher-hrnet": "pose-bottomup", "hrnet-pose": "pose-topdown"}
_SEG_HEAD = {"0": "conv1", "1": "bn1", "3": "classifier"}  # last_layer: conv, BN, ReLU, conv


@dataclass
class ConversionReport:
    """What a conversion did. ``loaded``/``missing`` are target keys; ``unexpected``/``ignored`` source keys."""

    family: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # source key -> why it was skipped
    mismatched: list[tuple[str, str, tuple, tuple]] = field(default_factory=list)  # src, dst, src/dst shape
    stripped_prefixes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every target tensor was filled and every source tensor was used or deliberately ignored."""
        return not (self.missing or self.unexpected or self.mismatched)

    def to_dict(self) -> dict:
        return {"family": self.family, "ok": self.ok, "loaded": len(self.loaded), "missing": self.missing,
                "unexpected": self.unexpected, "ignored": self.ignored,
                "mismatched": [list(m) for m in self.mismatched],
                "stripped_prefixes": self.stripped_prefixes, "notes": self.notes}


def format_report(report: ConversionReport, max_keys: int = 12) -> str:
    """A short human-readable summary (lists truncated to ``max_keys`` entries each)."""

    def _list(title, items):
        if not items:
            return []
        out = [f"  {title} ({len(items)}):"]
        out += [f"    {k}" for k in items[:max_keys]]
        if len(items) > max_keys:
            out.append(f"    ... and {len(items) - max_keys} more")
        return out

    lines = [f"HRNet checkpoint ({report.family}): {len(report.loaded)} tensors loaded, "
             f"{len(report.missing)} missing, {len(report.unexpected)} unexpected, "
             f"{len(report.mismatched)} shape mismatches, {len(report.ignored)} ignored"]
    if report.stripped_prefixes:
        lines.append(f"  stripped key prefixes: {', '.join(report.stripped_prefixes)}")
    lines += _list("missing (left as initialised)", report.missing)
    lines += _list("unexpected (no place in this model)", report.unexpected)
    lines += _list("shape mismatches", [f"{s} -> {d}: {tuple(a)} vs {tuple(b)}" for s, d, a, b in report.mismatched])
    reasons: dict[str, int] = {}
    for why in report.ignored.values():
        reasons[why] = reasons.get(why, 0) + 1
    lines += _list("ignored", [f"{n} x {why}" for why, n in reasons.items()])
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


def print_report(report: ConversionReport, max_keys: int = 12) -> None:
    print(format_report(report, max_keys))


def detect_family(keys) -> str:
    keys = set(keys)
    if any(_HEAD_OF["higher-hrnet"].match(k) for k in keys):
        return "higher-hrnet"
    if any(_HEAD_OF["hrnet-seg"].match(k) for k in keys):
        return "hrnet-seg"
    if any(_CLS_ONLY.match(k) for k in keys):
        return "hrnet-cls"
    if any(_HEAD_OF["hrnet-pose"].match(k) for k in keys):
        return "hrnet-pose"
    return "hrnet-backbone"


def strip_prefixes(sd: dict) -> tuple[dict, list[str]]:
    """Remove ``module.`` / ``model.`` wrappers (repeatedly, in any order) from every key."""
    out, used = {}, []
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k = k[len(p):]
                    changed = True
                    if p not in used:
                        used.append(p)
        if k in out:
            raise ScaleNASError(f"checkpoint: key {k!r} occurs twice after stripping {used}")
        out[k] = v
    return out, used


class _Layout:
    """Where original HRNet modules live in a ScaleNet of (space, arch, head)."""

    def __init__(self, space: SearchSpace, arch: Arch, head: HeadSpec):
        self.space, self.arch, self.head = space, arch, head
        n2, n3, n4 = space.modules_per_stage
        self.stage_offset = {2: 0, 3: n2, 4: n2 + n3}
        self.stage_len = {2: n2, 3: n3, 4: n4}

    def module(self, stage: int, n: int) -> int | None:
        return self.stage_offset[stage] + n if 0 <= n < self.stage_len[stage] else None

    def fuse_step(self, m: int, out_branch: int) -> int | None:
        ma = self.arch.modules[m]
        return ma.depth[out_branch] - 1 if out_branch < ma.num_branches else None


_STEM = re.compile(r"^(conv1|bn1|conv2|bn2)\.(.+)$")
_T1 = re.compile(r"^transition1\.(?:0|1\.0)\.([01])\.(.+)$")
_T23 = re.compile(r"^transition([23])\.(\d+)\.0\.([01])\.(.+)$")
_BRANCH = re.compile(r"^stage([234])\.(\d+)\.branches\.(\d+)\.(\d+)\.(.+)$")
_FUSE = re.compile(r"^stage([234])\.(\d+)\.fuse_layers\.(\d+)\.(\d+)\.(.+)$")
_UP_OP = re.compile(r"^([01])\.(.+)$")  # conv1x1, BN (the Upsample has no parameters)
_DOWN_OP = re.compile(r"^(\d+)\.([01])\.(.+)$")  # t-th strided conv, then (conv, BN)


def _translate_backbone(k: str, L: _Layout) -> str | None:
    if mt := _STEM.match(k):
        return f"front.stem.{mt[1]}.{mt[2]}"
    if k.startswith("layer1."):
        return "front." + k
    if mt := _T1.match(k):
        idx = "0" if k.startswith("transition1.0.") else "1"
        return f"front.transition1.{idx}.{mt[1]}.{mt[2]}"
    if mt := _T23.match(k):
        stage = int(mt[1]) + 1
        if int(mt[2]) != stage - 1:  # HRNet only creates the new (last) branch in a transition
            return None
        return f"transitions.{L.stage_offset[stage]}.{mt[3]}.{mt[4]}"
    if mt := _BRANCH.match(k):
        m = L.module(int(mt[1]), int(mt[2]))
        return None if m is None else f"stages.{m}.blocks.{mt[3]}.{mt[4]}.{mt[5]}"
    if mt := _FUSE.match(k):
        m = L.module(int(mt[1]), int(mt[2]))
        i, j, rest = int(mt[3]), int(mt[4]), mt[5]
        if m is None or i == j:
            return None
        s = L.fuse_step(m, i)
        if s is None:
            return None
        if j > i:
            op = _UP_OP.match(rest)
            ops = None if op is None else f"ops.0.{op[1]}.{op[2]}"
        else:
            op = _DOWN_OP.match(rest)
            ops = None if op is None else f"ops.{op[1]}.{op[2]}.{op[3]}"
        return None if ops is None else f"stages.{m}.fuse.{s}.{i}_{j}.{ops}"
    return None


def _translate_head(k: str, kind: str) -> str | None:
    if kind == "seg":
        mt = re.match(r"^last_layer\.([013])\.(.+)$", k)
        return None if mt is None else f"head.{_SEG_HEAD[mt[1]]}.{mt[2]}"
    if kind == "pose-topdown":
        mt = re.match(r"^final_layer\.(weight|bias)$", k)
        return None if mt is None else f"head.final.{mt[1]}"
    if mt := re.match(r"^final_layers\.([01])\.(.+)$", k):
        return f"head.final{mt[1]}.{mt[2]}"
    if mt := re.match(r"^deconv_layers\.0\.0\.([01])\.(.+)$", k):
        return f"head.{'deconv' if mt[1] == '0' else 'deconv_bn'}.{mt[2]}"
    if mt := re.match(r"^deconv_layers\.0\.(\d+)\.0\.(.+)$", k):
        return f"head.blocks.{int(mt[1]) - 1}.{mt[2]}"
    return None


def _ignore_reason(k: str, head: HeadSpec, L: _Layout) -> str | None:
    if k.startswith("loss."):
        return "training loss buffer"
    if _CLS_ONLY.match(k):
        return "ImageNet classification head"
    for fam, rx in _HEAD_OF.items():
        if rx.match(k) and _HEAD_KIND[fam] != head.kind:
            return f"{fam} head (this model has a {head.kind} head)"
    mt = _FUSE.match(k)
    if mt and head.pose_rule:
        m = L.module(int(mt[1]), int(mt[2]))
        if m == L.space.num_modules - 1 and int(mt[3]) > 0:
            return "last-module fusion into branches 1..3 (a pose model fuses only into branch 0)"
    return None


def target_shapes(space: SearchSpace, arch: Arch, head: HeadSpec | str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a ScaleNet's state dict, from a shape-only (meta device) build."""
    with torch.device("meta"):
        net = ScaleNet(space, arch, head, init="none")
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def convert_hrnet_state_dict(sd: dict, space: SearchSpace, head: HeadSpec | str = "seg", arch: Arch | None = None,
                             target: dict[str, tuple[int, ...]] | None = None) -> tuple[dict, ConversionReport]:
    """Translate an HRNet-family state dict to ScaleNet keys.

    ``arch`` defaults to ``space.hrnet()`` (with the pose rule for pose heads). ``target`` (key -> shape
    of the receiving model) is built on the meta device when not given. Returns the new state dict
    (only keys that exist in the target with matching shapes) and a :class:`ConversionReport`.
    """
    head = HeadSpec.of(head)
    arch = arch if arch is not None else space.hrnet(pose_rule=head.pose_rule)
    if target is None:
        target = target_shapes(space, arch, head)
    src, used = strip_prefixes(sd)
    rep = ConversionReport(family=detect_family(src), stripped_prefixes=used)
    L = _Layout(space, arch, head)
    out: dict[str, torch.Tensor] = {}
    for k, v in src.items():
        if not isinstance(v, torch.Tensor):
            rep.ignored[k] = "not a tensor"
            continue
        why = _ignore_reason(k, head, L)
        if why is not None:
            rep.ignored[k] = why
            continue
        dst = _translate_backbone(k, L) or _translate_head(k, head.kind)
        if dst is None or dst not in target:
            rep.unexpected.append(k)
        elif tuple(v.shape) != target[dst]:
            rep.mismatched.append((k, dst, tuple(v.shape), target[dst]))
        else:
            out[dst] = v
            rep.loaded.append(dst)
    # Checkpoints from before PyTorch 0.4.1 carry no BN batch counters; they only matter for
    # momentum=None BNs, which HRNet does not use, so their absence is not a missing weight.
    no_counters = not any(k.endswith("num_batches_tracked") for k in src)
    for k in target:
        if k in out:
            continue
        if no_counters and k.endswith("num_batches_tracked"):
            continue
        rep.missing.append(k)
    if no_counters:
        rep.notes.append("the checkpoint has no BN num_batches_tracked counters; the model's are kept")
    return out, rep


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A state dict from a ``.pth`` file (read by the safe ``utils.weights.read_weights``), unwrapping
    training checkpoints."""
    path = os.fspath(path)
    obj = read_weights(path, "checkpoint")
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "best_state_dict", "model_state"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ScaleNASError(f"{path}: holds no state dict (expected a dict of tensors, or one under 'state_dict')")
    return obj


def load_hrnet_checkpoint(model: nn.Module | str, checkpoint: str | os.PathLike | dict,
                          strict: bool = False) -> tuple[nn.Module, ConversionReport]:
    """Load an HRNet-family checkpoint (a path or a state dict) into ``model``.

    ``model`` is a ScaleNet (or anything with ``space`` and ``head_spec``; without ``arch`` the
    ``hrnet()`` point is assumed, e.g. a supernet) or a preset name. ``strict=True`` raises a
    :class:`ScaleNASError` unless the report is clean. Returns ``(model, report)``.
    """
    if isinstance(model, str):
        model = create_model(model)
    space, head = getattr(model, "space", None), getattr(model, "head_spec", None)
    if not isinstance(space, SearchSpace) or not isinstance(head, HeadSpec):
        raise ScaleNASError("load_hrnet_checkpoint: the model must be a ScaleNet (with .space and .head_spec)")
    arch = getattr(model, "arch", None)
    sd = read_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    new_sd, rep = convert_hrnet_state_dict(sd, space, head, arch, target=target)
    where = checkpoint if not isinstance(checkpoint, dict) else "state dict"
    if strict and not rep.ok:
        raise ScaleNASError(f"{where}: does not match the model exactly\n{format_report(rep)}")
    model.load_state_dict(new_sd, strict=False)
    return model, rep
