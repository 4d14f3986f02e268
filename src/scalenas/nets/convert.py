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
are then reported as ignored. So are weights of blocks and edges the target arch has but whose
results never reach its head (``space.liveness``; e.g. an HRNet pose checkpoint's
``stage4.2.branches.1.3`` in ScaleNet-P1, whose last module has 3 blocks on branch 0): the ScaleNet
does not build them.

Fusion upsampling differs by family, and the weights only reproduce their network with the fusion
they were trained with (HRNet-Seg weights in a nearest-fusion model give outputs ~5% off):

* HRNet classification, HigherHRNet, HRNet top-down pose (and ScaleNAS): ``nn.Upsample(mode='nearest')``.
* HRNet-Seg, branches ``master`` and ``pytorch-v1.1`` (``lib/models/seg_hrnet.py``):
  ``F.interpolate(mode='bilinear')`` without ``align_corners``, i.e. PyTorch's ``align_corners=False``
  (the same in both branches), the space's ``fuse_upsample="bilinear"``.
* Not reproduced: the ``HRNet-OCR`` branch's ``MODEL.ALIGN_CORNERS=True`` (its config default, kept by
  its ADE20K, COCO-Stuff and OCR experiments; its Cityscapes, LIP and PASCAL-Context HRNet configs set
  ``False`` and import exactly). Its key names are the same, so this cannot be detected from a state dict.

The report records the source family's fusion (:data:`FAMILY_UPSAMPLE`) beside the model's; a mismatch
makes it not ``ok``. ``load_hrnet_checkpoint`` given a preset *name* builds the preset with the source
family's fusion; given a built model whose fusion differs, it refuses (strict) or loads with a note.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from scalenas.errors import ScaleNASError
from scalenas.nets.modules import is_dead_key
from scalenas.nets.registry import create_model
from scalenas.nets.scalenet import ScaleNet
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.liveness import liveness
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
DEAD = "dead compute in this arch (its result never reaches the head, so the model does not build it)"

# How each family's own code upsamples in its fuse layers (see the module docstring for the sources).
FAMILY_UPSAMPLE = {"hrnet-seg": "bilinear", "hrnet-cls": "nearest", "higher-hrnet": "nearest", "hrnet-pose": "nearest"}
_UPSAMPLE_WORDS = {"nearest": "nearest", "bilinear": "bilinear (align_corners=False)"}


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
    source_upsample: str | None = None  # the family's fusion upsampling (None: unknown, a bare backbone)
    model_upsample: str | None = None  # the receiving model's

    @property
    def fusion_mismatch(self) -> bool:
        return self.source_upsample is not None and self.source_upsample != self.model_upsample

    @property
    def ok(self) -> bool:
        """Every target tensor was filled, every source tensor was used or deliberately ignored, and the
        model fuses as the source network did: the model computes the source network's function."""
        return not (self.missing or self.unexpected or self.mismatched or self.fusion_mismatch)

    def fusion_line(self) -> str:
        src = _UPSAMPLE_WORDS.get(self.source_upsample, "unknown (no family-specific keys)")
        return f"fusion upsampling: model {_UPSAMPLE_WORDS.get(self.model_upsample)}, {self.family} source {src}"

    def to_dict(self) -> dict:
        return {"family": self.family, "ok": self.ok, "loaded": len(self.loaded), "missing": self.missing,
                "unexpected": self.unexpected, "ignored": self.ignored,
                "mismatched": [list(m) for m in self.mismatched],
                "stripped_prefixes": self.stripped_prefixes, "notes": self.notes,
                "source_upsample": self.source_upsample, "model_upsample": self.model_upsample}

    def summary(self, max_keys: int = 5) -> dict:
        """Counts, the first few keys of each list and the ignored reasons: small enough for a run's report."""
        return {"family": self.family, "ok": self.ok, "loaded": len(self.loaded),
                "missing": len(self.missing), "unexpected": len(self.unexpected),
                "mismatched": len(self.mismatched), "ignored": _count_reasons(self.ignored),
                "first_missing": self.missing[:max_keys], "first_unexpected": self.unexpected[:max_keys],
                "first_mismatched": [f"{s} -> {d}: {tuple(a)} vs {tuple(b)}"
                                     for s, d, a, b in self.mismatched[:max_keys]],
                "source_upsample": self.source_upsample, "model_upsample": self.model_upsample,
                "notes": self.notes}


