"""Issue 12 items 2 and 4: KEY=VALUE anywhere on the line, usage errors with the subcommand's usage, and
one stderr line naming the file, key or id (exit 2) for each failure that used to print a traceback."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from scalenas.cli import build_parser, main
from scalenas.space import SearchSpace

TINY = {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 8,
        "stage1_blocks": 1}
QUIET = {"ckpt_every": 0, "progress": False, "tensorboard": False}


def _fails(capsys, argv, *names):
    """``argv`` exits with code 2 and at most two stderr lines that contain every one of ``names``."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    for n in names:
        assert str(n) in err, (n, err)
    return err


def _yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _ns(argv):
    return vars(build_parser().parse_args(argv))


# ---- item 2: overrides anywhere, usage errors --------------------------------------------------

def test_overrides_anywhere_on_the_line():
    after = _ns(["search", "CKPT", "-o", "X", "search.generations=10", "population=4"])
    assert after == _ns(["search", "CKPT", "search.generations=10", "population=4", "-o", "X"])
    assert after["target"] == "CKPT" and after["rest"] == ["search.generations=10", "population=4"]
    assert after["output"] == "X"
    after = _ns(["train-supernet", "CFG", "--run-dir", "X", "train.steps=1"])
    assert after == _ns(["train-supernet", "CFG", "train.steps=1", "--run-dir", "X"])
    assert (after["config"], after["overrides"], after["run_dir"]) == ("CFG", ["train.steps=1"], "X")
    # an option's own KEY=VALUE value stays the option's
    ev = _ns(["eval", "M", "--data", "task.root=/d", "--split", "test"])
    assert ev["data"] == ["task.root=/d"] and ev["model_dir"] == "M" and ev["split"] == "test"


def test_search_takes_one_config_before_or_after_the_overrides(tmp_path, capsys):
    out = tmp_path / "run"
    _fails(capsys, ["search", tmp_path / "missing.pt", "generations=1", "a.yaml", "b.yaml", "-o", out],
           "unexpected argument 'b.yaml'", "a.yaml")
    # a config after the overrides is read as the config
    _fails(capsys, ["search", tmp_path / "missing.pt", "-o", out, "generations=1", tmp_path / "s.yaml"],
           f"{tmp_path / 's.yaml'}: cannot read config")


def test_parsers_that_cannot_intermix_parse_as_usual():
    from scalenas.cli import CommandParser

    p = CommandParser(prog="x")
    p.add_argument("cmd")
    p.add_argument("rest", nargs="...")
    p.add_argument("--flag", action="store_true")
    assert vars(p.parse_args(["run", "--flag", "k=v"])) == {"cmd": "run", "rest": ["--flag", "k=v"], "flag": False}


@pytest.mark.parametrize("argv, usage", [
    (["search", "CKPT", "-o", "X", "--bogus", "k=v"], "usage: scalenas search SUPERNET_CKPT"),
    (["search", "--bogus"], "usage: scalenas search SUPERNET_CKPT"),
    (["train-supernet", "CFG", "--run-dir", "X", "--bogus"], "usage: scalenas train-supernet"),
    (["data", "synth-seg", "OUT", "--bogus"], "usage: scalenas data synth-seg"),
])
def test_usage_errors_show_the_subcommand_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert err.strip().splitlines()[-1].endswith("error: unrecognized arguments: --bogus")
    assert sum("error:" in line for line in err.splitlines()) == 1


def test_unknown_subcommand_and_choice_suggest(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serch", "CKPT"])
    assert e.value.code == 2
    assert "invalid choice: 'serch'" in capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(SystemExit):
        main(["serch"])
    assert "did you mean 'search'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth-sge", "OUT"])
    assert "did you mean 'synth-seg'?" in capsys.readouterr().err


# ---- item 4: one clear line per failure ----------------------------------------------------------

