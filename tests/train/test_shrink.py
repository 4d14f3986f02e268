"""The shrink search (HR-NAS's progressive shrinking): penalty, removal with the optimiser state, the
FLOPs target, exact resume, config errors."""
import os

import pytest
import torch

from scalenas.config import validate_section
from scalenas.errors import ScaleNASError
from scalenas.nets.hrnas import HRNASNet, prunable_units
from scalenas.space.hrnas import HRNASSpace
from scalenas.space.hrnas_profile import hrnas_profile
from scalenas.train.shrink import (ShrinkRunConfig, ShrinkTrainer, l1_penalty, penalty_normaliser, plan_keep,
                                   rho_at)

#: HR-NAS's layout at tiny widths, one block per branch (as tests/nets/test_hrnas_net.py)
TINY = {"family": "hrnas", "stem_channels": [8, 8], "expand_ratio": 2,
        "stages": [[[1], [8]], [[1, 1], [6, 12]], [[1, 1, 1], [6, 12, 24]], [[1, 1, 1, 1], [6, 12, 24, 48]]]}
START_MACS = 2_287_680  # TINY's largest arch with the synthetic task's seg head (4 classes) at 32x32


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def shrink_cfg(run_dir, steps=12, shrink=None, **train) -> ShrinkRunConfig:
    t = {"steps": steps, "batch_size": 4, "workers": 0, "optimizer": {"lr": 0.05}, "ckpt_every": 4,
         "progress": False, "tensorboard": False, "channels_last": False}
    t.update(train)
    s = {"rho": 2.0, "warmup_steps": 2, "threshold": 0.1, "step_gflops": 1e-5, "target_gflops": 0.0016,
         "check_every": 2}
    s.update(shrink or {})
    return validate_section(ShrinkRunConfig, {
        "run_dir": str(run_dir), "seed": 1, "space": TINY, "train": t, "shrink": s,
        "task": {"name": "synthetic-regression", "size": 32, "num_train": 32}})


def test_penalty_on_a_hand_case():
    space = HRNASSpace.from_dict(TINY)
    net = HRNASNet(space, space.largest(), "seg")
    units = prunable_units(net, (32, 32))
    for u in units:
        u.bn.weight.data.zero_()
    a, b = units[0], units[5]
    a.bn.weight.data[:3] = torch.tensor([0.5, -1.0, 2.0])
    b.bn.weight.data[0] = -0.25
    # first slot: the stage-0 fuse block 8 -> 8 at 1/4 (8x8 pixels); its k3 path's channel costs 8*64 + (9 + 8)*64
    assert a.channel_macs == 8 * 64 + 17 * 64
    norm = 1000.0
    want = (a.channel_macs * 3.5 + b.channel_macs * 0.25) / norm
    assert float(l1_penalty(units, norm).detach()) == pytest.approx(want, rel=1e-6)
    # the normaliser is the channel-weighted mean cost of the starting network
    n = sum(u.hidden for u in units)
    assert penalty_normaliser(space, (32, 32)) == pytest.approx(sum(u.hidden * u.channel_macs for u in units) / n)
    assert [rho_at(t, 0.4, 4) for t in (0, 1, 2, 4, 9)] == [0.0, 0.1, 0.2, 0.4, 0.4]
    assert rho_at(0, 0.4, 0) == 0.4


def test_plan_keeps_the_target():
    space = HRNASSpace.from_dict(TINY)
    net = HRNASNet(space, space.largest(), "seg")
    units = prunable_units(net, (32, 32))
    for u in units:
        u.bn.weight.data.fill_(1.0)
    u = units[2]
    u.bn.weight.data[:4] = torch.tensor([0.0, 0.003, 0.001, 0.002])
    keep, saved = plan_keep(units, 0.01, excess_macs=1e12)
    assert saved == 4 * u.channel_macs and keep[u.key].tolist()[:5] == [False] * 4 + [True]
    # with less to remove than the candidates hold: the smallest |gamma| first, until the excess is covered
    keep, saved = plan_keep(units, 0.01, excess_macs=1.5 * u.channel_macs)
    assert saved == 2 * u.channel_macs and keep[u.key].tolist()[:4] == [False, True, False, True]