def _count_reasons(ignored: dict[str, str]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for why in ignored.values():
        reasons[why] = reasons.get(why, 0) + 1
    return reasons


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
    lines.append(f"  {report.fusion_line()}" + ("  <- MISMATCH" if report.fusion_mismatch else ""))
    lines += _list("ignored", [f"{n} x {why}" for why, n in _count_reasons(report.ignored).items()])
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
    family = detect_family(src)
    rep = ConversionReport(family=family, stripped_prefixes=used, source_upsample=FAMILY_UPSAMPLE.get(family),
                           model_upsample=space.fuse_upsample)
    if rep.fusion_mismatch:
        rep.notes.append(f"{family} weights were trained with {rep.source_upsample} fusion upsampling; this model "
                         f"fuses with {space.fuse_upsample}, so its outputs differ from the source network's")
    L = _Layout(space, arch, head)
    live = liveness(arch, head)
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
        if dst is not None and dst not in target and is_dead_key(dst, arch, live):
            rep.ignored[k] = DEAD
        elif dst is None or dst not in target:
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
                          strict: bool = True) -> tuple[nn.Module, ConversionReport]:
    """Load an HRNet-family checkpoint (a path or a state dict) into ``model``; returns ``(model, report)``
    with the model in eval mode.

    ``model`` is a ScaleNet (or anything with ``space`` and ``head_spec``; without ``arch`` the
    ``hrnet()`` point is assumed, e.g. a supernet) or a preset name, which is built with the fusion
    upsampling of the checkpoint's family (``"hrnet-w48"`` + HRNet-Seg weights fuses bilinearly).
    ``strict`` (the default) raises a :class:`ScaleNASError` unless the report is ``ok``, i.e. unless
    the model then computes the source network's function; ``strict=False`` loads what matches
    (e.g. ImageNet weights as an initialisation) and the report says what did not.
    """
    sd = read_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    if isinstance(model, str):
        model = _preset_for_family(model, detect_family(strip_prefixes(sd)[0]))
    space, head = getattr(model, "space", None), getattr(model, "head_spec", None)
    if not isinstance(space, SearchSpace) or not isinstance(head, HeadSpec):
        raise ScaleNASError("load_hrnet_checkpoint: the model must be a ScaleNet (with .space and .head_spec)")
    arch = getattr(model, "arch", None)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    new_sd, rep = convert_hrnet_state_dict(sd, space, head, arch, target=target)
    where = checkpoint if not isinstance(checkpoint, dict) else "state dict"
    if strict and not rep.ok:
        raise ScaleNASError(f"{where}: {_first_problem(rep)}")
    model.load_state_dict(new_sd, strict=False)
    return model.eval(), rep


def _preset_for_family(name: str, family: str) -> nn.Module:
    """The preset ``name`` built with the fusion upsampling that weights of ``family`` were trained with."""

    return create_model(name, fuse_upsample=FAMILY_UPSAMPLE.get(family))


def _first_problem(rep: ConversionReport) -> str:
    """One line saying why a conversion is not exact (the first problem found)."""
    if rep.fusion_mismatch:
        return (f"{rep.family} weights fuse with {_UPSAMPLE_WORDS[rep.source_upsample]} upsampling but the model "
                f"fuses with {rep.model_upsample}; build it with SearchSpace(fuse_upsample="
                f"{rep.source_upsample!r}) or pass the preset name")
    counts = (f"{len(rep.missing)} missing, {len(rep.unexpected)} unexpected, {len(rep.mismatched)} shape "
              f"mismatches")
    if rep.mismatched:
        s, d, a, b = rep.mismatched[0]
        return f"does not match the model exactly ({counts}; first: {s} -> {d}: {tuple(a)} vs {tuple(b)})"
    first = rep.missing[0] if rep.missing else rep.unexpected[0]
    return f"does not match the model exactly ({counts}; first: {first!r}); strict=False loads what matches"
