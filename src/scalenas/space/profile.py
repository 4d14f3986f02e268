"""Analytic params and multiply-adds of (space, arch, head, input size), without building a network.

Convention (the HRNet family's ``get_model_summary``, method §9): params of every conv / BN (with
biases) that runs; multiply-adds of convolutions only, ``weight.numel() x output H x W`` (for the
transposed conv of the HigherHRNet head too). BN, ReLU, upsampling and additions are not counted.
ScaleNAS reports GFLOPs as MACs / 2^30, HigherHRNet as MACs / 1e9; :class:`Profile` gives both.

Two counts (``space.liveness``): ``params``/``macs`` follow the published convention and count every
block and edge of the arch, including the dead compute of a pose net's last module that never
reaches the head (the papers' counters hooked every module that ran), so the published figures
reproduce; ``effective_params``/``effective_macs`` count only the live parts, which is exactly what a
built ScaleNet holds and runs, and what the search's cost objectives use. For seg heads, and pose
archs whose last module ends every branch at branch 0's last fusion, the two are equal.
"""
from __future__ import annotations

from dataclasses import dataclass

from scalenas.errors import ScaleNASError
from scalenas.space.arch import Arch, ModuleArch
from scalenas.space.heads import HeadSpec
from scalenas.space.liveness import ModuleLiveness, all_live, liveness
from scalenas.space.space import SearchSpace


@dataclass(frozen=True)
class Profile:
    """``params``/``macs``: published convention (dead compute counted); ``effective_*``: live parts only."""

    params: int
    macs: int
    effective_params: int
    effective_macs: int

    @property
    def gflops_2p30(self) -> float:
        """ScaleNAS/HRNet convention: multiply-adds / 2^30."""
        return self.macs / 2**30

    @property
    def gflops_1e9(self) -> float:
        """HigherHRNet convention: multiply-adds / 1e9."""
        return self.macs / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def effective_gflops_2p30(self) -> float:
        return self.effective_macs / 2**30

    @property
    def effective_gflops_1e9(self) -> float:
        return self.effective_macs / 1e9

    @property
    def effective_params_m(self) -> float:
        return self.effective_params / 1e6

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs, "params_m": round(self.params_m, 4),
                "gflops_2p30": round(self.gflops_2p30, 4), "gflops_1e9": round(self.gflops_1e9, 4),
                "effective_params": self.effective_params, "effective_macs": self.effective_macs,
                "effective_params_m": round(self.effective_params_m, 4),
                "effective_gflops_2p30": round(self.effective_gflops_2p30, 4),
                "effective_gflops_1e9": round(self.effective_gflops_1e9, 4)}


