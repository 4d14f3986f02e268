
import numpy as np
import pytest

from scalenas.errors import ScaleNASError
from scalenas.space import SearchSpace, profile
from scalenas.train.samplers import GroupedSampler, SandwichSampler, UniformSampler

W32 = SearchSpace(width=32)
# method §5.1: mean GFLOPs (MACs/2^30) per group, W32 segmentation at 1024x2048
PAPER_MEANS = [205, 302, 363, 254, 319, 390, 267, 341, 414, 238, 470]


def test_grouped_sampler_group_flops_match_paper():
    s = GroupedSampler(W32, seed=0)
    assert len(s.groups) == 11
    flops = {g: [] for g in range(11)}
    for step in range(11 * 30):
        (arch, _), = s.archs_for(step)
        flops[s.group_index(step)].append(profile(W32, arch, "seg", (1024, 2048), validate=False).gflops_2p30)
    for g, ref in enumerate(PAPER_MEANS):
        assert abs(np.mean(flops[g]) - ref) / ref < 0.05, (g, np.mean(flops[g]), ref)


def test_group_table_and_extremes():
    s = GroupedSampler(W32, seed=0)
    names = [(g.fusion_prob, g.depths) for g in s.groups]
    assert names[0] == (0.1, (2,)) and names[10] == (1.0, (5,))
    assert names[1] == (0.2, (3, 4)) and names[9] == (0.2, (2, 3)) and names[8] == (0.8, (4, 5))
    (a, g), = s.archs_for(10)
    assert g == "largest" and a == W32.largest()
    pose = GroupedSampler(W32, seed=0, pose_rule=True)
    assert pose.groups[0].fusion_prob == 0.0
    (a, _), = pose.archs_for(0)
    assert a == W32.smallest(pose_rule=True)
    assert len(GroupedSampler(W32, sandwich=False).groups) == 9


def test_sequence_is_pure_function_of_seed_and_step():
    a, b = GroupedSampler(W32, seed=5), GroupedSampler(W32, seed=5)
    seq_a = [a.archs_for(t)[0][0].hash for t in range(30)]
    assert seq_a == [b.archs_for(t)[0][0].hash for t in reversed(range(30))][::-1]
    assert seq_a != [GroupedSampler(W32, seed=6).archs_for(t)[0][0].hash for t in range(30)]
    c = GroupedSampler(W32, seed=0)
    c.load_state_dict(a.state_dict())
    assert [c.archs_for(t)[0][0].hash for t in range(30)] == seq_a


def test_cycle_restarts_every_epoch():
    s = GroupedSampler(W32, seed=0, steps_per_cycle=7)
    assert [s.group_index(t) for t in range(9)] == [0, 1, 2, 3, 4, 5, 6, 0, 1]


def test_state_mismatch_is_refused():
    a = GroupedSampler(W32, seed=0)
    with pytest.raises(ScaleNASError, match="sampler"):
        UniformSampler(W32).load_state_dict(a.state_dict())
    with pytest.raises(ScaleNASError, match="settings"):
        GroupedSampler(W32, fusion_options=(0.3,)).load_state_dict(a.state_dict())


def test_uniform_and_sandwich():
    u = UniformSampler(W32, seed=1)
    archs = [u.archs_for(t)[0][0] for t in range(200)]
    edges = np.mean([a.num_edges() / W32.num_edges_available(a) for a in archs])
    assert 0.47 < edges < 0.53
    depths = [d for a in archs for m in a.modules for d in m.depth]
    assert set(depths) == {2, 3, 4, 5}
    s = SandwichSampler(W32, seed=1, num_random=2)
    out = s.archs_for(3)
    assert [g for _, g in out] == ["largest", "smallest", "random", "random"]
    assert out[0][0] == W32.largest() and out[1][0] == W32.smallest()


def test_depth_options_must_be_choices():
    with pytest.raises(ScaleNASError, match="depth_options"):
        GroupedSampler(SearchSpace(depth_choices=(1, 2)), depth_options=[[2, 3]])
