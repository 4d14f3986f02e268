"""Our static ScaleNet against a plain, HRNet-style implementation of the same architecture.

    python bench/vs_hrnet_reference.py [--width 18] [--size 256] [--batch 2] [--random 3] [--repeats 7]

The reference (``Ref*`` classes below) is written the way the official HRNet code is
(``HighResolutionModule`` of HRNet-Image-Classification / HRNet-Semantic-Segmentation): ``nn.Sequential``
branches of BasicBlocks with ``nn.ReLU(inplace=True)`` and ``out += residual``, fuse layers built as in
``_make_fuse_layers`` (up: conv1x1, BN, ``nn.Upsample``; down: strided conv3x3 + BN, with
``nn.ReLU(False)`` between) and the fusion sum ``y = y + fuse(x[k])`` followed by an in-place ReLU. It is
generalised only as far as a ScaleNAS arch needs: per-branch depth and fusion after any block step
(HRNet's own modules fuse once, after the last one). It shares no module code with ``scalenas.nets``,
loads our state dict through an explicit key map, and must reproduce our outputs (eval and train
mode) and gradients before anything is timed.

Timed: a training step (forward, squared-mean loss, backward, SGD step) and an inference pass
(``no_grad``, eval-mode BN with statistics from one batch), NCHW and channels_last, for the hrnet
point and ``--random`` sampled archs of the seg space. Each ratio ours / reference is the median of
per-round ratios (both timed back to back in alternating order, ``_common.paired_ratio``).
"""
from __future__ import annotations

import argparse
import copy
import os
import random
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from _common import infer_fn, machine, paired_ratio, print_table, train_step_fn  # noqa: E402
from scalenas.nets.scalenet import ScaleNet  # noqa: E402
from scalenas.search.calibrate import bn_stats_from_batch  # noqa: E402
from scalenas.space import SearchSpace  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

BN_MOMENTUM = 0.1


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class RefBasicBlock(nn.Module):
    def __init__(self, planes):
        super().__init__()
        self.conv1 = conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)

    def forward(self, x):
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out += residual
        out = self.relu(out)
        return out


class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, kernel_size=1, bias=False),
                                            nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM))

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


class RefHighResolutionModule(nn.Module):
    """HRNet's module with per-branch depth and fusion after block step s where the arch asks for it."""

    def __init__(self, channels, depth, inputs, upsample):
        super().__init__()
        self.depth, self.inputs = depth, inputs  # inputs[s][j]: input branches fused into j after step s
        self.branches = nn.ModuleList(nn.Sequential(*[RefBasicBlock(channels[i]) for _ in range(d)])
                                      for i, d in enumerate(depth))
        self.fuse_layers = nn.ModuleList(
            nn.ModuleDict({f"{j}_{k}": self._fuse_layer(channels, j, k, upsample)
                           for j, ins in enumerate(step) for k in ins}) for step in inputs)
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_layer(ch, j, k, upsample):
        if k > j:
            up = nn.Upsample(scale_factor=2 ** (k - j), mode="nearest") if upsample == "nearest" else \
                nn.Upsample(scale_factor=2 ** (k - j), mode="bilinear", align_corners=False)
            return nn.Sequential(nn.Conv2d(ch[k], ch[j], 1, 1, 0, bias=False),
                                 nn.BatchNorm2d(ch[j], momentum=BN_MOMENTUM), up)
        convs = []
        for t in range(j - k):
            last = t == j - k - 1
            cout = ch[j] if last else ch[k]
            layers = [nn.Conv2d(ch[k], cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout, momentum=BN_MOMENTUM)]
            if not last:
                layers.append(nn.ReLU(False))
            convs.append(nn.Sequential(*layers))
        return nn.Sequential(*convs)

    def forward(self, x):
        for s, step in enumerate(self.inputs):
            for i in range(len(x)):
                if s < self.depth[i]:
                    x[i] = self.branches[i][s](x[i])
            x_fuse = list(x)
            for j, ins in enumerate(step):
                if ins:
                    y = x[j]
                    for k in ins:
                        y = y + self.fuse_layers[s][f"{j}_{k}"](x[k])
                    x_fuse[j] = self.relu(y)
            x = x_fuse
        return x


