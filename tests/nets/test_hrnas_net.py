"""The hrnas family's block, network, profiler equality and shrink step."""
import random

import pytest
import torch

from scalenas.nets.hrnas import HRNASNet, MultiKernelIR, prunable_units, shrink
from scalenas.nets.measure import hook_count, measure
from scalenas.space.hrnas import BlockArch, HRNASArch, HRNASSpace
from scalenas.space.hrnas_profile import hrnas_profile

pytestmark = pytest.mark.usefixtures("one_thread")

#: HR-NAS's layout at a quarter of its widths, one block per branch: forward passes in milliseconds
TINY = HRNASSpace(stem_channels=(8, 8), stages=(((1,), (8,)), ((1, 1), (6, 12)), ((1, 1, 1), (6, 12, 24)),
                                                 ((1, 1, 1, 1), (6, 12, 24, 48))), expand_ratio=2)
HEADS = ("seg", "pose-topdown", "pose-bottomup")


def _random_arch(space: HRNASSpace, seed: int, p_zero: float = 0.2) -> HRNASArch:
    rng = random.Random(seed)
    blocks = [BlockArch(tuple(0 if rng.random() < p_zero else rng.randint(1, space.max_hidden(sl.cin))
                              for _ in space.kernel_sizes)) for sl in space.slots()]
    return HRNASArch.from_blocks(space, blocks)


def _randomise_bn(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.weight, m.bias, m.running_mean):
                t.data.copy_(torch.randn(t.shape, generator=g) * 0.5)
            m.running_var.data.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_block_output_shape_and_sum_over_paths():
    torch.manual_seed(0)
    blk = MultiKernelIR(6, 12, 2, (3, 5, 7), (4, 0, 3)).eval()
    _randomise_bn(blk, 1)
    assert sorted(blk.paths) == ["k3", "k7"]  # the 0-channel path does not exist
    x = torch.randn(2, 6, 16, 12)
    y = blk(x)
    assert y.shape == (2, 12, 8, 6)
    manual = blk.shortcut(x) + blk.bn(blk.paths["k3"](x) + blk.paths["k7"](x))
    torch.testing.assert_close(y, manual)
    assert blk.shortcut.groups == 6  # HR-NAS's shortcut: 1x1 grouped by gcd(6, 12)
    ident = MultiKernelIR(6, 6, 1, (3,), (0,))
    assert ident.bn is None and torch.equal(ident(x), x)  # no path left: the block is its shortcut


def test_zero_channel_path_equals_dropping_it():
    torch.manual_seed(0)
    zero = MultiKernelIR(8, 8, 1, (3, 5, 7), (5, 0, 7)).eval()  # kernel 5 kept 0 channels
    _randomise_bn(zero, 2)
    dropped = MultiKernelIR(8, 8, 1, (3, 7), (5, 7)).eval()  # a block that never had kernel 5
    dropped.load_state_dict(zero.state_dict())  # same names, same shapes: nothing of k5 exists
    assert sum(p.numel() for p in zero.parameters()) == sum(p.numel() for p in dropped.parameters())
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(zero(x), dropped(x), rtol=0, atol=0)
        y = zero(x)
        # and removing a path changes the block by exactly that path's (BN-normalised) share
        three = MultiKernelIR(8, 8, 1, (3, 5, 7), (5, 6, 7)).eval()
        three.load_state_dict({**three.state_dict(), **zero.state_dict()})
        inv = three.bn.weight / (three.bn.running_var + three.bn.eps).sqrt()
        share = three.paths["k5"](x) * inv[None, :, None, None]
        torch.testing.assert_close(three(x) - y, share, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_network_counts_equal_profiler(head):
    for seed in range(3):
        arch = _random_arch(TINY, seed)
        net = HRNASNet(TINY, arch, head)
        prof = hrnas_profile(TINY, arch, head, (64, 96))
        m = measure(net, (64, 96), flop_counter=False)
        assert sum(p.numel() for p in net.parameters()) == prof.params == m.params, f"seed {seed}"
        assert m.macs == prof.macs, f"seed {seed}"


def test_forward_shapes():
    net = HRNASNet(TINY, TINY.largest(), "seg").eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, 64, 96))
    assert y.shape == (2, 19, 16, 24)
    assert [x.shape[1] for x in net.backbone(torch.randn(1, 3, 64, 96))] == [6, 12, 24, 48]


def test_prunable_units_cover_every_path():
    net = HRNASNet(TINY, TINY.largest(), "seg")
    units = prunable_units(net, (64, 96))
    assert len(units) == 3 * len(TINY.slots())
    res = [16 * 24, 8 * 12, 4 * 6, 2 * 3]
    u = next(u for u in units if u.where == "stage 2 fuse 0->1 (branch 1 block f0) path k5")
    assert u.hidden == 12 and u.channel_macs == 6 * res[0] + (25 + 12) * res[1]
    # dropping one channel of that path saves exactly channel_macs in the profiler
    arch = TINY.largest()
    n = int(u.key.split(".")[0])
    blocks = arch.blocks()
    blocks[n] = BlockArch((12, 11, 12))
    smaller = HRNASArch.from_blocks(TINY, blocks)
    assert (hrnas_profile(TINY, arch, "seg", (64, 96)).macs - hrnas_profile(TINY, smaller, "seg", (64, 96)).macs
            == u.channel_macs)


