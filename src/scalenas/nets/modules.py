"""The multi-branch module of ScaleNAS (method §4) and the fixed parts around it.

A module holds BasicBlock slots ``blocks[i][s]`` and per-step fusion edges ``fuse[s]["j_k"]``. Which
of them run is given by a *plan*, compiled from a :class:`ModuleArch`. The static ScaleNet builds only
the modules its plan uses; the supernet builds every slot and edge and swaps plans. Both share the
same parameter names and the same forward code, so extraction is a key subset and the two paths
compute the same function.

Plans are compiled with the arch's liveness (``space.liveness``): blocks and edges whose results
never reach the head (a pose net's last module after branch 0's last fusion) are neither run nor,
in the static ScaleNet, built. The outputs of branches the consumer does not read are then not the
full module's; the heads never look at them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from scalenas.nets.blocks import BasicBlock, Bottleneck, FuseEdge, Stem, conv_bn
from scalenas.space.arch import Arch, ModuleArch
from scalenas.space.liveness import ModuleLiveness, all_live


def edge_key(j: int, k: int) -> str:
    """ModuleDict key of the edge from input branch k into output branch j."""
    return f"{j}_{k}"


_SLOT_KEY = re.compile(r"^stages\.(\d+)\.(?:blocks\.(\d+)\.(\d+)|fuse\.(\d+)\.(\d+)_(\d+))\.")


def is_dead_key(key: str, arch: Arch, live: tuple[ModuleLiveness, ...]) -> bool:
    """Whether state-dict ``key`` names a block or edge that ``arch`` has but whose result never
    reaches the head (``live`` from ``space.liveness``): weights written before dead compute was
    dropped, or imported from a network that computed it, are ignored there, not errors."""
    mt = _SLOT_KEY.match(key)
    if mt is None or int(mt[1]) >= arch.num_modules:
        return False
    m = int(mt[1])
    ma, lv = arch.modules[m], live[m]
    if mt[2] is not None:
        i, s = int(mt[2]), int(mt[3])
        return i < ma.num_branches and s < ma.depth[i] and not lv.block(i, s)
    s, j, k = int(mt[4]), int(mt[5]), int(mt[6])
    return j < ma.num_branches and k in ma.inputs(j, s) and (s, j, k) not in lv.edges


@dataclass(frozen=True)
class ModulePlan:
    """For each step s: the branches whose block slot s runs, and (j, inputs) for each fused output branch."""

    steps: tuple[tuple[tuple[int, ...], tuple[tuple[int, tuple[int, ...]], ...]], ...]

    @staticmethod
    def compile(ma: ModuleArch, live: ModuleLiveness | None = None) -> "ModulePlan":
        """The live blocks and fusions of ``ma`` (``live=None``: every output is read, all of it runs)."""
        live = live if live is not None else all_live(ma)
        steps = []
        for s in range(live.num_steps()):
            run = tuple(i for i in range(ma.num_branches) if live.block(i, s))
            fused = tuple((j, ma.inputs(j, s)) for j in range(ma.num_branches)
                          if ma.inputs(j, s) and live.fuses(s, j))
            steps.append((run, fused))
        return ModulePlan(tuple(steps))


class HRModule(nn.Module):
    """Blocks and fusion edges of one module. ``arch=None`` builds every slot and edge (supernet);
    otherwise only the parts ``live`` keeps (default: all of ``arch``)."""

    def __init__(self, num_branches: int, channels, max_depth: int, arch: ModuleArch | None = None,
                 momentum: float = 0.1, upsample: str = "nearest", live: ModuleLiveness | None = None):
        super().__init__()
        nb = num_branches
        if arch is not None and live is None:
            live = all_live(arch)
        depth = live.depth if live is not None else (max_depth,) * nb
        self.blocks = nn.ModuleList(
            nn.ModuleList(BasicBlock(channels[i], momentum) for _ in range(depth[i])) for i in range(nb))
        self.fuse = nn.ModuleList()
        for s in range(max(depth)):
            edges = nn.ModuleDict()
            for j in range(nb):
                ins = ([k for k in arch.inputs(j, s) if (s, j, k) in live.edges] if arch is not None
                       else [k for k in range(nb) if k != j])
                for k in ins:
                    edges[edge_key(j, k)] = FuseEdge(k, j, channels, momentum, upsample)
            self.fuse.append(edges)
        self.plan = ModulePlan.compile(arch, live) if arch is not None else None

    def forward(self, xs):
        xs = list(xs)
        for s, (run, fused) in enumerate(self.plan.steps):
            for i in run:
                xs[i] = self.blocks[i][s](xs[i])
            ys = list(xs)  # synchronous update: every output reads the pre-fusion values of step s
            edges = self.fuse[s]
            for j, ins in fused:
                # Sum into the first edge's fresh output (x + e == e + x exactly), in place; xs[j] and
                # xs[k] are never written, as other edges and the next step still read them.
                y = None
                for k in ins:
                    e = edges[edge_key(j, k)](xs[k], xs[j])
                    y = e.add_(xs[j]) if y is None else y.add_(e)
                ys[j] = F.relu(y, inplace=True)
            # Branches with no cross input keep x[j]; it is a ReLU output already, so ReLU(x) == x.
            xs = ys
        return xs


class Front(nn.Module):
    """Stem, stage 1 (Bottlenecks) and transition 1: image -> two branches at 1/4 and 1/8."""

    def __init__(self, stem_channels: int, stage1_blocks: int, channels, momentum: float = 0.1):
        super().__init__()
        S = stem_channels
        self.stem = Stem(S, momentum)
        blocks, cin = [], S
        for _ in range(stage1_blocks):
            blocks.append(Bottleneck(cin, S, momentum))
            cin = S * Bottleneck.expansion
        self.layer1 = nn.Sequential(*blocks)
        self.transition1 = nn.ModuleList([conv_bn(cin, channels[0], 3, 1, True, momentum),
                                          conv_bn(cin, channels[1], 3, 2, True, momentum)])

    def forward(self, x):
        x = self.layer1(self.stem(x))
        return [t(x) for t in self.transition1]


def new_branch_transition(nb: int, channels, momentum: float) -> nn.Module:
    """Transition into a stage with ``nb`` branches: 3x3 stride-2 conv from the last branch."""
    return conv_bn(channels[nb - 2], channels[nb - 1], 3, 2, True, momentum)
