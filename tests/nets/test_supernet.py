"""SuperScaleNet: set_active(a) and extract(a) compute the same function and the same gradients."""
import random

import pytest
import torch

from scalenas.nets import ScaleNet, get_preset
from scalenas.nets.supernet import SuperScaleNet
from scalenas.space import SearchSpace

# The paper's module structure and depth choices at a tiny width, so every preset is a valid point;
# the 100 random architectures come from a 3-module space with the same depth choices (cheaper to build).
SPACE = SearchSpace(width=4, stem_channels=8, stage1_blocks=1)
SMALL = SearchSpace(width=4, modules_per_stage=(1, 1, 1), stem_channels=8, stage1_blocks=1)
PRESETS = ["scalenet-s1", "scalenet-s2", "scalenet-s3", "scalenet-s4", "scalenet-p1", "scalenet-p2",
           "scalenet-p3", "scalenet-p4"]


def _special(pose: bool):
    archs = [SPACE.largest(pose), SPACE.smallest(pose), SPACE.hrnet(pose)]
    return archs + [get_preset(n).arch for n in PRESETS if (n.startswith("scalenet-p")) == pose]


def _random(pose: bool, n: int = 50):
    rng = random.Random(7 if pose else 3)
    return [SMALL.largest(pose), SMALL.smallest(pose), SMALL.hrnet(pose)] + [
        SMALL.sample(rng, rng.choice([0.1, 0.5, 0.9]), pose_rule=pose) for _ in range(n)]


def _maxdiff(a, b):
    if isinstance(a, tuple):
        return max(_maxdiff(x, y) for x, y in zip(a, b))
    return (a - b).abs().max().item()


def _sum(out):
    return sum(o.square().mean() for o in out) if isinstance(out, tuple) else out.square().mean()


@pytest.mark.parametrize("space_kind", ["paper-structure", "small"])
@pytest.mark.parametrize("head", ["seg", "pose-bottomup"])
def test_set_active_equals_extract(head, space_kind):
    """50 random archs per head (100 in all) plus largest, smallest, hrnet and the presets."""
    space = SPACE if space_kind == "paper-structure" else SMALL
    sn = SuperScaleNet(space, head)
    x = torch.randn(2, 3, 32, 32)
    pose = sn.head_spec.pose_rule
    for arch in (_special(pose) if space is SPACE else _random(pose)):
        sn.set_active(arch)
        net = sn.extract(arch)
        sn.eval(), net.eval()
        with torch.no_grad():
            assert _maxdiff(sn(x), net(x)) <= 1e-5, arch.hash
        # train mode on the same batch: same outputs and same gradients of the shared parameters
        sn.train(), net.train()
        sn.zero_grad(set_to_none=True)
        _sum(sn(x)).backward()
        _sum(net(x)).backward()
        sp = dict(sn.named_parameters())
        mine = list(net.named_parameters())
        # dead compute (pose M7 blocks after branch 0's last fusion) has no gradient in either net
        assert [sp[n].grad is None for n, _ in mine] == [p.grad is None for _, p in mine]
        g_super = torch.cat([sp[n].grad.flatten() for n, p in mine if p.grad is not None])
        g_static = torch.cat([p.grad.flatten() for _, p in mine if p.grad is not None])
        torch.testing.assert_close(g_super, g_static, atol=1e-5, rtol=1e-4)
        used = {n for n, _ in net.named_parameters()}
        for name, p in sp.items():
            if name not in used:
                assert p.grad is None, f"inactive {name} got a gradient"


def test_extract_copies_bn_statistics_and_is_independent():
    sn = SuperScaleNet(SPACE, "seg")
    arch = SPACE.sample(random.Random(1), 0.5)
    sn.set_active(arch).train()
    sn(torch.randn(2, 3, 64, 64))  # move running stats away from their init
    net = sn.extract(arch)
    ssd = sn.state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(v, ssd[k]), k
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    assert not torch.equal(next(net.parameters()), next(sn.parameters()))


def test_set_active_allocates_nothing():
    sn = SuperScaleNet(SPACE, "seg")
    before = {k: v.data_ptr() for k, v in sn.state_dict().items()}
    n_modules = len(list(sn.modules()))
    for i in range(20):
        sn.set_active(SPACE.sample(random.Random(i), 0.5))
    assert len(list(sn.modules())) == n_modules
    assert {k: v.data_ptr() for k, v in sn.state_dict().items()} == before


def test_supernet_holds_every_slot_and_edge():
    sn = SuperScaleNet(SPACE, "seg")
    for m, nb in enumerate(SPACE.module_branches):
        stage = sn.stages[m]
        assert [len(b) for b in stage.blocks] == [SPACE.max_depth] * nb
        assert len(stage.fuse) == SPACE.max_depth
        assert all(len(step) == nb * (nb - 1) for step in stage.fuse)


@pytest.mark.parametrize("head", ["pose-topdown", "pose-bottomup"])
def test_extracted_pose_net_has_no_dead_parameters(head):
    """A pose head reads branch 0 only: the extracted net holds no block or edge that runs after
    branch 0's last fusion, every parameter gets a gradient, and it still equals the supernet."""
    sn = SuperScaleNet(SPACE, head)
    x = torch.randn(2, 3, 32, 32)
    rng = random.Random(11)
    p1 = get_preset("scalenet-p1").arch
    archs = [p1, SPACE.largest(True)] + [SPACE.sample(rng, 0.5, pose_rule=True) for _ in range(2)]
    for arch in archs:
        sn.set_active(arch)
        net = sn.extract(arch)
        sn.eval(), net.eval()
        with torch.no_grad():
            assert _maxdiff(sn(x), net(x)) <= 1e-5, arch.hash
        net.train().zero_grad(set_to_none=True)
        _sum(net(x)).backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and bool(p.grad.ne(0).any()), f"{arch.hash}: {name} is dead compute"
    names = [n for n, _ in ScaleNet(SPACE, p1, head, init="none").named_parameters()]
    assert any(n.startswith("stages.7.blocks.1.2.") for n in names)  # branch 1's live blocks and edges stay
    assert any(n.startswith("stages.7.fuse.0.1_3.") for n in names) and any(n.startswith("stages.7.fuse.2.0_3.")
                                                                             for n in names)
    assert not any(n.startswith(("stages.7.blocks.1.3.", "stages.7.fuse.2.1_3.")) for n in names)
    assert not any(n.startswith(("stages.7.blocks.1.3.", "stages.7.fuse.2.1_3."))
                   for n, _ in sn.extract(p1).named_parameters())
    # the supernet still has every slot
    assert {"stages.7.blocks.1.3.conv1.weight", "stages.7.fuse.2.1_3.ops.0.0.weight"} <= set(sn.state_dict())


def test_seg_net_keeps_every_slot_of_its_arch():
    arch = get_preset("scalenet-s1").arch
    net = ScaleNet(SPACE, arch, "seg", init="none")
    for m, ma in enumerate(arch.modules):
        assert [len(b) for b in net.stages[m].blocks] == list(ma.depth)
        assert sum(len(step) for step in net.stages[m].fuse) == ma.num_edges()
