"""The hrnas family's arch value type: JSON round trip, stable hash, validation naming the location."""
import json

import pytest

from scalenas.errors import ScaleNASError
from scalenas.space.hrnas import HRNAS_ARCH_FORMAT, BlockArch, HRNASArch, HRNASSpace, arch_family, load_arch

SPACE = HRNASSpace()


def _with(arch: HRNASArch, n: int, hidden) -> HRNASArch:
    blocks = arch.blocks()
    blocks[n] = BlockArch(tuple(hidden))
    return HRNASArch.from_blocks(SPACE, blocks)


def test_structure_follows_hrnas_configs():
    slots = SPACE.slots()
    # neighbour edges (+ new branch): 1, 1+1, 4+1, 7+1, 10; parallel blocks: 1, 2+2, 2+2+3, 2+2+3+4 (x2)
    assert SPACE.slot_kind_counts() == {"fuse": 26, "block": 34}
    assert SPACE.out_channels == (18, 36, 72, 144)
    new = [(s.stage, s.src, s.branch, s.cin, s.cout) for s in slots if s.new]
    assert new == [(1, 0, 1, 18, 36), (2, 1, 2, 36, 72), (3, 2, 3, 72, 144)]
    assert SPACE.largest().blocks()[0].hidden == (96, 96, 96)  # 24 x expansion 4, per kernel 3/5/7


def test_json_round_trip_and_stable_hash():
    arch = _with(SPACE.largest(), 5, (0, 17, 3))
    text = arch.to_json()
    back = HRNASArch.from_json(text)
    assert back == arch and back.to_json() == text and back.hash == arch.hash
    assert json.loads(text)["format"] == HRNAS_ARCH_FORMAT
    assert HRNASArch.from_json(arch.to_json(indent=2)).hash == arch.hash
    assert arch.hash != SPACE.largest().hash and len(arch.hash) == 10
    assert SPACE.validate(back) is back


def test_validation_names_stage_branch_block_path():
    slots = SPACE.slots()
    n = next(i for i, s in enumerate(slots) if s.kind == "block" and s.stage == 3 and s.branch == 2)
    bad = _with(SPACE.largest(), n, (288, 289, 0))
    with pytest.raises(ScaleNASError, match=r"stage 3 branch 2 block 0 path k5: 289 hidden channels, at most 288"):
        SPACE.validate(bad)
    f = next(i for i, s in enumerate(slots) if s.kind == "fuse" and s.stage == 2 and s.src == 1 and s.branch == 0)
    with pytest.raises(ScaleNASError, match=r"stage 2 fuse 1->0 \(branch 0 block f1\) path k3"):
        SPACE.validate(_with(SPACE.largest(), f, (145, 1, 1)))
    with pytest.raises(ScaleNASError, match=r"stage 0 branch 0 block 0: 2 paths"):
        SPACE.validate(_with(SPACE.largest(), 1, (1, 1)))


def test_json_errors_are_strict_and_located():
    d = SPACE.largest().to_dict()
    d["stages"][2]["branches"][1][0]["hiden"] = [1, 2, 3]
    with pytest.raises(ScaleNASError, match=r"stage 2 branch 1 block 0: unknown key 'hiden' \(did you mean 'hidden'"):
        HRNASArch.from_dict(d)
    d = SPACE.largest().to_dict()
    d["stages"][4]["branches"][3][2]["hidden"][2] = -1
    with pytest.raises(ScaleNASError, match=r"stage 4 branch 3 block 2 path 2: expected a non-negative integer"):
        HRNASArch.from_dict(d)
    d = SPACE.largest().to_dict()
    d["stages"][1]["branches"][0].pop()
    with pytest.raises(ScaleNASError, match=r"stage 1 has \[1, 2\] blocks per branch, the space has \[2, 2\]"):
        SPACE.validate(HRNASArch.from_dict(d))
    with pytest.raises(ScaleNASError, match="is not 'scalenas.hrnas-arch/1'"):
        HRNASArch.from_dict({"format": "scalenas.arch/1", "stages": []})


def test_load_tells_the_formats_apart(tmp_path):
    from scalenas.nets.registry import get_preset

    p = tmp_path / "a.json"
    p.write_text(SPACE.largest().to_json())
    assert load_arch(str(p)) == SPACE.largest()
    q = tmp_path / "b.json"
    q.write_text(get_preset("scalenet-s1").arch.to_json())
    assert load_arch(str(q)) == get_preset("scalenet-s1").arch
    assert arch_family({"arch": SPACE.largest().to_dict()}) == "hrnas"
    assert arch_family(json.loads(q.read_text())) == "scalenas"


def test_space_json_round_trip_and_errors():
    sp = HRNASSpace(width_mult=0.5, kernel_sizes=(3, 5))
    assert HRNASSpace.from_dict(sp.to_dict()) == sp
    with pytest.raises(ScaleNASError, match="kernel_size"):
        HRNASSpace.from_dict({"kernel_size": [3]})
    with pytest.raises(ScaleNASError, match="distinct odd sizes"):
        HRNASSpace(kernel_sizes=(3, 4))


def test_tokens_round_trip_and_validation():
    sp = HRNASSpace(transformer_tokens=64)
    arch = sp.largest()
    assert all((b.tokens == 64) == (s.kind == "block") for s, b in zip(sp.slots(), arch.blocks()))
    assert HRNASArch.from_json(arch.to_json()) == arch and "tokens" not in SPACE.largest().to_json()
    blocks = arch.blocks()
    n = next(i for i, s in enumerate(sp.slots()) if s.kind == "block" and s.stage == 4 and s.branch == 1)
    blocks[n] = BlockArch(blocks[n].hidden, 65)
    with pytest.raises(ScaleNASError, match=r"stage 4 branch 1 block 0 transformer: 65 tokens, at most 64"):
        sp.validate(HRNASArch.from_blocks(sp, blocks))
    blocks[n] = BlockArch(blocks[n].hidden, None)
    with pytest.raises(ScaleNASError, match=r"stage 4 branch 1 block 0: the block needs 'tokens'"):
        sp.validate(HRNASArch.from_blocks(sp, blocks))
    with pytest.raises(ScaleNASError, match=r"stage 0 fuse 0->0 \(branch 0 block f0\): the block has no transformer"):
        SPACE.validate(HRNASArch.from_blocks(SPACE, [BlockArch((1, 1, 1), 3)] + SPACE.largest().blocks()[1:]))