def test_shrink_removes_channels_and_keeps_training(tmp_path):
    # a target far below: every zero-gamma channel goes (the cap of the target plays no part here)
    tr = ShrinkTrainer(shrink_cfg(tmp_path / "r", steps=20, shrink={"rho": 0.0, "target_gflops": 0.0007}))
    try:
        tr._start_steps()
        it = iter(tr._loader())
        for _ in range(3):
            tr.train_step(it)
        before = tr.macs()
        for u in tr.units[::3]:  # a third of the units lose half their channels
            u.bn.weight.data[::2] = 0.0
        old = {n: tr.optimizer.state[p]["momentum_buffer"].clone() for n, p in tr.net.named_parameters()}
        gamma = {n: p.detach().abs().clone() for n, p in tr.net.named_parameters() if n.endswith("dw.1.weight")}
        ev = tr.check(force=True)
        assert ev is not None and ev["macs_after"] < before and tr.macs() == ev["macs_after"]
        assert tr.macs() == hrnas_profile(tr.space, tr.net.arch, tr.head, (32, 32)).macs
        params = list(tr.net.parameters())
        assert tr.optimizer.param_groups[0]["params"] == params
        for n, p in tr.net.named_parameters():
            buf = tr.optimizer.state[p]["momentum_buffer"]
            assert buf.shape == p.shape
            if n in gamma:  # the kept channels' momentum followed them
                assert torch.equal(buf, old[n][gamma[n] > tr.cfg.shrink.threshold])
        for _ in range(3):
            rec = tr.train_step(it)
            assert torch.isfinite(torch.tensor(rec["loss"]))
    finally:
        tr.close()


def test_target_reached_within_tolerance(tmp_path):
    cfg = shrink_cfg(tmp_path / "r", steps=16, shrink={"after_target": "stop"}, ckpt_every=0)
    tr = ShrinkTrainer(cfg)
    try:
        out = tr.train()
        target = cfg.shrink.target_gflops * 1e9
        assert tr.reached and out["steps"] < 16  # stopped at the target
        assert target * 0.95 <= tr.macs() <= target * 1.05 and tr.macs() < START_MACS
    finally:
        tr.close()


def test_kill_and_resume_is_exact(tmp_path):
    full = ShrinkTrainer(shrink_cfg(tmp_path / "a", steps=10, shrink={"target_gflops": 0.0008}))
    try:
        full.train()
        assert len(full.events) >= 2 and full.events[0]["step"] <= 4 < full.events[-1]["step"]
        want = {k: v.clone() for k, v in full.net.state_dict().items()}
        want_arch = full.net.arch
    finally:
        full.close()
    killed_at = str(tmp_path / "a" / "checkpoints" / "step_00000004.pt")  # a shrunk net, mid-run
    again = ShrinkTrainer(shrink_cfg(tmp_path / "b", steps=10, shrink={"target_gflops": 0.0008}), resume=killed_at)
    try:
        assert again.step == 4 and again.net.arch != again.space.largest()
        again.train()
        assert again.net.arch == want_arch
        got = again.net.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    finally:
        again.close()
    # a changed shrink setting would not be the run the checkpoint continues: refused, naming the key
    with pytest.raises(ScaleNASError, match=r"shrink\.rho is 1\.0 in the config but 2\.0 in the checkpoint"):
        ShrinkTrainer(shrink_cfg(tmp_path / "c", steps=10, shrink={"target_gflops": 0.0008, "rho": 1.0}),
                      resume=killed_at)


@pytest.mark.parametrize("patch, key", [
    ({"shrink": {"target_gflops": 0.0016, "rho": -1}}, "shrink.rho"),
    ({"shrink": {"target_gflops": 0.0016, "check_evry": 3}}, "shrink.check_evry"),
    ({"shrink": {}}, "shrink.target_gflops"),
    ({"shrink": {"target_gflops": 0.0016, "warmup_steps": 3, "warmup_epochs": 1}}, "shrink.warmup_steps"),
    ({"space": {**TINY, "kernel_sizes": [3, 4]}, "shrink": {"target_gflops": 0.0016}}, "space.kernel_sizes"),
    ({"train": {"distill": {"teacher": "largest"}}, "shrink": {"target_gflops": 0.0016}}, "train.distill.teacher"),
])
def test_config_errors_name_the_key(patch, key):
    data = {"space": TINY, **patch}
    with pytest.raises(ScaleNASError) as e:
        validate_section(ShrinkRunConfig, data)
    assert key in str(e.value) and "\n" not in str(e.value)


def test_unreachable_target_is_refused(tmp_path):
    with pytest.raises(ScaleNASError, match=r"^shrink.target_gflops: 5.0 is outside"):
        ShrinkTrainer(shrink_cfg(tmp_path / "r", shrink={"target_gflops": 5.0}))


@pytest.mark.parametrize("name, hw", [("hrnas_seg_synth", (64, 64)), ("hrnas_seg_cityscapes", (512, 1024))])
def test_shipped_configs_validate_and_their_targets_are_reachable(name, hw):
    from scalenas.config import load_config
    from scalenas.space.heads import HeadSpec
    from scalenas.space.hrnas import BlockArch, HRNASArch

    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
    cfg = validate_section(ShrinkRunConfig, load_config(os.path.join(root, f"{name}.yaml")))
    space, head = cfg.space.build(), HeadSpec(kind="seg", num_classes=19)
    empty = HRNASArch.from_blocks(space, [BlockArch((0, 0, 0)) for _ in space.slots()])
    lo, hi = (hrnas_profile(space, a, head, hw).macs / 1e9 for a in (empty, space.largest()))
    assert lo < cfg.shrink.target_gflops < hi and cfg.shrink.gflops_convention == "1e9"