def check_input_size(input_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = int(input_hw[0]), int(input_hw[1])
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ScaleNASError(f"input size {h}x{w}: height and width must be positive multiples of 32 "
                            f"(the lowest branch runs at 1/32 resolution)")
    return h, w


class _Counter:
    def __init__(self):
        self.params = 0
        self.macs = 0

    def conv(self, cin: int, cout: int, k: int, out_hw: int, bias: bool = False):
        w = cin * cout * k * k
        self.params += w + (cout if bias else 0)
        self.macs += w * out_hw

    def bn(self, c: int):
        self.params += 2 * c

    def basic_block(self, c: int, hw: int):
        for _ in range(2):
            self.conv(c, c, 3, hw)
            self.bn(c)


def _edge(cnt: _Counter, ch: tuple[int, ...], res: list[int], k: int, j: int):
    """Fusion edge from input branch k to output branch j."""
    if k > j:  # up: conv1x1 at the input's resolution, BN, upsample
        cnt.conv(ch[k], ch[j], 1, res[k])
        cnt.bn(ch[j])
    else:  # down: (j-k) stride-2 3x3 convs
        for t in range(1, j - k):
            cnt.conv(ch[k], ch[k], 3, res[k + t])
            cnt.bn(ch[k])
        cnt.conv(ch[k], ch[j], 3, res[j])
        cnt.bn(ch[j])


def profile(space: SearchSpace, arch: Arch, head: HeadSpec | str = "seg", input_hw=(1024, 2048),
            validate: bool = True) -> Profile:
    """Params and conv multiply-adds of the deployable ScaleNet (space, arch, head) at ``input_hw``:
    published convention and effective (live parts only)."""
    head = HeadSpec.of(head)
    h, w = check_input_size(input_hw)
    if validate:
        space.validate(arch, pose_rule=head.pose_rule)
    res = [(h // 4 >> b) * (w // 4 >> b) for b in range(4)]  # pixels per branch: 1/4 .. 1/32
    fixed = _Counter()
    _front(fixed, space, res, h, w)
    _transitions(fixed, space, arch, res)
    _head(fixed, head, space.channels, res, h, w)
    published, effective = _Counter(), _Counter()
    for ma, lv in zip(arch.modules, liveness(arch, head)):
        _module(published, space.channels, res, ma, all_live(ma))
        _module(effective, space.channels, res, ma, lv)
    return Profile(fixed.params + published.params, fixed.macs + published.macs,
                   fixed.params + effective.params, fixed.macs + effective.macs)


def _front(c: _Counter, space: SearchSpace, res: list[int], h: int, w: int):
    """Stem, stage 1 (Bottlenecks, planes S, expansion 4) and transition 1."""
    ch, S = space.channels, space.stem_channels
    c.conv(3, S, 3, (h // 2) * (w // 2)); c.bn(S)
    c.conv(S, S, 3, res[0]); c.bn(S)
    inp = S
    for b in range(space.stage1_blocks):
        c.conv(inp, S, 1, res[0]); c.bn(S)
        c.conv(S, S, 3, res[0]); c.bn(S)
        c.conv(S, 4 * S, 1, res[0]); c.bn(4 * S)
        if b == 0 and inp != 4 * S:
            c.conv(inp, 4 * S, 1, res[0]); c.bn(4 * S)
        inp = 4 * S
    c.conv(4 * S, ch[0], 3, res[0]); c.bn(ch[0])
    c.conv(4 * S, ch[1], 3, res[1]); c.bn(ch[1])


def _transitions(c: _Counter, space: SearchSpace, arch: Arch, res: list[int]):
    """A new branch from the last one (3x3 stride 2) where a stage adds a branch."""
    ch, prev_nb = space.channels, 2
    for ma in arch.modules:
        nb = ma.num_branches
        if nb > prev_nb:
            c.conv(ch[nb - 2], ch[nb - 1], 3, res[nb - 1]); c.bn(ch[nb - 1])
            prev_nb = nb


def _module(c: _Counter, ch, res: list[int], ma: ModuleArch, live: ModuleLiveness):
    """The blocks and fusion edges of ``ma`` that ``live`` keeps."""
    for i in range(ma.num_branches):
        for _ in range(live.depth[i]):
            c.basic_block(ch[i], res[i])
        for s in range(ma.depth[i]):
            for k in ma.inputs(i, s):
                if (s, i, k) in live.edges:
                    _edge(c, ch, res, k, i)


def _head(c: _Counter, head: HeadSpec, ch, res, h: int, w: int):
    C = ch[0]
    if head.kind == "seg":
        tot = sum(ch)
        c.conv(tot, tot, 1, res[0], bias=True); c.bn(tot)
        c.conv(tot, head.num_classes, 1, res[0], bias=True)
    elif head.kind == "pose-topdown":
        c.conv(C, head.num_joints, 1, res[0], bias=True)
    else:  # HigherHRNet head
        K = head.num_joints
        half = (h // 2) * (w // 2)
        c.conv(C, 2 * K, 1, res[0], bias=True)
        c.conv(C + 2 * K, C, 4, half)  # ConvTranspose2d 4x4 s2 (weight numel x output pixels)
        c.bn(C)
        for _ in range(head.num_deconv_blocks):
            c.basic_block(C, half)
        c.conv(C, K, 1, half, bias=True)
