"""Built networks have exactly the analytic effective params; measured multiply-adds agree with the analytic
effective ones; the published-convention count is every slot of the arch, dead compute included."""
import random

import pytest
import torch

from scalenas.nets import ScaleNet, get_preset, list_presets
from scalenas.nets.measure import flop_counter_macs, hook_count, measure, transposed_conv_gap
from scalenas.nets.supernet import SuperScaleNet
from scalenas.space import SearchSpace, profile

HEADS = ("seg", "pose-topdown", "pose-bottomup")


pytestmark = pytest.mark.usefixtures("one_thread")


def _meta_params(space, arch, head) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init
        net = ScaleNet(space, arch, head, init="none")
    return sum(p.numel() for p in net.parameters())


def _arch_slot_params(space, arch, head) -> int:
    """Params of every block and edge of ``arch`` (dead or not) and the fixed parts, from a supernet's
    names: the published convention, counted independently of the profiler."""
    with torch.device("meta"):
        sn = SuperScaleNet(space, head, init="none")
    total = 0
    for name, p in sn.named_parameters():
        parts = name.split(".")
        if parts[0] == "stages":
            ma = arch.modules[int(parts[1])]
            if parts[2] == "blocks" and int(parts[4]) >= ma.depth[int(parts[3])]:
                continue
            if parts[2] == "fuse":
                j, k = map(int, parts[4].split("_"))
                if k not in ma.inputs(j, int(parts[3])):
                    continue
        total += p.numel()
    return total


@pytest.mark.parametrize("name", list_presets())
def test_preset_params_equal_analytic(name):
    p = get_preset(name)
    prof = profile(p.space, p.arch, p.head, p.input_hw)
    assert _meta_params(p.space, p.arch, p.head) == prof.effective_params
    assert _arch_slot_params(p.space, p.arch, p.head) == prof.params
    # ScaleNet-P1/P2 end branch 0 before other branches of their last module; nothing else is dead
    assert (prof.effective_params < prof.params) == (name in ("scalenet-p1", "scalenet-p2"))
    assert (prof.effective_macs < prof.macs) == (prof.effective_params < prof.params)


def _random_cases(n=50):
    space = SearchSpace(width=32)
    groups = [(0.0, [2]), (0.2, [3, 4]), (0.5, [2, 3]), (0.8, [4, 5]), (1.0, [5]), (0.5, [2, 3, 4, 5])]
    for i in range(n):
        rng = random.Random(i)
        prob, depths = groups[i % len(groups)]
        head = HEADS[i % 3]
        arch = space.sample(rng, fusion_prob=prob, depths=depths, pose_rule=head != "seg")
        yield space, arch, head


def test_random_arch_params_equal_analytic():
    for i, (space, arch, head) in enumerate(_random_cases(50)):
        expected = profile(space, arch, head, (256, 256)).effective_params
        assert _meta_params(space, arch, head) == expected, f"case {i}: {arch} with {head} head"


# ---- measured multiply-adds (real forward passes in a small space) ------------------------------------

SMALL = SearchSpace(width=8, stem_channels=16, stage1_blocks=1)


@pytest.mark.parametrize("head", HEADS)
def test_measured_macs_match_analytic(head):
    for seed in range(3):
        arch = SMALL.sample(random.Random(100 + seed), fusion_prob=0.3 + 0.25 * seed, pose_rule=head != "seg")
        net = ScaleNet(SMALL, arch, head, init="none")
        hw = (64, 96) if seed % 2 else (96, 64)
        prof = profile(SMALL, arch, head, hw)
        x = torch.zeros(2, 3, *hw)
        params, macs = hook_count(net, x)
        assert params == prof.effective_params  # params of executed Conv/BN/Linear == analytic, exactly
        assert macs == prof.effective_macs  # get_model_summary convention, exactly
        if head == "seg":  # the seg head reads every branch: nothing is dead
            assert (prof.params, prof.macs) == (prof.effective_params, prof.effective_macs)
        fc = flop_counter_macs(net, x)
        if head == "pose-bottomup":
            # FlopCounterMode counts a transposed conv at its input resolution (1/4 of the output pixels
            # for the 4x4 stride-2 deconv); adding that documented gap back gives the analytic count.
            gap = transposed_conv_gap(net, x)
            assert gap > 0 and fc + gap == prof.effective_macs
            C, K = SMALL.width, 17
            assert gap == (C + 2 * K) * C * 16 * (hw[0] // 2 * hw[1] // 2) * 3 // 4
        else:
            assert abs(fc - prof.effective_macs) <= 0.005 * prof.effective_macs


def test_measure_api_and_mode_restored():
    arch = SMALL.hrnet()
    net = ScaleNet(SMALL, arch, "seg", init="none").train()
    m = measure(net, (64, 64))
    assert net.training  # measurement runs in eval mode and restores the mode
    prof = profile(SMALL, arch, "seg", (64, 64))
    assert (m.params, m.macs, m.flop_counter_macs) == (prof.params, prof.macs, prof.macs)
    assert m.gflops_2p30 == pytest.approx(prof.gflops_2p30)


def test_meta_device_measurement_at_full_size():
    # shape-only forward: full-resolution counts without memory (top-down P1 at 256x192)
    p = get_preset("scalenet-p1")
    with torch.device("meta"):
        net = ScaleNet(p.space, p.arch, p.head, init="none")
    m = measure(net, p.input_hw, flop_counter=False)
    prof = profile(p.space, p.arch, p.head, p.input_hw)
    assert (m.params, m.macs, m.flop_counter_macs) == (prof.effective_params, prof.effective_macs, None)
    # dead: stages.7.blocks.1.3 (2 x (3x3 64->64 conv + BN) at 32x24) and stages.7.fuse.2.1_3 (1x1 256->64 + BN at 8x6)
    assert (prof.params - prof.effective_params, prof.macs - prof.effective_macs) == (90_496, 57_409_536)
    assert round(m.gflops_2p30, 1) == 6.9 and round(prof.gflops_2p30, 2) == 6.95


def test_default_init_works_on_meta():
    # kaiming init on meta tensors is a no-op that must not fail (shape-only builds for counting)
    with torch.device("meta"):
        net = ScaleNet(SMALL, SMALL.hrnet(), "seg")
    assert sum(p.numel() for p in net.parameters()) == profile(SMALL, SMALL.hrnet(), "seg", (64, 64)).params
