"""State-dict key lists (key -> shape) of the official HRNet-family networks, written from a reading of
their public model definitions (HRNet-Image-Classification ``cls_hrnet.py``, HRNet-Semantic-Segmentation
``seg_hrnet.py``, HigherHRNet ``pose_higher_hrnet.py``, deep-high-resolution-net ``pose_hrnet.py``).

It deliberately does not import scalenas: the tests compare our converter against this independent
description. Run ``python tests/data/hrnet_keys.py`` to regenerate the JSON files next to it.

Layout recap (registration order = state-dict order):
  conv1, bn1, conv2, bn2                      stem (3->64->64, both stride 2)
  layer1.{0..3}                               Bottlenecks, planes 64 (block 0 has downsample.{0,1})
  transition1.0.{0,1}                         conv3x3 256->C (+BN, ReLU)
  transition1.1.0.{0,1}                       conv3x3 s2 256->2C (+BN, ReLU), nested one level deeper
  stage2.0 / stage3.{0..3} / stage4.{0..2}    HighResolutionModule:
      branches.i.b.{conv1,bn1,conv2,bn2}        4 BasicBlocks per branch
      fuse_layers.i.j  (output i, input j != i)
          j > i: {0: conv1x1 C_j->C_i, 1: BN}   (then upsample, no params)
          j < i: t.{0: conv3x3 s2, 1: BN} for t < i-j (intermediate keep C_j, last maps to C_i)
      the last module of a pose network keeps only fuse_layers.0 (multi_scale_output=False)
  transition2.2.0.{0,1}, transition3.3.0.{0,1} new branch: conv3x3 s2 from the last branch
  heads:
      seg:    last_layer.{0: conv1x1 15C->15C (bias), 1: BN, 3: conv1x1 15C->classes (bias)}
      higher: final_layers.0 (C->2K, bias), deconv_layers.0.0.{0: ConvTranspose (C+2K, C, 4, 4), 1: BN},
              deconv_layers.0.{1..4}.0.{conv1,bn1,conv2,bn2}, final_layers.1 (C->K, bias)
      pose:   final_layer (C->K, bias)
      cls:    incre_modules, downsamp_modules, final_layer.{0,1}, classifier
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict

MODULES = {2: 1, 3: 4, 4: 3}


def _conv(sd, name, cout, cin, k, bias=False):
    sd[f"{name}.weight"] = [cout, cin, k, k]
    if bias:
        sd[f"{name}.bias"] = [cout]


def _bn(sd, name, c):
    for p in ("weight", "bias", "running_mean", "running_var"):
        sd[f"{name}.{p}"] = [c]
    sd[f"{name}.num_batches_tracked"] = []


def _basic(sd, name, c):
    _conv(sd, f"{name}.conv1", c, c, 3)
    _bn(sd, f"{name}.bn1", c)
    _conv(sd, f"{name}.conv2", c, c, 3)
    _bn(sd, f"{name}.bn2", c)


def _bottleneck(sd, name, cin, planes, downsample):
    _conv(sd, f"{name}.conv1", planes, cin, 1)
    _bn(sd, f"{name}.bn1", planes)
    _conv(sd, f"{name}.conv2", planes, planes, 3)
    _bn(sd, f"{name}.bn2", planes)
    _conv(sd, f"{name}.conv3", planes * 4, planes, 1)
    _bn(sd, f"{name}.bn3", planes * 4)
    if downsample:
        _conv(sd, f"{name}.downsample.0", planes * 4, cin, 1)
        _bn(sd, f"{name}.downsample.1", planes * 4)


def _hr_module(sd, name, ch, blocks, multi_scale_output):
    nb = len(ch)
    for i in range(nb):
        for b in range(blocks):
            _basic(sd, f"{name}.branches.{i}.{b}", ch[i])
    for i in range(nb if multi_scale_output else 1):
        for j in range(nb):
            p = f"{name}.fuse_layers.{i}.{j}"
            if j > i:
                _conv(sd, f"{p}.0", ch[i], ch[j], 1)
                _bn(sd, f"{p}.1", ch[i])
            elif j < i:
                for t in range(i - j):
                    cout = ch[i] if t == i - j - 1 else ch[j]
                    _conv(sd, f"{p}.{t}.0", cout, ch[j], 3)
                    _bn(sd, f"{p}.{t}.1", cout)


def hrnet_keys(width: int, head: str, num_classes: int = 19, num_joints: int = 17,
               blocks: int = 4, stem: int = 64, stage1_blocks: int = 4) -> "OrderedDict[str, list[int]]":
    """head: 'seg' (HRNetV2), 'higher' (HigherHRNet), 'pose' (top-down pose_hrnet), 'cls' (ImageNet)."""
    C = [width * 2**b for b in range(4)]
    pose = head in ("higher", "pose")
    sd: "OrderedDict[str, list[int]]" = OrderedDict()
    _conv(sd, "conv1", stem, 3, 3)
    _bn(sd, "bn1", stem)
    _conv(sd, "conv2", stem, stem, 3)
    _bn(sd, "bn2", stem)
    cin = stem
    for b in range(stage1_blocks):
        _bottleneck(sd, f"layer1.{b}", cin, stem, downsample=(b == 0))
        cin = stem * 4
    _conv(sd, "transition1.0.0", C[0], cin, 3)
    _bn(sd, "transition1.0.1", C[0])
    _conv(sd, "transition1.1.0.0", C[1], cin, 3)
    _bn(sd, "transition1.1.0.1", C[1])
    for stage in (2, 3, 4):
        nb = stage
        if stage > 2:
            t = f"transition{stage - 1}.{nb - 1}.0"
            _conv(sd, f"{t}.0", C[nb - 1], C[nb - 2], 3)
            _bn(sd, f"{t}.1", C[nb - 1])
        for n in range(MODULES[stage]):
            last = stage == 4 and n == MODULES[4] - 1
            _hr_module(sd, f"stage{stage}.{n}", C[:nb], blocks, multi_scale_output=not (pose and last))
    if head == "seg":
        tot = sum(C)
        _conv(sd, "last_layer.0", tot, tot, 1, bias=True)
        _bn(sd, "last_layer.1", tot)
        _conv(sd, "last_layer.3", num_classes, tot, 1, bias=True)
    elif head == "higher":
        K = num_joints
        _conv(sd, "final_layers.0", 2 * K, C[0], 1, bias=True)
        _conv(sd, "final_layers.1", K, C[0], 1, bias=True)
        sd["deconv_layers.0.0.0.weight"] = [C[0] + 2 * K, C[0], 4, 4]  # ConvTranspose2d: (in, out, kh, kw)
        _bn(sd, "deconv_layers.0.0.1", C[0])
        for b in range(1, 5):
            _basic(sd, f"deconv_layers.0.{b}.0", C[0])
    elif head == "pose":
        _conv(sd, "final_layer", num_joints, C[0], 1, bias=True)
    elif head == "cls":
        head_ch = [32, 64, 128, 256]
        for i in range(4):
            _bottleneck(sd, f"incre_modules.{i}.0", C[i], head_ch[i], downsample=True)
        for i in range(3):
            _conv(sd, f"downsamp_modules.{i}.0", head_ch[i + 1] * 4, head_ch[i] * 4, 3, bias=True)
            _bn(sd, f"downsamp_modules.{i}.1", head_ch[i + 1] * 4)
        _conv(sd, "final_layer.0", 2048, 1024, 1, bias=True)
        _bn(sd, "final_layer.1", 2048)
        sd["classifier.weight"] = [1000, 2048]
        sd["classifier.bias"] = [1000]
    else:
        raise ValueError(head)
    return sd


def num_params(keys: dict, include_bn: bool = True) -> int:
    """Learnable parameters (BN running statistics excluded); ``include_bn=False`` also drops BN affine."""
    bn_names = {k.rsplit(".", 1)[0] for k in keys if k.endswith("running_mean")}
    total = 0
    for k, shape in keys.items():
        mod, leaf = k.rsplit(".", 1)
        if leaf in ("running_mean", "running_var", "num_batches_tracked"):
            continue
        if not include_bn and mod in bn_names:
            continue
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


FILES = {
    "higher_hrnet_w32_keys.json": dict(width=32, head="higher",
                                       source="HigherHRNet-W32 (pose_higher_hrnet.py, w32_512 config)"),
    "hrnetv2_w48_seg_keys.json": dict(width=48, head="seg",
                                      source="HRNetV2-W48 Cityscapes segmentation (seg_hrnet.py)"),
}


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    for fname, spec in FILES.items():
        keys = hrnet_keys(spec["width"], spec["head"])
        doc = {"source": spec["source"], "width": spec["width"], "head": spec["head"],
               "num_params": num_params(keys), "keys": keys}
        # one key per line: readable diffs, small files
        head = json.dumps({k: v for k, v in doc.items() if k != "keys"})[:-1]
        body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in keys.items())
        with open(os.path.join(here, fname), "w") as f:
            f.write(f'{head}, "keys": {{\n{body}\n}}}}\n')
        print(f"{fname}: {len(keys)} keys, {doc['num_params']:,} params")


if __name__ == "__main__":
    main()