def test_unknown_config_keys_suggest_the_closest_field(tmp_path, capsys):
    cfg = _yaml(tmp_path / "c.yaml", {"train": {"optimizer": {"lrr": 0.1}}, "samplr": {}})
    err = _fails(capsys, ["train-supernet", cfg], "train.optimizer.lrr: unknown key (did you mean 'lr'?)",
                 "samplr: unknown key (did you mean 'sampler'?)")
    assert "did you mean" in err
    # a free-form section (task: dict) gives no suggestion rather than a wrong one
    _fails(capsys, ["train-supernet", cfg, "task.nme=x"], "lrr")


@pytest.mark.parametrize("files", [{"a.yaml": "b.yaml", "b.yaml": "a.yaml"}, {"a.yaml": "a.yaml"}])
def test_base_cycle_names_the_chain(files, tmp_path, capsys):
    for name, base in files.items():
        _yaml(tmp_path / name, {"_base_": base, "seed": 1})
    a = str(tmp_path / "a.yaml")
    chain = " -> ".join([a] + [str(tmp_path / files["a.yaml"])] + ([a] if len(files) == 2 else []))
    _fails(capsys, ["train-supernet", a], f"_base_ cycle: {chain}")


def test_search_section_is_validated_before_training(tmp_path, capsys):
    cfg = _yaml(tmp_path / "c.yaml", {"space": TINY, "task": {"name": "synthetic-regression", "size": 32},
                                      "train": {"steps": 1, "batch_size": 2, "workers": 0, **QUIET}})
    run = tmp_path / "run"
    _fails(capsys, ["train-supernet", cfg, "--run-dir", run, "search.input_hw=[100,100]"], "search.input_hw",
           "multiples of 32")
    _fails(capsys, ["train-supernet", cfg, "search.generatons=3", "--run-dir", run],
           "search.generatons: unknown key (did you mean 'generations'?)")
    assert not run.exists()  # refused before any training work


