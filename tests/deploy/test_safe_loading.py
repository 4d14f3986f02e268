"""Strict, safe loading of model dirs: tampered, truncated, mismatched and malicious files are refused
with a ScaleNASError naming the file (and the first offending tensor), never run or half-loaded."""
import json
import os
import pickle
import shutil

import pytest
import torch

from safetensors.torch import save

from scalenas.deploy.model_dir import MODEL_FORMAT, check_target, load_model, read_weights, write_model_dir
from scalenas.errors import ScaleNASError
from scalenas.nets.scalenet import ScaleNet
from scalenas.nets.supernet import SuperScaleNet
from scalenas.space import SearchSpace
from scalenas.space.arch import Arch, make_module


@pytest.fixture
def model_copy(synth_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(synth_model_dir, d)
    return d


def _set_weights(d, name, sha=None):
    meta = json.loads((d / "model.json").read_text())
    meta["weights"] = {"file": name, **({"sha256": sha} if sha else {})}
    (d / "model.json").write_text(json.dumps(meta))


class _RunsCode:
    """Unpickling this calls open(path, "w"): a stand-in for arbitrary code execution."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loads_and_matches(synth_model_dir):
    lm = load_model(synth_model_dir)
    assert not lm.net.training and lm.arch.hash == lm.meta["arch_hash"]


def test_malicious_pickle_is_refused_and_not_run(model_copy, tmp_path):
    marker = tmp_path / "pwned"
    sd = {"stem.weight": torch.zeros(1), "payload": _RunsCode(str(marker))}
    with open(model_copy / "model.pt", "wb") as f:
        pickle.dump(sd, f)  # plain pickle; torch.load reads legacy pickles too
    torch.save({"x": torch.zeros(1), "payload": _RunsCode(str(marker))}, model_copy / "model2.pt")
    for name in ("model.pt", "model2.pt"):  # a plain pickle, then torch's format
        why = "needs the global 'io.open', which is not on the safe list"
        with pytest.raises(ScaleNASError, match=rf"{name}: refused: .*{why}") as e:
            read_weights(str(model_copy / name))
        assert "malicious" in str(e.value) and "nothing was executed" in str(e.value)
        _set_weights(model_copy, name)
        with pytest.raises(ScaleNASError, match="refused"):
            load_model(str(model_copy))
    assert not marker.exists(), "the pickle payload ran"


def test_truncated_safetensors(model_copy, h, capsys):
    w = model_copy / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(ScaleNASError, match="SHA-256"):  # the checksum in model.json catches it first
        load_model(str(model_copy))
    with pytest.raises(ScaleNASError, match=r"model\.safetensors: not a (complete weights file \(truncated|valid)"):
        load_model(str(model_copy), verify=False)
    w.write_bytes(data[:5])
    with pytest.raises(ScaleNASError, match=r"not a complete weights file \(truncated: 5 bytes"):
        read_weights(str(w))
    # through the CLI: a message, exit code 2, no traceback
    assert h.cli("eval", model_copy) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "Traceback" not in err


def test_weights_of_another_arch_name_the_first_tensor(model_copy, synth_ckpt, tmp_path, h):
    from safetensors.torch import save_file

    from scalenas.train.checkpoint import load_supernet

    sd = load_model(str(model_copy)).net.state_dict()
    first = next(iter(sd))
    bad = dict(sd)
    bad[first] = torch.zeros(3, 3)
    save_file({k: v.contiguous() for k, v in bad.items()}, str(model_copy / "shape.safetensors"))
    _set_weights(model_copy, "shape.safetensors")
    with pytest.raises(ScaleNASError, match=rf"shape\.safetensors.*first: tensor '{first}' has shape \[3, 3\]"):
        load_model(str(model_copy))

    supernet, _ = load_supernet(synth_ckpt)
    other = supernet.extract(h.sample_arch(11)).state_dict()
    missing = next(k for k in sd if k not in other)
    save_file({k: v.contiguous() for k, v in other.items()}, str(model_copy / "other.safetensors"))
    _set_weights(model_copy, "other.safetensors")
    with pytest.raises(ScaleNASError, match=rf"first: tensor '{missing}' is missing"):
        load_model(str(model_copy))

    extra = dict(sd, **{"head.extra.weight": torch.zeros(2)})
    torch.save(extra, model_copy / "extra.pt")
    _set_weights(model_copy, "extra.pt")
    with pytest.raises(ScaleNASError, match="unexpected tensor 'head.extra.weight'"):
        load_model(str(model_copy))

    nan = {k: v.clone() for k, v in sd.items()}
    nan[first][0] = float("nan")
    save_file({k: v.contiguous() for k, v in nan.items()}, str(model_copy / "nan.safetensors"))
    _set_weights(model_copy, "nan.safetensors")
    with pytest.raises(ScaleNASError, match=f"'{first}' holds NaN"):
        load_model(str(model_copy))


def test_model_json_problems(model_copy):
    _set_weights(model_copy, "../../etc/passwd")
    with pytest.raises(ScaleNASError, match="plain file name"):
        load_model(str(model_copy))
    (model_copy / "model.json").write_text("{not json")
    with pytest.raises(ScaleNASError, match=r"model\.json: invalid JSON"):
        load_model(str(model_copy))
    (model_copy / "model.json").write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(ScaleNASError, match="format 'other/1'"):
        load_model(str(model_copy))
    with pytest.raises(ScaleNASError, match="not found"):
        load_model(str(model_copy / "nope"))


def test_atomic_model_dir_writes(tmp_path):
    d = tmp_path / "out"
    write_model_dir(str(d), {"model.json": b"{}", "a.bin": b"1"})
    with pytest.raises(ScaleNASError, match="--overwrite"):
        check_target(str(d), overwrite=False)
    write_model_dir(str(d), {"model.json": b"{}", "b.bin": b"2"}, overwrite=True)
    assert sorted(os.listdir(d)) == ["b.bin", "model.json"]
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary leftovers
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("mine")
    with pytest.raises(ScaleNASError, match="not a model directory"):
        write_model_dir(str(tmp_path / "notes"), {"model.json": b"{}"}, overwrite=True)


class _CallsSystem:
    """Unpickling this would run a shell command (os.system): the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def bad_ckpts(synth_ckpt, tmp_path):
    """{file: the refusal it must get}: an empty, a truncated and a malicious checkpoint."""
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.pt").write_bytes(b"")
    data = open(synth_ckpt, "rb").read()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _CallsSystem(tmp_path / "pwned")}, d / "evil.pt")
    yield {str(d / "empty.pt"): "not a complete checkpoint (empty file)",
           str(d / "truncated.pt"): "not a complete checkpoint (truncated:",
           str(d / "evil.pt"): f"refused: the file needs the global '{os.system.__module__}.system', which is not "
                               f"on the safe list"}
    assert not (tmp_path / "pwned").exists(), "the pickle payload ran"


