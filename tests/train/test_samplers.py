
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
    with pytest.warns(UserWarning, match="f0.8_d34, f0.8_d45, f0.2_d23, largest are never trained"):
        s = GroupedSampler(W32, seed=0, steps_per_cycle=7)
    assert [s.group_index(t) for t in range(9)] == [0, 1, 2, 3, 4, 5, 6, 0, 1]


def _tiny_run(run_dir, **sampler):
    """6 images at batch 4 (one step per epoch) in a tiny space whose depth options make 11 groups."""
    from scalenas.train.config import RunConfig

    space = {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
             "stage1_blocks": 1}
    return RunConfig.model_validate({
        "run_dir": str(run_dir), "seed": 1, "space": space,
        "task": {"name": "synthetic-regression", "size": 32, "num_train": 6},
        "sampler": {"depth_options": [[1], [2], [1, 2]], **sampler},
        "train": {"steps": 11, "batch_size": 4, "workers": 0, "ckpt_every": 0, "log_every": 1, "progress": False,
                  "tensorboard": False}})


def test_short_epochs_train_every_group_by_default(tmp_path):
    import json
    import warnings

    from scalenas.train.engine import SupernetTrainer

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default never warns
        tr = SupernetTrainer(_tiny_run(tmp_path / "run"))
    assert tr.steps_per_epoch == 1 and len(tr.sampler.groups) == 11
    tr.train()
    logged = [json.loads(x)["group"] for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert logged == [g.name for g in tr.sampler.groups]  # 11 steps: each group once, in cycle order


def test_per_epoch_restart_warns_on_short_epochs(tmp_path):
    from scalenas.train.engine import SupernetTrainer

    with pytest.warns(UserWarning, match=r"an epoch has 1 step\(s\), fewer than the 11 sampling groups.*"
                                         r"restart_every_epoch=false"):
        tr = SupernetTrainer(_tiny_run(tmp_path / "run", restart_every_epoch=True))
    assert {tr.sampler.archs_for(t)[0][1] for t in range(30)} == {"smallest"}


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


def test_fixed_sampler_trains_its_arch_alone(tmp_path):
    """Stand-alone training through the engine: only the fixed arch's weights move; the others keep
    the supernet's initialisation. The config must name the arch; resuming with another is refused."""
    import torch

    from scalenas.train.engine import SupernetTrainer
    from scalenas.train.samplers import FixedSampler

    space = SearchSpace(width=8, modules_per_stage=(1, 1, 1), depth_choices=(1, 2), stem_channels=16,
                        stage1_blocks=1)
    arch = space.smallest()
    cfg = _tiny_run(tmp_path / "run", kind="fixed", arch=arch.to_dict())
    tr = SupernetTrainer(cfg)
    assert [a for a, _ in tr.sampler.archs_for(0)] == [arch] == [a for a, _ in tr.sampler.archs_for(7)]
    before = {k: v.clone() for k, v in tr.net.state_dict().items()}
    tr.train()
    tr.close()
    moved = {k for k, v in tr.net.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])}
    untouched = {n for n, _ in tr.net.named_parameters() if n not in moved}
    assert moved and untouched  # the smallest subnet's weights trained, the rest untouched
    with pytest.raises(ScaleNASError, match="sampler.arch"):
        SupernetTrainer(_tiny_run(tmp_path / "other", kind="fixed"))
    with pytest.raises(ScaleNASError, match="settings"):
        FixedSampler(space, space.largest()).load_state_dict(FixedSampler(space, arch).state_dict())
