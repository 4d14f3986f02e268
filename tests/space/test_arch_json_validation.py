"""Arch JSON round trip, hash stability, and one clear error per kind of invalid arch."""
import json
import random

import pytest

from scalenas.errors import ScaleNASError
from scalenas.nets import get_preset
from scalenas.space import Arch, ModuleArch, SearchSpace

W32 = SearchSpace(width=32)


def _replace_module(arch: Arch, m: int, depth, fuse) -> Arch:
    mods = list(arch.modules)
    mods[m] = ModuleArch(tuple(depth), tuple(tuple(f) for f in fuse))
    return Arch(tuple(mods))


@pytest.mark.parametrize("seed", range(5))
def test_json_round_trip(seed, tmp_path):
    a = W32.sample(random.Random(seed), fusion_prob=0.5)
    assert Arch.from_json(a.to_json()) == a
    assert Arch.from_json(a.to_json(indent=2)) == a
    assert Arch.from_json(a.to_json()).hash == a.hash
    # a model.json-style wrapper with "arch" also loads
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"space": W32.to_dict(), "arch": a.to_dict()}))
    assert Arch.load(str(path)) == a
    # bit lists instead of bit strings are accepted and canonicalised
    d = a.to_dict()
    d["modules"][0]["fuse"] = [[[int(c) for c in bits] for bits in steps] for steps in d["modules"][0]["fuse"]]
    assert Arch.from_dict(d) == a


def test_hash_is_stable():
    # Fixed values: a change here breaks every stored search log and model card.
    assert W32.hrnet().hash == "94422688f7"
    assert W32.hrnet(pose_rule=True).hash == "78688325f4"
    assert W32.smallest().hash == "e2aa1c9ee5"
    assert W32.largest().hash == "97913ae50f"
    assert get_preset("scalenet-s1").arch.hash == "307615ce56"
    assert get_preset("scalenet-p4").arch.hash == "7b27c53ca3"
    # independent of width (the arch is the same point in W32 and W48)
    assert SearchSpace(width=48).hrnet().hash == W32.hrnet().hash


def _err(arch, pose_rule=False):
    with pytest.raises(ScaleNASError) as e:
        W32.validate(arch, pose_rule=pose_rule)
    return str(e.value)


def test_wrong_number_of_modules():
    a = W32.hrnet()
    msg = _err(Arch(a.modules[:7]))
    assert "7 modules" in msg and "8" in msg


def test_wrong_number_of_branches():
    msg = _err(_replace_module(W32.hrnet(), 1, [4, 4], [["10"] * 4, ["01"] * 4]))
    assert "module M1" in msg and "2 branch depths" in msg and "3 branches" in msg


def test_depth_outside_choices():
    a = W32.hrnet()
    msg = _err(_replace_module(a, 2, [4, 6, 4], [a.modules[2].fuse[0], ("010",) * 6, a.modules[2].fuse[2]]))
    assert "module M2 branch 1" in msg and "depth 6" in msg and "[2, 3, 4, 5]" in msg


def test_missing_self_bit():
    a = W32.hrnet()
    f = [list(x) for x in a.modules[3].fuse]
    f[2][1] = "110"
    msg = _err(_replace_module(a, 3, a.modules[3].depth, f))
    assert "module M3 branch 2 step 1" in msg and "self bit" in msg


def test_bits_beyond_depth():
    a = W32.hrnet()
    f = [list(x) for x in a.modules[4].fuse]
    f[0] = f[0] + ["100"]
    msg = _err(_replace_module(a, 4, a.modules[4].depth, f))
    assert "module M4 branch 0 step 4" in msg and "beyond" in msg


def test_missing_step_mask():
    a = W32.hrnet()
    f = [list(x) for x in a.modules[4].fuse]
    f[1] = f[1][:3]
    msg = _err(_replace_module(a, 4, a.modules[4].depth, f))
    assert "module M4 branch 1 step 3" in msg and "missing" in msg


def test_wrong_mask_length():
    a = W32.hrnet()
    f = [list(x) for x in a.modules[5].fuse]
    f[1][0] = "010"
    msg = _err(_replace_module(a, 5, a.modules[5].depth, f))
    assert "module M5 branch 1 step 0" in msg and "length 3" in msg and "expected 4" in msg


def test_pose_rule_last_module():
    seg = W32.hrnet()  # fuses into every branch at M7's last step: fine for seg, not for pose
    W32.validate(seg)
    msg = _err(seg, pose_rule=True)
    assert "module M7 branch 1 step 3" in msg and "pose rule" in msg
    a = W32.hrnet(pose_rule=True)
    f = [list(x) for x in a.modules[7].fuse]
    f[0][3] = "1011"
    msg = _err(_replace_module(a, 7, a.modules[7].depth, f), pose_rule=True)
    assert "module M7 branch 0 step 3" in msg and "'1111'" in msg


def test_bad_bits_in_json_name_the_place():
    d = W32.hrnet().to_dict()
    d["modules"][6]["fuse"][2][1] = "0120"
    with pytest.raises(ScaleNASError, match="module M6 branch 2 step 1"):
        Arch.from_dict(d)
    with pytest.raises(ScaleNASError, match="invalid JSON"):
        Arch.from_json("{nope")
