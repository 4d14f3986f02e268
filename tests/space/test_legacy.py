"""Official ScaleNAS .npy masks: safe import (restricted unpickler), decoding, refusal of anything else."""
import os
import pickle

import numpy as np
import pytest

from scalenas.errors import ScaleNASError
from scalenas.nets import get_preset
from scalenas.space import SearchSpace
from scalenas.space.legacy import load_official_mask, save_official_mask


def _official_entries(arch, stale=True):
    """The official encoding, built independently: 'd' (nb,1) ints, 'f' (nb,5) object array of 0/1 lists.
    Steps past a branch's depth hold stale placeholders like the released files ([0,0] of the wrong length)."""
    out = []
    for ma in arch.modules:
        nb = ma.num_branches
        f = np.empty((nb, 5), dtype=object)
        for i in range(nb):
            for s in range(5):
                if s < ma.depth[i]:
                    f[i, s] = [int(c) for c in ma.fuse[i][s]]
                else:
                    f[i, s] = [0, 0] if stale else [0] * nb
        out.append({"d": np.array(ma.depth).reshape(nb, 1), "f": f})
    return out


@pytest.mark.parametrize("name", ["scalenet-p4", "scalenet-s1"])
def test_loads_official_format(name, tmp_path):
    arch = get_preset(name).arch
    path = tmp_path / f"{name}.npy"
    np.save(path, _official_entries(arch), allow_pickle=True)  # exactly how the reference code saves masks
    got = load_official_mask(path)
    assert got == arch and got.hash == arch.hash


def test_protocol2_and_numpy_scalar_bits(tmp_path):
    # Python-2 era payloads use _codecs.encode for bytes; bits may be numpy integers.
    arch = get_preset("scalenet-p1").arch
    entries = _official_entries(arch)
    for e in entries:
        for idx in np.ndindex(e["f"].shape):
            e["f"][idx] = [np.int64(b) for b in e["f"][idx]]
    arr = np.empty(len(entries), dtype=object)
    arr[:] = entries
    path = tmp_path / "p1.npy"
    payload = pickle.dumps(arr, protocol=2)
    assert b"_codecs" in payload and b"encode" in payload
    # numpy 1.x (which wrote the released files) names numpy.core; protocol-2 GLOBALs are plain text lines
    payload = payload.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in payload
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": arr.shape})
        fh.write(payload)
    assert load_official_mask(path, pose_rule=True) == arch


def test_save_load_round_trip(tmp_path):
    arch = get_preset("scalenet-s4").arch
    save_official_mask(arch, tmp_path / "s4.npy")
    assert load_official_mask(tmp_path / "s4.npy", space=SearchSpace(width=48)) == arch


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    arr = np.empty(1, dtype=object)
    arr[0] = {"d": np.array([[2], [2]]), "f": _Exploit(str(marker))}
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(ScaleNASError) as e:
        load_official_mask(path)
    msg = str(e.value)
    assert str(path) in msg and "refused" in msg and "system" in msg
    assert not marker.exists()


def test_other_globals_are_refused(tmp_path):
    # A hand-made payload after a valid object-array header: builtins.eval is refused by name.
    path = tmp_path / "eval.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        fh.write(pickle.dumps(eval, protocol=3))
    with pytest.raises(ScaleNASError, match=r"refused to unpickle global 'builtins\.eval'"):
        load_official_mask(path)


def test_bad_files(tmp_path):
    p = tmp_path / "plain.npy"
    np.save(p, np.zeros((8, 2)))
    with pytest.raises(ScaleNASError, match="plain float64 array"):
        load_official_mask(p)
    p = tmp_path / "junk.npy"
    p.write_bytes(b"not numpy at all")
    with pytest.raises(ScaleNASError, match="not an .npy file"):
        load_official_mask(p)
    with pytest.raises(ScaleNASError, match="cannot read"):
        load_official_mask(tmp_path / "missing.npy")


def test_decoding_errors_name_module_branch_step(tmp_path):
    arch = get_preset("scalenet-s2").arch
    entries = _official_entries(arch)
    entries[3]["f"][1, 0] = [1, 1]  # M3 has 3 branches: a 2-bit mask at an active step
    path = tmp_path / "bad.npy"
    np.save(path, entries, allow_pickle=True)
    with pytest.raises(ScaleNASError, match=r"module M3 branch 1 step 0: .*length 2, expected 3"):
        load_official_mask(path)
    entries = _official_entries(arch)[:7]
    np.save(path, entries, allow_pickle=True)
    with pytest.raises(ScaleNASError, match="7 modules"):
        load_official_mask(path)
    entries = _official_entries(arch)
    entries[0]["d"] = np.array([[6], [3]])
    np.save(path, entries, allow_pickle=True)
    with pytest.raises(ScaleNASError, match="module M0 branch 0"):
        load_official_mask(path)
