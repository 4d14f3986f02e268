"""Analytic params and multiply-adds of an ``hrnas`` network (space, arch, head, input size).

Same convention as ``space/profile.py`` (the HRNet family's ``get_model_summary``): params of every
conv and BN that runs; multiply-adds of convs only, ``weight.numel() x output H x W``. An inverted-
residual path with ``h`` hidden channels and kernel ``k`` in a block ``cin -> cout`` costs

    params  h (cin + k^2 + cout + 4)                      (expand, depthwise, project; two BNs)
    MACs    h (cin P_in + k^2 P_out + cout P_out)         (P = pixels at the input / output level)

so one hidden channel's MACs are exactly that bracket (:func:`channel_macs`, the weight of HR-NAS's
FLOPs-aware L1 penalty). A block with any path adds its shared BN (2 cout); a block whose input and
output differ in channels or stride adds HR-NAS's grouped 1x1 shortcut (cin cout / gcd params).

HR-NAS's transformer on a C-channel block with L tokens of dimension d = 64 (an 8x8 grid): a 1x1 conv
(C + 2 position channels -> L) + BN on the grid, a post-norm encoder layer (self-attention q/k/v/out
and a 2-layer FFN, all d x d without bias, two LayerNorms) and decoder layer (L learnt queries, cross-
attention, FFN, two LayerNorms), a 1x1 conv L -> C + BN, upsampled back. Linear layers count
``weight.numel()`` per token (the hooks' convention); the two attention products per layer (2 L^2 d
MACs) are not module calls and are not counted, like upsampling. So one token costs

    params  (C + 2) + 2 + d + C          MACs  64 (C + 2) + 12 d^2 + 64 C

on top of 12 d^2 + 8 d + 2 C params that do not depend on L (0 tokens removes the transformer).
"""
from __future__ import annotations

from scalenas.space.heads import HeadSpec
from scalenas.space.hrnas import HRNASArch, HRNASSpace, Slot
from scalenas.space.profile import Profile, _Counter, _head, check_input_size


def level_pixels(input_hw, num_levels: int) -> list[int]:
    """Pixels per level: 1/4, 1/8, ... of the input (the stem has stride 4)."""
    h, w = check_input_size(input_hw)
    return [(h // 4 >> b) * (w // 4 >> b) for b in range(num_levels)]


def channel_macs(sl: Slot, k: int, res: list[int]) -> int:
    """Multiply-adds one hidden channel of a kernel-``k`` path of block ``sl`` costs."""
    return sl.cin * res[sl.in_level] + (k * k + sl.cout) * res[sl.out_level]


def channel_params(sl: Slot, k: int) -> int:
    return sl.cin + k * k + sl.cout + 4


TOKEN_GRID = (8, 8)  # HR-NAS's transformer works on the feature map resized to 8x8: tokens of dimension 64
TOKEN_DIM = TOKEN_GRID[0] * TOKEN_GRID[1]


def token_macs(channels: int) -> int:
    """Multiply-adds one transformer token costs in a block of ``channels`` channels."""
    return TOKEN_DIM * (channels + 2) + 12 * TOKEN_DIM**2 + TOKEN_DIM * channels


def transformer_cost(c: _Counter, channels: int, tokens: int) -> None:
    if not tokens:
        return
    d = TOKEN_DIM
    c.params += tokens * (2 * channels + 4 + d) + 12 * d * d + 8 * d + 2 * channels
    c.macs += tokens * token_macs(channels)


def block_cost(c: _Counter, space: HRNASSpace, sl: Slot, hidden, res: list[int]) -> None:
    for k, h in zip(space.kernel_sizes, hidden):
        c.params += h * channel_params(sl, k)
        c.macs += h * channel_macs(sl, k, res)
    if sum(hidden):
        c.bn(sl.cout)
    if not sl.residual_identity:
        c.conv(sl.cin // sl.residual_groups, sl.cout, 1, res[sl.out_level])


def hrnas_profile(space: HRNASSpace, arch: HRNASArch, head: HeadSpec | str = "seg", input_hw=(512, 1024),
                  validate: bool = True) -> Profile:
    """Params and conv multiply-adds of the built ``HRNASNet`` at ``input_hw``. Every block runs (also
    for pose heads, which read branch 0 only: HR-NAS's network computes all branches), so the published
    and effective counts are equal."""
    head = HeadSpec.of(head)
    h, w = check_input_size(input_hw)
    if validate:
        space.validate(arch)
    res = level_pixels((h, w), space.num_levels)
    c = _Counter()
    s0, s1 = space.stem
    c.conv(3, s0, 3, (h // 2) * (w // 2)); c.bn(s0)
    c.conv(s0, s1, 3, res[0]); c.bn(s1)
    for sl, blk in zip(space.slots(), arch.blocks()):
        block_cost(c, space, sl, blk.hidden, res)
        transformer_cost(c, sl.cout, blk.tokens or 0)
    _head(c, head, space.out_channels, res, h, w)
    return Profile(c.params, c.macs, c.params, c.macs)
