"""Every subcommand's --help works; config validation errors name the key; user errors exit 2."""
import subprocess
import sys

import pytest
import yaml

from scalenas.cli import COMMANDS, build_parser, main
from scalenas.config import apply_overrides, load_config, validate_section
from scalenas.errors import ScaleNASError
from scalenas.train.config import RunConfig


def test_all_subcommands_are_present():
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {c.replace("_", "-") for c in COMMANDS} <= names


@pytest.mark.parametrize("cmd", [c.replace("_", "-") for c in COMMANDS])
def test_help_pages(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scalenas " + cmd) and len(out) > 200


def test_help_as_a_real_process():
    r = subprocess.run([sys.executable, "-m", "scalenas.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train-supernet" in r.stdout and "demo" in r.stdout


def _cfg(tmp_path, data):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ScaleNASError, match=r"train\.optimizer\.lrr: unknown key"):
        validate_section(RunConfig, load_config(_cfg(tmp_path, {"train": {"optimizer": {"lrr": 0.1}}})))
    with pytest.raises(ScaleNASError, match=r"sampler\.bogus: unknown key"):
        validate_section(RunConfig, load_config(_cfg(tmp_path, {}), ["sampler.bogus=1"]))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ScaleNASError, match=r"train\.steps"):
        validate_section(RunConfig, load_config(_cfg(tmp_path, {}), ["train.steps=many"]))
    with pytest.raises(ScaleNASError, match=r"sampler\.kind"):
        validate_section(RunConfig, {"sampler": {"kind": "roulette"}})


def test_task_section_is_validated_by_the_task(tmp_path):
    from scalenas.tasks.base import build_task

    with pytest.raises(ScaleNASError, match=r"task\.sizee: unknown key"):
        build_task({"name": "synthetic-regression", "sizee": 3})
    with pytest.raises(ScaleNASError, match=r"task\.name"):
        build_task({"name": "no-such-task"})


def test_overrides_and_bases(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"task": {"name": "synthetic-regression", "size": 64}, "seed": 1}))
    top = tmp_path / "top.yaml"
    top.write_text(yaml.safe_dump({"_base_": "base.yaml", "seed": 2, "task": {"num_train": 8}}))
    d = load_config(str(top), ["train.steps=7", "space.depth_choices=[1,2]", "task.size=32"])
    assert d["seed"] == 2 and d["task"] == {"name": "synthetic-regression", "size": 32, "num_train": 8}
    cfg = validate_section(RunConfig, d)
    assert cfg.train.steps == 7 and cfg.space.depth_choices == [1, 2]
    with pytest.raises(ScaleNASError, match="KEY=VALUE"):
        apply_overrides({}, ["train.steps"])


def test_cli_user_error_exits_2_with_message(tmp_path, capsys):
    cfg = _cfg(tmp_path, {"train": {"stepz": 3}})
    assert main(["train-supernet", cfg]) == 2
    err = capsys.readouterr().err
    assert "train.stepz: unknown key" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "missing.json")]) == 2


def test_recipe_configs_validate():
    import glob
    import os

    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
    files = [f for f in glob.glob(os.path.join(root, "*.yaml"))]
    assert len(files) >= 6
    for f in files:
        raw = load_config(f)
        if "study" in raw:  # a study config: a run config with a study section (scalenas.study.config)
            from scalenas.study.config import StudyConfig

            validate_section(StudyConfig, load_config(f))
            raw.pop("study")
        if "shrink" in raw:  # a shrink run (scalenas shrink): the hrnas family's space and a shrink section
            from scalenas.train.shrink import ShrinkRunConfig

            cfg = validate_section(ShrinkRunConfig, raw)
        else:
            cfg = validate_section(RunConfig, raw)
        from scalenas.tasks import TASKS

        cls = TASKS.get(cfg.task["name"])
        validate_section(cls.Config, cfg.task, "task")  # the task section validates too (data not needed)
        if getattr(cfg, "search", None):
            from scalenas.search.config import SearchCfg

            validate_section(SearchCfg, cfg.search, "search")
