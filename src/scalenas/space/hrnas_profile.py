"""Analytic params and multiply-adds of an ``hrnas`` network (space, arch, head, input size).

Same convention as ``space/profile.py`` (the HRNet family's ``get_model_summary``): params of every
conv and BN that runs; multiply-adds of convs only, ``weight.numel() x output H x W``. An inverted-
residual path with ``h`` hidden channels and kernel ``k`` in a block ``cin -> cout`` costs

    params  h (cin + k^2 + cout + 4)                      (expand, depthwise, project; two BNs)
    MACs    h (cin P_in + k^2 P_out + cout P_out)         (P = pixels at the input / output level)

so one hidden channel's MACs are exactly that bracket (:func:`channel_macs`, the weight of HR-NAS's
FLOPs-aware L1 penalty). A block with any path adds its shared BN (2 cout); a block whose input and
output differ in channels or stride adds HR-NAS's grouped 1x1 shortcut (cin cout / gcd params).
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
    _head(c, head, space.out_channels, res, h, w)
    return Profile(c.params, c.macs, c.params, c.macs)
