"""Built networks have exactly the analytic params; measured multiply-adds agree with the analytic ones."""
import random

import pytest
import torch

from scalenas.nets import ScaleNet, get_preset, list_presets
from scalenas.nets.measure import flop_counter_macs, hook_count, measure, transposed_conv_gap
from scalenas.space import SearchSpace, profile

HEADS = ("seg", "pose-topdown", "pose-bottomup")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny convolutions gain nothing from threads, and on a shared 2-core machine OpenMP threads
    # spin against other processes (10-50x slower); run these forward passes single-threaded.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _meta_params(space, arch, head) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init
        net = ScaleNet(space, arch, head, init="none")
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", list_presets())
def test_preset_params_equal_analytic(name):
    p = get_preset(name)
    assert _meta_params(p.space, p.arch, p.head) == profile(p.space, p.arch, p.head, p.input_hw).params


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
        expected = profile(space, arch, head, (256, 256)).params
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
        assert params == prof.params  # params of executed Conv/BN/Linear == analytic, exactly
        assert macs == prof.macs  # get_model_summary convention, exactly
        fc = flop_counter_macs(net, x)
        if head == "pose-bottomup":
            # FlopCounterMode counts a transposed conv at its input resolution (1/4 of the output pixels
            # for the 4x4 stride-2 deconv); adding that documented gap back gives the analytic count.
            gap = transposed_conv_gap(net, x)
            assert gap > 0 and fc + gap == prof.macs
            C, K = SMALL.width, 17
            assert gap == (C + 2 * K) * C * 16 * (hw[0] // 2 * hw[1] // 2) * 3 // 4
        else:
            assert abs(fc - prof.macs) <= 0.005 * prof.macs


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
    assert (m.params, m.macs, m.flop_counter_macs) == (prof.params, prof.macs, None)
    assert round(m.gflops_2p30, 1) == 6.9


def test_default_init_works_on_meta():
    # kaiming init on meta tensors is a no-op that must not fail (shape-only builds for counting)
    with torch.device("meta"):
        net = ScaleNet(SMALL, SMALL.hrnet(), "seg")
    assert sum(p.numel() for p in net.parameters()) == profile(SMALL, SMALL.hrnet(), "seg", (64, 64)).params