class RefSegHRNet(nn.Module):
    """Stem, layer1, transitions, modules and HRNetV2's seg head (``last_layer``), as in seg_hrnet.py."""

    def __init__(self, space: SearchSpace, arch, num_classes: int):
        super().__init__()
        C, S = space.channels, space.stem_channels
        self.conv1 = nn.Conv2d(3, S, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(S, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(S, S, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(S, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(*[RefBottleneck(S if b == 0 else 4 * S, S) for b in range(space.stage1_blocks)])
        self.transition1 = nn.ModuleList([self._transition(4 * S, C[0], 1), self._transition(4 * S, C[1], 2)])
        self.new_branch = nn.ModuleDict()
        self.stages = nn.ModuleList()
        prev = 2
        for m, ma in enumerate(arch.modules):
            if ma.num_branches > prev:
                prev = ma.num_branches
                self.new_branch[str(m)] = self._transition(C[prev - 2], C[prev - 1], 2)
            inputs = [[list(ma.inputs(j, s)) for j in range(ma.num_branches)] for s in range(ma.num_steps)]
            self.stages.append(RefHighResolutionModule(C, ma.depth, inputs, space.fuse_upsample))
        last = sum(C)
        self.last_layer = nn.Sequential(nn.Conv2d(last, last, 1, 1, 0), nn.BatchNorm2d(last, momentum=BN_MOMENTUM),
                                        nn.ReLU(inplace=True), nn.Conv2d(last, num_classes, 1, 1, 0))

    @staticmethod
    def _transition(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                             nn.BatchNorm2d(cout, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = [t(x) for t in self.transition1]
        for m, stage in enumerate(self.stages):
            if str(m) in self.new_branch:
                xs.append(self.new_branch[str(m)](xs[-1]))
            xs = stage(xs)
        h, w = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False) for y in xs[1:]]
        return self.last_layer(torch.cat(ups, 1))


_KEY_MAP = [  # ours -> reference; fusion edges: up "ops.0.{0,1}" -> "{0,1}", down "ops.t.{0,1}" -> "t.{0,1}"
    (re.compile(r"^front\.stem\.(.+)$"), r"\1"),
    (re.compile(r"^front\.(layer1|transition1)\.(.+)$"), r"\1.\2"),
    (re.compile(r"^transitions\.(\d+)\.(.+)$"), r"new_branch.\1.\2"),
    (re.compile(r"^stages\.(\d+)\.blocks\.(.+)$"), r"stages.\1.branches.\2"),
    (re.compile(r"^head\.conv1\.(.+)$"), r"last_layer.0.\1"),
    (re.compile(r"^head\.bn1\.(.+)$"), r"last_layer.1.\1"),
    (re.compile(r"^head\.classifier\.(.+)$"), r"last_layer.3.\1"),
]
_EDGE = re.compile(r"^stages\.(\d+)\.fuse\.(\d+)\.(\d+)_(\d+)\.ops\.(\d+)\.(.+)$")


def ref_key(k: str) -> str:
    if mt := _EDGE.match(k):
        m, s, j, kk, t, rest = mt.groups()
        tail = rest if int(kk) > int(j) else f"{t}.{rest}"
        return f"stages.{m}.fuse_layers.{s}.{j}_{kk}.{tail}"
    for rx, sub in _KEY_MAP:
        if rx.match(k):
            return rx.sub(sub, k)
    raise KeyError(k)


def reference_for(net: ScaleNet) -> RefSegHRNet:
    ref = RefSegHRNet(net.space, net.arch, net.head_spec.num_classes)
    ref.load_state_dict({ref_key(k): v for k, v in net.state_dict().items()}, strict=True)
    return ref


def check_equal(net, ref, x) -> float:
    """Largest relative difference of outputs (eval, train) and gradients; both nets are left unchanged."""
    net, ref = copy.deepcopy(net), copy.deepcopy(ref)
    worst = 0.0
    for train in (False, True):
        net.train(train), ref.train(train)
        a, b = net(x), ref(x)
        worst = max(worst, float((a - b).detach().abs().max() / b.detach().abs().max()))
    a.square().mean().backward()
    b.square().mean().backward()
    ref_params = dict(ref.named_parameters())
    for k, p in net.named_parameters():
        q = ref_params[ref_key(k)]
        if p.grad is not None or q.grad is not None:
            worst = max(worst, float((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-30)))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=18)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--random", type=int, default=3, help="number of random architectures")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    setup_process(args.threads)
    torch.manual_seed(0)
    space = SearchSpace(width=args.width)
    rng = random.Random(0)
    archs = [("hrnet", space.hrnet())] + [(f"random{i}", space.sample(rng, 0.5)) for i in range(args.random)]
    x = torch.randn(args.batch, 3, args.size, args.size)
    rows = []
    for name, arch in archs:
        net = ScaleNet(space, arch, "seg")
        bn_stats_from_batch(net, x)
        for m in net.modules():  # bn_stats_from_batch leaves cumulative averaging on; train as HRNet does
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = BN_MOMENTUM
        ref = reference_for(net)
        diff = check_equal(net, ref, x[:1])
        if diff > 1e-4:
            raise SystemExit(f"{name}: reference differs from ScaleNet (relative {diff:.2e}); not timing")
        for fmt in ("NCHW", "channels_last"):
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            a, b = copy.deepcopy(net).to(memory_format=mf), copy.deepcopy(ref).to(memory_format=mf)
            xx = x.contiguous(memory_format=mf)
            for mode, make in (("train", train_step_fn), ("infer", infer_fn)):
                ours, theirs, ratio = paired_ratio(make(a, xx), make(b, xx), args.repeats)
                rows.append([name, arch.hash, fmt, mode, ours * 1e3, theirs * 1e3, ratio])
        print(f"{name} ({arch.hash}): outputs and gradients equal the reference (max relative diff {diff:.1e})",
              flush=True)
    print_table(["arch", "hash", "layout", "step", "ours ms", "reference ms", "ratio"], rows,
                f"ScaleNet / HRNet-style reference, W{args.width} seg, {args.size}x{args.size}, batch {args.batch} "
                f"({machine()})")
    for fmt in ("NCHW", "channels_last"):
        for mode in ("train", "infer"):
            r = [row[-1] for row in rows if row[2] == fmt and row[3] == mode]
            print(f"{fmt} {mode}: ratio median {statistics.median(r):.3f} (worst {max(r):.3f}, best {min(r):.3f})")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
