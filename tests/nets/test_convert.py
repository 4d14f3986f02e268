"""HRNet-family checkpoint import: key lists of the real networks, and numerical equality with an
independent functional HRNet that reads the ORIGINAL key names."""
import importlib.util
import json
import os
import re

import pytest
import torch
import torch.nn.functional as F

from scalenas.errors import ScaleNASError
from scalenas.nets import ScaleNet, get_preset
from scalenas.nets.convert import DEAD, convert_hrnet_state_dict, format_report, load_hrnet_checkpoint
from scalenas.space import Arch, SearchSpace, profile
from scalenas.space.arch import make_module

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data")


def _keys_module():
    spec = importlib.util.spec_from_file_location("hrnet_keys", os.path.join(DATA, "hrnet_keys.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


H = _keys_module()


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the published networks' key lists ---------------------------------------------------------------

@pytest.mark.parametrize("fname,preset,upsample", [("hrnetv2_w48_seg_keys.json", "hrnet-w48", "bilinear"),
                                                   ("higher_hrnet_w32_keys.json", "higher-hrnet-w32", "nearest")])
def test_published_key_lists_load_completely(fname, preset, upsample):
    with open(os.path.join(DATA, fname)) as f:
        doc = json.load(f)
    p = get_preset(preset)
    space = SearchSpace.from_dict({**p.space.to_dict(), "fuse_upsample": upsample})
    # Shape-only tensors: the conversion is pure key/shape logic (real values are checked at W8 below).
    sd = {f"module.{k}": torch.empty(v, device="meta") for k, v in doc["keys"].items()}
    new_sd, rep = convert_hrnet_state_dict(sd, space, p.head)
    assert rep.ok, format_report(rep)
    assert not rep.ignored and rep.stripped_prefixes == ["module."]
    assert len(new_sd) == len(doc["keys"])
    # The key list is the published network: its parameter count is our analytic count of the preset...
    assert doc["num_params"] == profile(p.space, p.arch, p.head, p.input_hw).params
    # ...and the generator file still describes exactly what is stored.
    assert {k: list(v) for k, v in H.hrnet_keys(doc["width"], doc["head"]).items()} == doc["keys"]


def test_hrnet_seg_key_list_matches_the_published_log_count():
    # HRNet-Seg's master log prints 65,773,843 params: its InPlaceABNSync BNs are not counted by
    # get_model_summary. Dropping BN affine params from our key list gives exactly that number.
    with open(os.path.join(DATA, "hrnetv2_w48_seg_keys.json")) as f:
        keys = json.load(f)["keys"]
    assert H.num_params(keys, include_bn=False) == 65_773_843


# ---- an independent functional HRNet, written from the original key names -----------------------------

def _random_state_dict(keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn = {k.rsplit(".", 1)[0] for k in keys if k.endswith("running_mean")}
    sd = {}
    for k, shape in keys.items():
        mod, leaf = k.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            sd[k] = torch.tensor(7)
        elif mod in bn and leaf in ("weight", "running_var"):
            sd[k] = 0.3 + 0.4 * torch.rand(shape, generator=g, dtype=torch.float64)
        elif mod in bn or leaf == "bias":
            sd[k] = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            fan_in = torch.Size(shape[1:]).numel()
            sd[k] = torch.randn(shape, generator=g, dtype=torch.float64) / fan_in**0.5
    return sd


class RefHRNet:
    """HRNet forward pass straight from the original state-dict names (eval-mode BN)."""

    def __init__(self, sd, upsample):
        self.sd, self.upsample = sd, upsample

    def conv(self, x, p, stride=1):
        w = self.sd[f"{p}.weight"]
        return F.conv2d(x, w, self.sd.get(f"{p}.bias"), stride, w.shape[-1] // 2)

    def bn(self, x, p):
        s = self.sd
        return F.batch_norm(x, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"], s[f"{p}.bias"],
                            False, 0.0, 1e-5)

    def count(self, prefix):
        """Number of children i with keys 'prefix.i.*'."""
        n = 0
        while any(k.startswith(f"{prefix}.{n}.") for k in self.sd):
            n += 1
        return n

    def basic(self, x, p):
        out = F.relu(self.bn(self.conv(x, f"{p}.conv1"), f"{p}.bn1"))
        return F.relu(self.bn(self.conv(out, f"{p}.conv2"), f"{p}.bn2") + x)

    def bottleneck(self, x, p):
        out = F.relu(self.bn(self.conv(x, f"{p}.conv1"), f"{p}.bn1"))
        out = F.relu(self.bn(self.conv(out, f"{p}.conv2"), f"{p}.bn2"))
        out = self.bn(self.conv(out, f"{p}.conv3"), f"{p}.bn3")
        res = x if f"{p}.downsample.0.weight" not in self.sd else self.bn(self.conv(x, f"{p}.downsample.0"),
                                                                          f"{p}.downsample.1")
        return F.relu(out + res)

    def fuse_op(self, x, p, i, j, like):
        if j > i:
            z = self.bn(self.conv(x, f"{p}.0"), f"{p}.1")
            if self.upsample == "nearest":
                return F.interpolate(z, scale_factor=2 ** (j - i), mode="nearest")
            return F.interpolate(z, size=like.shape[-2:], mode="bilinear", align_corners=False)
        for t in range(i - j):
            x = self.bn(self.conv(x, f"{p}.{t}.0", 2), f"{p}.{t}.1")
            if t < i - j - 1:
                x = F.relu(x)
        return x

    def hr_module(self, xs, p):
        nb = len(xs)
        xs = list(xs)
        for i in range(nb):
            for b in range(self.count(f"{p}.branches.{i}")):
                xs[i] = self.basic(xs[i], f"{p}.branches.{i}.{b}")
        out = []
        for i in range(self.count(f"{p}.fuse_layers")):
            y = xs[i]
            for j in range(nb):
                if j != i:
                    y = y + self.fuse_op(xs[j], f"{p}.fuse_layers.{i}.{j}", i, j, xs[i])
            out.append(F.relu(y))
        return out

    def backbone(self, x):
        x = F.relu(self.bn(self.conv(x, "conv1", 2), "bn1"))
        x = F.relu(self.bn(self.conv(x, "conv2", 2), "bn2"))
        for b in range(self.count("layer1")):
            x = self.bottleneck(x, f"layer1.{b}")
        xs = [F.relu(self.bn(self.conv(x, "transition1.0.0"), "transition1.0.1")),
              F.relu(self.bn(self.conv(x, "transition1.1.0.0", 2), "transition1.1.0.1"))]
        for stage in (2, 3, 4):
            if stage > 2:
                t = f"transition{stage - 1}.{stage - 1}.0"
                xs = xs + [F.relu(self.bn(self.conv(xs[-1], f"{t}.0", 2), f"{t}.1"))]
            for n in range(self.count(f"stage{stage}")):
                xs = self.hr_module(xs, f"stage{stage}.{n}")
        return xs

    def forward(self, x, head):
        xs = self.backbone(x)
        if head == "seg":
            ups = [xs[0]] + [F.interpolate(y, size=xs[0].shape[-2:], mode="bilinear", align_corners=False)
                             for y in xs[1:]]
            z = F.relu(self.bn(self.conv(torch.cat(ups, 1), "last_layer.0"), "last_layer.1"))
            return self.conv(z, "last_layer.3")
        if head == "pose":
            return self.conv(xs[0], "final_layer")
        # HigherHRNet: 1/4 heatmaps+tags, concat, deconv to 1/2, 4 BasicBlocks, 1/2 heatmaps
        y0 = self.conv(xs[0], "final_layers.0")
        z = F.conv_transpose2d(torch.cat([xs[0], y0], 1), self.sd["deconv_layers.0.0.0.weight"], None, 2, 1, 0)
        z = F.relu(self.bn(z, "deconv_layers.0.0.1"))
        for b in range(1, self.count("deconv_layers.0")):
            z = self.basic(z, f"deconv_layers.0.{b}.0")
        return y0, self.conv(z, "final_layers.1")


def _close(a, b):
    return torch.allclose(a, b, rtol=1e-9, atol=1e-9 * float(b.abs().max()))


HEADS = {"seg": ("seg", "bilinear"), "higher": ("pose-bottomup", "nearest"), "pose": ("pose-topdown", "nearest")}


@pytest.mark.parametrize("src", ["seg", "higher", "pose"])
def test_converted_net_equals_original_forward(src):
    head, upsample = HEADS[src]
    keys = H.hrnet_keys(8, src)  # W8; stem 64 and 4 Bottlenecks as in the original layout
    sd = _random_state_dict(keys)
    space = SearchSpace(width=8, fuse_upsample=upsample)
    new_sd, rep = convert_hrnet_state_dict({f"model.{k}": v for k, v in sd.items()}, space, head)
    assert rep.ok and not rep.ignored, format_report(rep)
    net = ScaleNet(space, space.hrnet(pose_rule=head != "seg"), head, init="none").double().eval()
    net.load_state_dict(new_sd, strict=True)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ours = net(x)
    ref = RefHRNet(sd, upsample).forward(x, src)
    if src == "higher":
        assert ours[0].shape == ref[0].shape and ours[1].shape == ref[1].shape
        assert _close(ours[0], ref[0]) and _close(ours[1], ref[1])
    else:
        assert ours.shape == ref.shape
        assert _close(ours, ref)


def _float32_exact(sd):
    """The state dict rounded to float32 values (still float64): a float32 model then holds exactly it."""
    return {k: v.float().double() if v.is_floating_point() else v for k, v in sd.items()}


def test_hrnet_seg_weights_import_exactly_by_preset_name():
    # HRNet-Seg (master, pytorch-v1.1) fuses with bilinear interpolation, align_corners=False; the preset
    # fuses with nearest. Importing by name must build the preset with HRNet-Seg's fusion.
    sd = _float32_exact(_random_state_dict(H.hrnet_keys(18, "seg")))
    net, rep = load_hrnet_checkpoint("hrnet-w18", {f"model.{k}": v for k, v in sd.items()})
    assert rep.ok and rep.family == "hrnet-seg", format_report(rep)
    assert rep.source_upsample == rep.model_upsample == net.space.fuse_upsample == "bilinear"
    assert "fusion upsampling: model bilinear (align_corners=False)" in format_report(rep)
    assert not net.training
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        ours = net.double()(x)
    ref = RefHRNet(sd, "bilinear").forward(x, "seg")
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    # The same weights under nearest fusion are a different function (what the old import returned).
    with torch.no_grad():
        nearest = RefHRNet(sd, "nearest").forward(x, "seg")
    assert (nearest - ref).abs().max() > 1e-2 * ref.abs().max()


def test_fusion_mismatch_refuses_or_is_reported():
    sd = _random_state_dict(H.hrnet_keys(8, "seg"))
    space = SearchSpace(width=8)  # nearest fusion, HRNet-Seg weights
    with torch.device("meta"):
        net = ScaleNet(space, space.hrnet(), "seg", init="none")
    with pytest.raises(ScaleNASError, match=r"hrnet-seg weights fuse with bilinear \(align_corners=False\) "
                                            r"upsampling but the model fuses with nearest"):
        load_hrnet_checkpoint(net, sd)
    net = ScaleNet(space, space.hrnet(), "seg", init="none").double()
    net, rep = load_hrnet_checkpoint(net, sd, strict=False)
    assert rep.fusion_mismatch and not rep.ok and not (rep.missing or rep.unexpected or rep.mismatched)
    assert any("outputs differ" in n for n in rep.notes) and "MISMATCH" in format_report(rep)
    # Families that fuse with nearest load into a nearest model; a bare backbone's fusion is unknown.
    higher = _random_state_dict(H.hrnet_keys(8, "higher"))
    _, rep = convert_hrnet_state_dict(higher, space, "pose-bottomup")
    assert rep.ok and rep.source_upsample == "nearest"


def test_supernet_init_from_hrnet_keeps_a_small_report(tmp_path):
    from scalenas.nets.pretrained import init_supernet_from
    from scalenas.nets.supernet import SuperScaleNet

    keys = H.hrnet_keys(8, "seg")
    path = tmp_path / "hrnet_w8_seg.pth"
    torch.save({"state_dict": {f"model.{k}": v.float() for k, v in _random_state_dict(keys).items()}}, path)
    sn = SuperScaleNet(SearchSpace(width=8, fuse_upsample="bilinear"), "seg", init="none")
    report = init_supernet_from(sn, str(path))
    conv = report["conversion"]
    assert report["loaded"] == len(keys) and conv["loaded"] == len(keys) and conv["ok"]
    assert conv["missing"] == conv["unexpected"] == conv["mismatched"] == 0
    assert len(json.dumps(report)) < 2000  # a summary, not the ~1,800 key names of a W48 conversion


def test_imagenet_checkpoint_file_loads_backbone(tmp_path):
    keys = H.hrnet_keys(8, "cls")
    sd = _random_state_dict(keys)
    path = tmp_path / "hrnet_w8_imagenet.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    space = SearchSpace(width=8)
    net = ScaleNet(space, space.hrnet(), "seg", init="none").double()
    net, rep = load_hrnet_checkpoint(net, path, strict=False)  # an initialisation: no head, no exactness
    assert rep.family == "hrnet-cls" and not rep.unexpected and not rep.mismatched
    assert rep.missing and all(k.startswith("head.") for k in rep.missing)
    assert set(rep.ignored.values()) == {"ImageNet classification head"}
    assert "classifier.weight" in rep.ignored
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ours = net.eval().backbone(x)
    ref = RefHRNet(sd, "nearest").backbone(x)
    assert all(_close(a, b) for a, b in zip(ours, ref))
    with pytest.raises(ScaleNASError, match=r"does not match the model exactly \(\d+ missing, 0 unexpected"):
        load_hrnet_checkpoint(net, path)
    text = format_report(rep)
    assert "missing" in text and "ImageNet classification head" in text


class Config:  # an arbitrary object in a checkpoint: weights_only loading must refuse it
    pass


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": {}, "cfg": Config()}, path)
    space = SearchSpace(width=8)
    with torch.device("meta"):
        net = ScaleNet(space, space.hrnet(), "seg", init="none")
    with pytest.raises(ScaleNASError, match=r"bad\.pth: refused: the file needs the global "
                                            r"'[\w.]*test_convert\.Config', which is not on the safe list"):
        load_hrnet_checkpoint(net, path)
    with pytest.raises(ScaleNASError, match="not found"):
        load_hrnet_checkpoint(net, tmp_path / "nope.pth")


def test_shape_mismatch_and_unexpected_are_reported():
    keys = H.hrnet_keys(8, "seg")
    sd = {k: torch.empty(v, device="meta") for k, v in keys.items()}
    sd["stage5.0.branches.0.0.conv1.weight"] = torch.empty(8, 8, 3, 3, device="meta")
    _, rep = convert_hrnet_state_dict(sd, SearchSpace(width=16), "seg")  # W8 checkpoint into a W16 model
    assert rep.mismatched and not rep.ok
    assert "stage5.0.branches.0.0.conv1.weight" in rep.unexpected
    assert "shape mismatches" in format_report(rep)


def test_pose_weights_of_dead_blocks_are_ignored_not_unexpected():
    # HigherHRNet W8 into an arch whose last module ends branch 0 at step 3 of 4: the other branches'
    # 4th blocks never reach the head, the net does not build them, and the report says so.
    keys = H.hrnet_keys(8, "higher")
    sd = {k: torch.empty(v, device="meta") for k, v in keys.items()}
    space = SearchSpace(width=8)
    hr = space.hrnet(pose_rule=True)
    last = make_module([3, 4, 4, 4], [["1000", "1000", "1111"]] + [[_self(i)] * 4 for i in (1, 2, 3)])
    arch = Arch(hr.modules[:-1] + (last,))
    new_sd, rep = convert_hrnet_state_dict(sd, space, "pose-bottomup", arch)
    dead = {k for k in keys if re.match(r"stage4\.2\.branches\.[123]\.3\.", k)}
    assert dead and set(rep.ignored) == dead and set(rep.ignored.values()) == {DEAD}
    assert rep.unexpected == [k for k in keys if k.startswith("stage4.2.branches.0.3.")]  # no slot 3 on branch 0
    assert not rep.missing and not rep.mismatched
    assert "stages.7.fuse.2.0_3.ops.0.0.weight" in new_sd and "stages.7.blocks.1.2.conv1.weight" in new_sd
    assert f"{len(dead)} x {DEAD}" in format_report(rep)


def _self(i):
    return "".join("1" if b == i else "0" for b in range(4))
