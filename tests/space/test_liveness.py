"""Liveness: which blocks and fusion edges reach the head, and the effective figures built on it."""
import random

from scalenas.nets import get_preset
from scalenas.space import SearchSpace, profile
from scalenas.space.arch import make_module
from scalenas.space.liveness import all_live, head_reads, liveness, module_liveness


def _all_edges(ma):
    return {(s, j, k) for j in range(ma.num_branches) for s in range(ma.depth[j]) for k in ma.inputs(j, s)}


def test_scalenet_p1_dead_parts():
    p = get_preset("scalenet-p1")
    live = liveness(p.arch, p.head)
    last = p.arch.modules[-1]
    assert last.depth == (3, 4, 3, 3) and live[-1].depth == (3, 3, 3, 3)  # stages.7.blocks.1.3 is dead
    assert _all_edges(last) - live[-1].edges == {(2, 1, 3)}  # stages.7.fuse.2.1_3 is dead
    assert all(lv.depth == ma.depth and lv.edges == _all_edges(ma) for ma, lv in zip(p.arch.modules[:-1], live[:-1]))
    prof = profile(p.space, p.arch, p.head, p.input_hw)
    assert prof.effective_params < prof.params and prof.effective_macs < prof.macs


def test_read_set_decides_what_is_dead():
    # branch 0 ends at step 1 and reads branches 1 and 2 there; branch 2 fuses branch 1 at step 2
    ma = make_module([2, 3, 4], [["111", "111"], ["010", "011", "110"], ["001", "001", "011", "001"]])
    pose = module_liveness(ma, head_reads("pose-topdown", 3))
    assert pose.depth == (2, 2, 2) and pose.reads == (True, True, True)
    # branch 0 reads branch 1 before branch 1's step-1 fusion, so that fusion (edge 2 -> 1) is dead
    assert pose.edges == {(0, 0, 1), (0, 0, 2), (1, 0, 1), (1, 0, 2)}
    assert pose.fuses(1, 0) and not pose.fuses(1, 1) and not pose.fuses(2, 2)
    # reading only branch 2: branch 0 is dead from its input on; branch 1 lives to its end, which
    # branch 2 fuses at step 2
    only2 = module_liveness(ma, (False, False, True))
    assert only2.depth == (0, 3, 4) and only2.reads == (False, True, True)
    assert only2.edges == {(2, 2, 1), (1, 1, 2)}
    # reading everything keeps everything
    full = all_live(ma)
    assert full.depth == ma.depth and full.edges == _all_edges(ma)


def test_seg_nets_have_no_dead_compute():
    space = SearchSpace(width=32)
    rng = random.Random(0)
    for arch in [space.largest(), space.smallest(), space.hrnet()] + [space.sample(rng, 0.5) for _ in range(20)]:
        assert all(lv.depth == ma.depth and lv.edges == _all_edges(ma)
                   for ma, lv in zip(arch.modules, liveness(arch, "seg")))
        prof = profile(space, arch, "seg", (256, 512))
        assert (prof.effective_params, prof.effective_macs) == (prof.params, prof.macs)


def test_pose_dead_compute_is_only_after_branch_0_ends():
    space = SearchSpace(width=32)
    rng = random.Random(1)
    n_dead = 0
    for _ in range(30):
        arch = space.sample(rng, 0.5, pose_rule=True)
        live = liveness(arch, "pose-bottomup")
        assert all(all(lv.reads) for lv in live)  # every branch feeds branch 0's last fusion
        last, lv = arch.modules[-1], live[-1]
        d0 = last.depth[0]
        assert lv.depth == tuple(min(d, d0) for d in last.depth)
        assert lv.edges == {(s, j, k) for s, j, k in _all_edges(last) if s < d0 - 1 or (s == d0 - 1 and j == 0)}
        prof = profile(space, arch, "pose-bottomup", (256, 256))
        dead = prof.params - prof.effective_params
        assert (dead > 0) == (lv.depth != last.depth or lv.edges != _all_edges(last))
        n_dead += dead > 0
    assert n_dead > 10  # most random archs carry some


def test_profile_to_dict_has_both_conventions():
    p = get_preset("scalenet-p2")
    d = profile(p.space, p.arch, p.head, p.input_hw).to_dict()
    assert d["effective_params"] < d["params"] and d["effective_gflops_2p30"] < d["gflops_2p30"]
    assert round(d["params_m"], 1) == 35.6 and round(d["gflops_2p30"], 1) == 8.0  # published ScaleNet-P2