def _check_refusal(text, path, why):
    assert "weights_only=False" not in text and "Traceback" not in text
    lines = [x for x in text.splitlines() if x.strip()]
    assert 1 <= len(lines) <= 2, text
    assert f"{path}: {why}" in lines[-1], (text, why)


def test_every_python_reader_refuses_the_same_way(bad_ckpts, h):
    from scalenas.nets.convert import read_checkpoint
    from scalenas.nets.pretrained import init_supernet_from
    from scalenas.nets.supernet import SuperScaleNet
    from scalenas.train.checkpoint import load_checkpoint, load_supernet
    from scalenas.tasks.base import build_task

    supernet = SuperScaleNet(h.tiny_space(), build_task(dict(h.SYNTH_TASK)).head)
    readers = {"checkpoint": (load_checkpoint, load_supernet, read_checkpoint,
                              lambda p: init_supernet_from(supernet, p)),
               "weights file": (read_weights,)}  # the model dir's reader names what it reads
    for path, why in bad_ckpts.items():
        for what, fns in readers.items():
            for read in fns:
                with pytest.raises(ScaleNASError) as e:
                    read(path)
                _check_refusal(str(e.value), path, why.replace("checkpoint", what))


def test_every_command_refuses_the_same_way(bad_ckpts, synth_ckpt, tmp_path, h, capsys):
    import yaml

    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "space": dict(h.TINY), "task": dict(h.SYNTH_TASK),
                                   "train": {"steps": 1, "batch_size": 4, "workers": 0, "progress": False,
                                             "tensorboard": False}}))
    arch = tmp_path / "arch.json"
    arch.write_text(h.sample_arch(3).to_json())
    for path, why in bad_ckpts.items():
        for argv in (("train-supernet", cfg, "--resume", path), ("train-supernet", cfg, f"model.pretrained={path}"),
                     ("search", path, "-o", tmp_path / "s", "--quiet"),
                     ("extract", path, arch, "-o", tmp_path / "m", *h.CALIB)):
            capsys.readouterr()
            assert h.cli(*argv) == 2, argv
            out = capsys.readouterr()
            assert "weights_only=False" not in out.out
            _check_refusal(out.err, path, why)
            assert out.err.startswith(f"scalenas {argv[0]}: error: {path}: ")


def test_model_dir_with_dead_pose_tensors_still_loads(tmp_path):
    # Model dirs written before dead compute was dropped hold a pose net's last-module blocks and
    # edges after branch 0's last fusion; they load, without those tensors, and compute the same.
    space = SearchSpace(width=8, modules_per_stage=(1, 1, 1), depth_choices=(1, 2), stem_channels=16,
                        stage1_blocks=1)
    base = space.smallest(pose_rule=True)
    last = make_module([1, 2, 2, 2], [["1111"], ["1111", "0100"], ["1111", "0010"], ["1111", "0001"]])
    arch = Arch(base.modules[:-1] + (last,))
    sn = SuperScaleNet(space, "pose-bottomup").set_active(arch).eval()
    every_slot = {k for k in ScaleNet(space, arch, "seg", init="none").state_dict() if not k.startswith("head.")}
    old = {k: v.contiguous() for k, v in sn.state_dict().items() if k in every_slot or k.startswith("head.")}
    assert "stages.2.blocks.1.1.conv1.weight" in old and "stages.2.fuse.0.1_0.ops.0.0.weight" in old
    d = tmp_path / "old"
    d.mkdir()
    (d / "model.safetensors").write_bytes(save(old))
    meta = {"format": MODEL_FORMAT, "arch": arch.to_dict(), "space": space.to_dict(),
            "head": {"kind": "pose-bottomup"}, "task": {"name": "synthetic-pose"}, "input_hw": [64, 64],
            "normalisation": None, "weights": {"file": "model.safetensors"}}
    (d / "model.json").write_text(json.dumps(meta))
    net = load_model(str(d)).net
    assert "stages.2.blocks.1.1.conv1.weight" not in net.state_dict()
    assert "stages.2.fuse.0.1_0.ops.0.0.weight" not in net.state_dict()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(net(x), sn(x)))
