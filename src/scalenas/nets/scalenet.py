"""The deployable ScaleNet: only the active blocks and fusion edges of one arch exist as modules,
and of those only the live ones (``space.liveness``: a pose head reads branch 0, so the last module's
work after branch 0's last fusion is not built).

Its forward pass has no mask checks, so it exports cleanly to ONNX and TorchScript.
"""
from __future__ import annotations

import torch
from torch import nn

from scalenas.errors import ScaleNASError
from scalenas.nets.blocks import init_weights
from scalenas.nets.heads import build_head
from scalenas.nets.modules import Front, HRModule, new_branch_transition
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.liveness import liveness
from scalenas.space.space import SearchSpace


def check_input(x: torch.Tensor) -> None:
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return
    if x.dim() != 4 or x.shape[1] != 3:
        raise ScaleNASError(f"input: expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % 32 or w % 32:
        raise ScaleNASError(f"input size {h}x{w}: height and width must be multiples of 32 "
                            f"(the lowest branch runs at 1/32 resolution); pad or resize the image")


class _Body(nn.Module):
    """Shared skeleton of ScaleNet and SuperScaleNet; ``arch=None`` builds every slot and edge."""

    def __init__(self, space: SearchSpace, head: HeadSpec | str, arch: Arch | None,
                 bn_momentum: float = 0.1, init: str = "kaiming"):
        super().__init__()
        self.space = space
        self.head_spec = HeadSpec.of(head)
        ch = space.channels
        self.front = Front(space.stem_channels, space.stage1_blocks, ch, bn_momentum)
        self.transitions = nn.ModuleDict()
        self.stages = nn.ModuleList()
        live = liveness(arch, self.head_spec) if arch is not None else None
        prev = 2
        for m, nb in enumerate(space.module_branches):
            if nb > prev:
                self.transitions[str(m)] = new_branch_transition(nb, ch, bn_momentum)
                prev = nb
            ma, lv = (arch.modules[m], live[m]) if arch is not None else (None, None)
            self.stages.append(HRModule(nb, ch, space.max_depth, ma, bn_momentum, space.fuse_upsample, lv))
        self.head = build_head(self.head_spec, ch, bn_momentum)
        init_weights(self, init)

    def backbone(self, x):
        xs = self.front(x)
        for m, stage in enumerate(self.stages):
            t = self.transitions[str(m)] if str(m) in self.transitions else None
            if t is not None:
                xs = xs + [t(xs[-1])]
            xs = stage(xs)
        return xs

    def forward(self, x):
        check_input(x)
        return self.head(self.backbone(x))


class ScaleNet(_Body):
    """A static network for one arch. Outputs: seg logits (B, classes, H/4, W/4); top-down heatmaps
    (B, K, H/4, W/4); bottom-up a tuple ((B, 2K, H/4, W/4) heatmaps+tags, (B, K, H/2, W/2) heatmaps)."""

    def __init__(self, space: SearchSpace, arch: Arch, head: HeadSpec | str = "seg",
                 bn_momentum: float = 0.1, init: str = "kaiming"):
        head = HeadSpec.of(head)
        space.validate(arch, pose_rule=head.pose_rule)
        super().__init__(space, head, arch, bn_momentum, init)
        self.arch = arch
