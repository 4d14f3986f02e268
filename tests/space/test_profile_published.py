"""The analytic profiler reproduces every published params/GFLOPs figure (method §3.4, §3.5, §9)."""
import pytest

from scalenas.nets import get_preset
from scalenas.space import SearchSpace, profile

# name, params (M), GFLOPs, convention; the preset's own head and input size
PUBLISHED = [
    ("scalenet-s1", 25.3, 265.5, "2p30"), ("scalenet-s2", 28.5, 309.5, "2p30"),
    ("scalenet-s3", 58.5, 575.2, "2p30"), ("scalenet-s4", 67.5, 673.6, "2p30"),
    ("scalenet-p1", 28.5, 6.9, "2p30"), ("scalenet-p2", 35.6, 8.0, "2p30"),
    ("scalenet-p3", 26.2, 14.3, "2p30"), ("scalenet-p4", 64.3, 32.6, "2p30"),
    ("hrnet-w48", 65.9, 696.2, "2p30"),
    ("higher-hrnet-w32", 28.6, 47.9, "1e9"), ("higher-hrnet-w48", 63.8, 154.3, "1e9"),
]


@pytest.mark.parametrize("name,params_m,gflops,conv", PUBLISHED)
def test_presets_match_published(name, params_m, gflops, conv):
    p = get_preset(name)
    prof = profile(p.space, p.arch, p.head, p.input_hw)
    g = prof.gflops_2p30 if conv == "2p30" else prof.gflops_1e9
    assert round(prof.params / 1e6, 1) == pytest.approx(params_m, abs=1e-9)
    assert round(g, 1) == pytest.approx(gflops, abs=1e-9)
    # the preset files carry the same published figures
    assert p.published["params_M"] == params_m and p.published["gflops"] == gflops


def test_preset_inputs_and_heads():
    assert get_preset("scalenet-s1").input_hw == (1024, 2048)
    assert get_preset("scalenet-p1").input_hw == (256, 192)
    assert get_preset("scalenet-p3").input_hw == (384, 288)
    assert get_preset("higher-hrnet-w32").input_hw == (512, 512)
    assert get_preset("higher-hrnet-w48").input_hw == (640, 640)


@pytest.mark.parametrize("which,params_m,gflops", [("smallest", 13.9, 200.7), ("largest", 47.9, 469.8)])
def test_w32_space_extremes_seg(which, params_m, gflops):
    space = SearchSpace(width=32)
    prof = profile(space, getattr(space, which)(), "seg", (1024, 2048))
    assert round(prof.params / 1e6, 1) == params_m
    assert round(prof.gflops_2p30, 1) == gflops


def test_hrnet_point_of_the_space():
    # method §3.4: HRNet-W32 top-down 28.5M / 7.1 and HRNet-W48 at 384x288 63.6M / 32.9
    w32, w48 = SearchSpace(width=32), SearchSpace(width=48)
    p = profile(w32, w32.hrnet(pose_rule=True), "pose-topdown", (256, 192))
    assert (round(p.params / 1e6, 1), round(p.gflops_2p30, 1)) == (28.5, 7.1)
    p = profile(w48, w48.hrnet(pose_rule=True), "pose-topdown", (384, 288))
    assert (round(p.params / 1e6, 1), round(p.gflops_2p30, 1)) == (63.6, 32.9)
