"""HR-NAS's two supernets as presets: built by create_model; analytic params/MACs equal the measured ones.

The measured counts run on the meta device (shapes only), so the full 512x1024 input costs seconds."""
import random

import pytest
import torch

from scalenas.errors import ScaleNASError
from scalenas.nets.hrnas import HRNASNet
from scalenas.nets.measure import hook_count
from scalenas.nets.registry import PRESETS, create_model, get_preset, list_presets
from scalenas.space.hrnas import BlockArch, HRNASArch
from scalenas.space.hrnas_profile import hrnas_profile

pytestmark = pytest.mark.usefixtures("one_thread")

#: analytic (params, MACs) of the supernets; HR-NAS's own seg head (an IR block 270->90 + classifier) is
#: replaced by ours, so these are not HR-NAS's figures (see the README's "HR-NAS space")
EXPECTED = {"hrnas-seg-cityscapes": (8_917_915, 23_170_719_744), "hrnas-keypoint-coco": (8_839_379, 1_933_486_848)}


def _measured(name, arch=None):
    p = get_preset(name)
    with torch.device("meta"):
        net = create_model(name, init="none") if arch is None else HRNASNet(p.space, arch, p.head, init="none")
        x = torch.zeros(1, 3, *p.input_hw)
    return hook_count(net, x), sum(t.numel() for t in net.parameters())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_counts_equal_measured(name):
    p = get_preset(name)
    assert p.family == "hrnas" and name in list_presets("hrnas") and name not in PRESETS
    assert p.arch == p.space.largest()  # the supernet before shrinking
    prof = hrnas_profile(p.space, p.arch, p.head, p.input_hw)
    (params, macs), total = _measured(name)
    assert (prof.params, prof.macs) == EXPECTED[name]
    assert params == total == prof.params
    assert abs(macs - prof.macs) <= 0.005 * prof.macs and macs == prof.macs


def test_random_shrunk_archs_at_preset_size():
    p = get_preset("hrnas-keypoint-coco")
    for seed in range(2):
        rng = random.Random(seed)
        blocks = [BlockArch(tuple(rng.choice([0, rng.randint(1, p.space.max_hidden(sl.cin))])
                                  for _ in p.space.kernel_sizes)) for sl in p.space.slots()]
        arch = HRNASArch.from_blocks(p.space, blocks)
        prof = hrnas_profile(p.space, arch, p.head, p.input_hw)
        (params, macs), total = _measured(p.name, arch)
        assert params == total == prof.params and macs == prof.macs, f"seed {seed}"


def test_scalenas_presets_unchanged_and_family_errors():
    assert "hrnas-seg-cityscapes" not in list_presets()
    with pytest.raises(ScaleNASError, match="fuse_upsample applies to the ScaleNAS family only"):
        create_model("hrnas-seg-cityscapes", fuse_upsample="bilinear")
    with pytest.raises(ScaleNASError, match="hrnas-keypoint-coco"):
        get_preset("no-such-model")
