"""Operators of the HRNet family (method §2, §3.1): residual blocks, stem, transitions, fusion edges.

Forward passes work in place where autograd allows it, as HRNet's own code does: a ReLU overwrites the
BN output it reads (BN's backward needs its input, not its output; ReLU's needs only its result) and
the residual add overwrites the block's fresh BN output, never the block input ``x`` (other branches
and fusion edges still read it). Measured against an HRNet-style reference of the same archs
(``bench/vs_hrnet_reference.py``, W18, 256x256, batch 2, 1 thread, loaded machine), median ratios of
ours / reference went from 1.00-1.09 with out-of-place ops to 0.95-1.00 (train and inference, NCHW
and channels_last); results are bit-identical.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool, momentum: float) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout, momentum=momentum)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN, identity residual, ReLU."""

    def __init__(self, c: int, momentum: float = 0.1):
        super().__init__()
        self.conv1 = conv3x3(c, c)
        self.bn1 = nn.BatchNorm2d(c, momentum=momentum)
        self.conv2 = conv3x3(c, c)
        self.bn2 = nn.BatchNorm2d(c, momentum=momentum)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out += x
        return F.relu(out, inplace=True)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (expansion 4) with a 1x1 projection shortcut when the widths differ."""

    expansion = 4

    def __init__(self, cin: int, planes: int, momentum: float = 0.1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=momentum)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=momentum)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, momentum=momentum)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                            nn.BatchNorm2d(cout, momentum=momentum))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return F.relu(out, inplace=True)


class Stem(nn.Module):
    """conv3x3 s2 3->S, BN, ReLU, conv3x3 s2 S->S, BN, ReLU: output at 1/4 resolution."""

    def __init__(self, c: int, momentum: float = 0.1):
        super().__init__()
        self.conv1 = conv3x3(3, c, 2)
        self.bn1 = nn.BatchNorm2d(c, momentum=momentum)
        self.conv2 = conv3x3(c, c, 2)
        self.bn2 = nn.BatchNorm2d(c, momentum=momentum)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)


class FuseEdge(nn.Module):
    """Cross-resolution edge from input branch ``k`` to output branch ``j`` (HRNet's fuse layer).

    Up (k > j): conv1x1 C_k->C_j, BN, then upsample x2^(k-j). Down (k < j): (j-k) stride-2 3x3
    convs; the intermediate ones keep C_k and have BN+ReLU, the last maps to C_j with BN only.
    """

    def __init__(self, k: int, j: int, channels, momentum: float = 0.1, upsample: str = "nearest"):
        super().__init__()
        self.scale = 2 ** (k - j) if k > j else 1
        self.upsample = upsample
        if k > j:
            self.ops = nn.Sequential(conv_bn(channels[k], channels[j], 1, 1, False, momentum))
        else:
            steps = [conv_bn(channels[k], channels[k], 3, 2, True, momentum) for _ in range(j - k - 1)]
            steps.append(conv_bn(channels[k], channels[j], 3, 2, False, momentum))
            self.ops = nn.Sequential(*steps)

    def forward(self, x, like: torch.Tensor):
        """A fresh tensor (BN or interpolation output) that the caller may accumulate into in place."""
        y = self.ops(x)
        if self.scale > 1:
            if self.upsample == "nearest":
                y = F.interpolate(y, scale_factor=float(self.scale), mode="nearest")
            else:
                y = F.interpolate(y, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return y


def init_weights(module: nn.Module, scheme: str = "kaiming") -> None:
    """``kaiming`` (He normal, fan-out) for training from scratch, except that pose heads' prediction convs
    start at N(0, 0.001^2): He-initialised heatmaps start at magnitude ~1 against targets that are zero
    almost everywhere, and the first hundreds of steps only undo that (measured: pose loss 4.2 at step 10
    vs 0.03 with the small init); ``hrnet`` is the reference N(0, 0.001^2) everywhere;
    ``none`` leaves torch's defaults (used when weights are loaded right after, e.g. on the meta device)."""
    if scheme == "none":
        return
    if scheme not in ("kaiming", "hrnet"):
        raise ValueError(f"init: unknown scheme {scheme!r} (kaiming, hrnet, none)")
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "hrnet":
                nn.init.normal_(m.weight, std=0.001)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if scheme == "kaiming":
        for m in module.modules():
            if hasattr(m, "prediction_layers"):
                for conv in m.prediction_layers():
                    nn.init.normal_(conv.weight, std=0.001)