def test_data_synth_refuses_a_file_as_output_and_no_training_images(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for kind in ("synth-seg", "synth-pose"):
        _fails(capsys, ["data", kind, f, "--train", 1, "--val", 0, "--test", 0, "--size", "64x64"], f,
               "not a folder")
        _fails(capsys, ["data", kind, f / "sub", "--train", 1, "--size", "64x64"], f / "sub")
        _fails(capsys, ["data", kind, tmp_path / kind, "--train", 0, "--size", "64x64"], "--train 0")
        assert not (tmp_path / kind).exists()


def _bad_archs(tmp_path):
    """name -> (file, text expected in the error) for arch files that must be refused."""
    d = SearchSpace().hrnet().to_dict()
    out = {}

    def put(name, doc, expect):
        p = tmp_path / name
        p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        out[name] = (str(p), expect)

    put("not_json.json", '{"modules": [', "invalid JSON at line 1")
    put("top_key.json", {**d, "modulez": []}, "unknown key 'modulez' (did you mean 'modules'?)")
    m = json.loads(json.dumps(d))
    m["modules"][3]["fuze"] = m["modules"][3]["fuse"]
    put("module_key.json", m, "module M3: unknown key 'fuze' (did you mean 'fuse'?)")
    m = json.loads(json.dumps(d))
    m["modules"][2]["depth"][1] = 6
    put("depth.json", m, "module M2 branch 1: depth 6 is not one of the choices")
    m = json.loads(json.dumps(d))
    m["modules"][4]["fuse"][1] = m["modules"][4]["fuse"][1][:3]
    put("missing_mask.json", m, "module M4 branch 1 step 3: missing fusion mask")
    return out


def test_arch_files_errors_name_the_file(tmp_path, capsys):
    for path, expect in _bad_archs(tmp_path).values():
        _fails(capsys, ["info", path], path, expect)
        _fails(capsys, ["draw", path, "-o", tmp_path / "x.png"], path, expect)


def test_arch_with_an_unknown_key_is_refused():
    from scalenas.errors import ScaleNASError
    from scalenas.space.arch import Arch

    d = SearchSpace().hrnet().to_dict()
    with pytest.raises(ScaleNASError, match=r"a\.json: unknown key 'name'"):
        Arch.from_dict({**d, "name": "x"}, where="a.json")
    d["modules"][0]["depths"] = [4]
    with pytest.raises(ScaleNASError, match=r"arch module M0: unknown key 'depths' \(did you mean 'depth'\?\)"):
        Arch.from_dict(d)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A one-step supernet trained through the CLI, overrides after the options (README form)."""
    d = tmp_path_factory.mktemp("ckpt")
    cfg = _yaml(d / "c.yaml", {"space": TINY, "task": {"name": "synthetic-regression", "size": 32, "num_train": 4,
                                                       "num_search": 2, "num_val": 2, "num_test": 2},
                               "train": {"steps": 2, "batch_size": 2, "workers": 0, **QUIET}})
    assert main(["train-supernet", cfg, "--run-dir", str(d / "run"), "train.steps=1"]) == 0
    ckpts = sorted((d / "run" / "checkpoints").glob("*.pt"))
    assert [p.name for p in ckpts] == ["step_00000001.pt"]  # the override after --run-dir took effect
    return str(ckpts[0])


def test_extract_arch_file_errors_name_the_file(tiny_ckpt, tmp_path, capsys):
    sp = SearchSpace.from_dict(dict(TINY))
    arch = sp.smallest().to_dict()
    deep = json.loads(json.dumps(arch))
    deep["modules"][0]["depth"][1] = 3
    bad = {"not_json.json": ("[{", "invalid JSON at line 1"),
           "key.json": ({**arch, "hash": "x"}, "unknown key 'hash'"),
           "depth.json": (deep, "module M0 branch 1: depth 3 is not one of the choices [1, 2]")}
    for name, (doc, expect) in bad.items():
        p = tmp_path / name
        p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        _fails(capsys, ["extract", tiny_ckpt, p, "-o", tmp_path / "m", "--no-calibrate", "--latency-iters", 0],
               p, expect)
        assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("fault", ["truncated", "bad label"])
def test_dataloader_worker_error_is_one_line(tmp_path, fault):
    """A truncated mask, or one holding a label value that is no class, read in a DataLoader worker
    process: one line naming the file, not the worker's re-raised traceback."""
    import cv2
    import numpy as np

    from scalenas.data.synth_seg import generate

    root = tmp_path / "seg"
    generate(str(root), train=4, val=1, test=1, size=(64, 64), seed=0)
    bad = root / "masks" / "train" / "00001.png"
    if fault == "truncated":
        bad.write_bytes(bad.read_bytes()[:100])
        why = "truncated PNG (no IEND chunk at the end)"
    else:
        cv2.imwrite(str(bad), np.full((64, 64), 200, np.uint8))  # 7 classes, ignore value 255: 200 is neither
        why = "label values 200 are not a class id 0..6 or the ignore value 255"
    task = {"name": "segmentation", "format": "folder", "root": str(root), "crop_size": [64, 64], "base_size": 64,
            "search_holdout": 1, "scale_range": [1.0, 1.0], "workers": 2, "vis_images": 0}
    cfg = _yaml(tmp_path / "c.yaml", {"space": TINY, "task": task,
                                      "train": {"steps": 2, "batch_size": 3, "workers": 2, **QUIET}})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "scalenas.cli", "train-supernet", cfg, "--run-dir",
                        str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"scalenas train-supernet: error: {bad}: {why}"), r.stderr


def test_user_message_keeps_plain_messages():
    from scalenas.errors import ScaleNASError, user_message

    assert user_message(ScaleNASError("a.png: truncated")) == "a.png: truncated"
    wrapped = ScaleNASError("Caught ScaleNASError in DataLoader worker process 3.\nOriginal Traceback (most recent "
                            "call last):\n  File \"x.py\", line 1, in f\n    g()\n"
                            "scalenas.errors.ScaleNASError: b.png: label values [9] are not class ids\n")
    assert user_message(wrapped) == "b.png: label values [9] are not class ids"