@pytest.mark.parametrize("head", ("seg", "pose-bottomup"))
def test_shrink_removing_dead_channels_keeps_outputs(head):
    torch.manual_seed(0)
    net = HRNASNet(TINY, _random_arch(TINY, 7, p_zero=0.1), head).eval()
    _randomise_bn(net, 3)
    g = torch.Generator().manual_seed(4)
    keep = {}
    for u in prunable_units(net, (64, 96)):
        mask = torch.rand(u.hidden, generator=g) < 0.6
        mask[0] = True  # every block keeps a path: a block left without any drops its BN's constant
        with torch.no_grad():
            u.bn.weight[~mask] = 0.0  # dead by gamma; beta stays random: the shrink folds ReLU(beta)
        keep[u.key] = mask
    x = torch.randn(2, 3, 64, 96)
    small = shrink(net, keep)
    with torch.no_grad():
        before, after = net(x), small(x)
    as_tuple = (lambda y: y if isinstance(y, tuple) else (y,))
    for a, b in zip(as_tuple(before), as_tuple(after)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert small.arch.total_hidden() == sum(int(m.sum()) for m in keep.values())
    prof = hrnas_profile(TINY, small.arch, head, (64, 96))
    assert hook_count(small, x[:1]) == (prof.params, prof.macs)
    assert sum(p.numel() for p in small.parameters()) == prof.params


def test_shrink_removes_whole_paths():
    net = HRNASNet(TINY, TINY.largest(), "pose-topdown").eval()
    keep = {u.key: torch.zeros(u.hidden, dtype=torch.bool) for u in prunable_units(net, (64, 96))
            if u.kernel == 7}
    small = shrink(net, keep)
    assert all(b.hidden[2] == 0 for b in small.arch.blocks())
    assert all("k7" not in blk.paths for blk in small.blocks())


# ---- HR-NAS's transformer (searchable tokens) -----------------------------------------------------------

TINY_T = HRNASSpace(stem_channels=(8, 8), stages=(((1,), (8,)), ((1, 1), (6, 12)), ((1, 1, 1), (6, 12, 24))),
                    expand_ratio=2, transformer_tokens=6)


def _random_arch_tokens(seed: int) -> HRNASArch:
    rng = random.Random(seed)
    blocks = [BlockArch(tuple(rng.choice([0, rng.randint(1, TINY_T.max_hidden(sl.cin))]) for _ in TINY_T.kernel_sizes),
                        rng.randint(0, 6) if sl.transformer else None) for sl in TINY_T.slots()]
    return HRNASArch.from_blocks(TINY_T, blocks)


def test_transformer_counts_equal_profiler():
    for seed in range(3):
        arch = _random_arch_tokens(seed)
        net = HRNASNet(TINY_T, arch, "seg")
        prof = hrnas_profile(TINY_T, arch, "seg", (64, 64))
        assert sum(p.numel() for p in net.parameters()) == prof.params, f"seed {seed}"
        assert hook_count(net, torch.zeros(1, 3, 64, 64)) == (prof.params, prof.macs), f"seed {seed}"
        for blk, b in zip(net.blocks(), arch.blocks()):
            assert (blk.transformer is not None) == bool(b.tokens)  # 0 tokens: no transformer at all


def test_transformer_block_output_and_token_shrink():
    torch.manual_seed(0)
    net = HRNASNet(TINY_T, TINY_T.largest(), "seg").eval()
    blk = net.blocks()[-1]
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        t = blk.transformer(x)
        torch.testing.assert_close(blk(x), x + t + blk.bn(sum(p(x) for p in blk.paths.values())))
    assert t.shape == x.shape
    units = [u for u in prunable_units(net, (64, 64)) if u.kernel is None]
    assert len(units) == sum(sl.transformer for sl in TINY_T.slots()) and units[0].where.endswith("transformer")
    assert units[-1].channel_macs == 64 * 26 + 12 * 64 * 64 + 64 * 24
    keep = {u.key: torch.arange(6) < 2 * (i % 3) for i, u in enumerate(units)}  # 0, 2, 4 tokens kept
    small = shrink(net, keep)
    assert [b.tokens for b in small.arch.blocks() if b.tokens is not None] == [2 * (i % 3) for i in range(len(units))]
    prof = hrnas_profile(TINY_T, small.arch, "seg", (64, 64))
    assert hook_count(small, torch.zeros(1, 3, 64, 64)) == (prof.params, prof.macs)
    everything = shrink(net, {u.key: torch.ones(u.hidden, dtype=torch.bool) for u in units})
    with torch.no_grad():
        img = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(everything(img), net(img))
