"""Task heads: HRNetV2 segmentation, HigherHRNet bottom-up pose, top-down pose (method §2, tasks §1.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scalenas.nets.blocks import BasicBlock
from scalenas.space.heads import HeadSpec
from scalenas.utils.registry import Registry

#: head modules by ``HeadSpec.kind`` (the kinds themselves are listed, as data, in ``space.heads.HEAD_KINDS``)
HEADS = Registry("head", "head.kind", attr="kind")


@HEADS.register
class SegHead(nn.Module):
    """Upsample branches 1..3 to branch 0, concat (15C), conv1x1+BN+ReLU, conv1x1 to classes. Logits at 1/4."""

    kind = "seg"

    @classmethod
    def from_spec(cls, spec: HeadSpec, channels, momentum: float = 0.1) -> "SegHead":
        return cls(channels, spec.num_classes, momentum, spec.align_corners)

    def __init__(self, channels, num_classes: int, momentum: float = 0.1, align_corners: bool = False):
        super().__init__()
        tot = sum(channels)
        self.align_corners = align_corners
        self.conv1 = nn.Conv2d(tot, tot, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(tot, momentum=momentum)
        self.classifier = nn.Conv2d(tot, num_classes, 1, bias=True)

    def forward(self, xs):
        x0 = xs[0]
        size = x0.shape[-2:]
        ups = [x0] + [F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners) for x in xs[1:]]
        x = torch.cat(ups, 1)
        return self.classifier(F.relu(self.bn1(self.conv1(x)), inplace=True))


@HEADS.register
class TopDownPoseHead(nn.Module):
    """conv1x1 C->K on branch 0: K heatmaps at 1/4 resolution."""

    kind = "pose-topdown"

    @classmethod
    def from_spec(cls, spec: HeadSpec, channels, momentum: float = 0.1) -> "TopDownPoseHead":
        return cls(channels, spec.num_joints)

    def __init__(self, channels, num_joints: int):
        super().__init__()
        self.final = nn.Conv2d(channels[0], num_joints, 1, bias=True)

    def forward(self, xs):
        return self.final(xs[0])

    def prediction_layers(self):
        """Heatmap convs start near zero (HigherHRNet's N(0, 0.001^2)), see ``init_weights``."""
        return [self.final]


@HEADS.register
class BottomUpPoseHead(nn.Module):
    """HigherHRNet head: (K heatmaps + K tags) at 1/4, then deconv to 1/2, BasicBlocks, K heatmaps at 1/2."""

    kind = "pose-bottomup"

    @classmethod
    def from_spec(cls, spec: HeadSpec, channels, momentum: float = 0.1) -> "BottomUpPoseHead":
        return cls(channels, spec.num_joints, spec.num_deconv_blocks, momentum)

    def __init__(self, channels, num_joints: int, num_blocks: int = 4, momentum: float = 0.1):
        super().__init__()
        C, K = channels[0], num_joints
        self.num_joints = K
        self.final0 = nn.Conv2d(C, 2 * K, 1, bias=True)
        self.deconv = nn.ConvTranspose2d(C + 2 * K, C, 4, stride=2, padding=1, output_padding=0, bias=False)
        self.deconv_bn = nn.BatchNorm2d(C, momentum=momentum)
        self.blocks = nn.Sequential(*[BasicBlock(C, momentum) for _ in range(num_blocks)])
        self.final1 = nn.Conv2d(C, K, 1, bias=True)

    def forward(self, xs):
        x = xs[0]
        y0 = self.final0(x)
        z = F.relu(self.deconv_bn(self.deconv(torch.cat([x, y0], 1))), inplace=True)
        y1 = self.final1(self.blocks(z))
        return y0, y1

    def prediction_layers(self):
        """Heatmap/tag convs start near zero (HigherHRNet's N(0, 0.001^2)), see ``init_weights``."""
        return [self.final0, self.final1]


def build_head(spec: HeadSpec, channels, momentum: float = 0.1) -> nn.Module:
    """The head module of ``spec`` on backbone branches of ``channels``."""
    return HEADS.get(spec.kind).from_spec(spec, channels, momentum)
