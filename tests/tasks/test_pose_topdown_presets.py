"""The released ScaleNet-P1..P4 and HRNet-W32/W48 as top-down networks train and evaluate through the
top-down task: their head is the task's head, the built nets hold exactly the effective parameters the
profiler counts (whose published figures tests/space/test_profile_published.py checks), and ScaleNet-P1
runs a training step (forward, JointsMSELoss, backward) on one 256x192 crop and an evaluation."""
import math

import pytest
import torch

from scalenas.data.synth_pose import generate
from scalenas.nets import create_model, get_preset
from scalenas.space import profile
from scalenas.tasks.base import build_task

SPLIT = {"images": "images/{}", "annotations": "annotations/{}.json"}


def _task(root, input_hw):
    return build_task({"name": "pose-topdown", "root": str(root), "keypoints": "coco", "input_hw": list(input_hw),
                       "sigma": 2.0 if input_hw[0] == 256 else 3.0, "workers": 0, "vis_images": 0,
                       "inference": {"batch_size": 4, "flip": False},
                       **{s: {k: v.format(s) for k, v in SPLIT.items()} for s in ("train", "val")}})


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(str(root), train=2, val=1, test=1, size=(256, 256), seed=0)
    return root


@pytest.mark.parametrize("name, head, input_hw", [
    ("scalenet-p1", None, (256, 192)), ("scalenet-p2", None, (256, 192)), ("scalenet-p3", None, (384, 288)),
    ("scalenet-p4", None, (384, 288)), ("hrnet-w32", "pose-topdown", (256, 192)),
    ("hrnet-w48", "pose-topdown", (384, 288))])
def test_presets_are_the_top_down_task_networks(data, name, head, input_hw):
    task = _task(data, input_hw)
    net = create_model(name, head=head)
    assert net.head_spec == task.head and (task.head.kind, task.head.num_joints) == ("pose-topdown", 17)
    if head is None:  # the released models' own input size is the task's recipe size
        assert get_preset(name).input_hw == input_hw
    p = get_preset(name)
    arch = p.space.apply_pose_rule(p.arch) if head else p.arch
    prof = profile(p.space, arch, task.head, input_hw)
    assert sum(x.numel() for x in net.parameters()) == prof.effective_params


def test_scalenet_p1_trains_and_evaluates_through_the_task(data):
    torch.manual_seed(0)
    task = _task(data, (256, 192))
    ds = task.build_dataset("train", train=True)
    batch = task.collate([ds[0]])
    assert batch["image"].shape == (1, 3, 256, 192) and batch["target"].shape == (1, 17, 64, 48)
    net = create_model("scalenet-p1").train()
    out = net(batch["image"])
    assert out.shape == (1, 17, 64, 48)
    loss, parts = task.loss(out, batch)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) > 0
    head_grads = [p.grad for n, p in net.named_parameters() if n.startswith("head")]
    assert head_grads and all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in head_grads)
    metrics = task.evaluate(net.eval(), "val", max_images=1)
    assert 0.0 <= metrics["AP"] <= 100.0
