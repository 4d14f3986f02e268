"""Every ``scalenas ...`` line in README.md's bash blocks parses; the cheap ones also run.

README.md is read when the tests are collected, so commands added to it later are covered too.
Lines are the ones that start with ``scalenas`` and the ``-m scalenas.cli`` tails of ``torchrun``
lines, with backslash continuations joined and ``#`` comments dropped. ``info``, ``draw`` and ``data``
run for real in a temporary folder (data commands with tiny image counts and sizes); training,
search, extraction, export, evaluation, prediction and the demo only parse.
"""
import os
import re
import shlex

import pytest

from scalenas.cli import build_parser, main

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
CHEAP = {"info", "draw", "data"}
#: data commands run with these sizes instead of the README's (which make 300 images of 256x256)
SMALL = {"--train": "2", "--val": "1", "--test": "1", "--size": "64x64"}


def readme_commands(text: str) -> list[list[str]]:
    """argv (without the program name) of every scalenas command in the ```bash blocks of ``text``."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["scalenas"]:
                out.append(words[1:])
            elif "scalenas.cli" in words and words[words.index("scalenas.cli") - 1] == "-m":
                out.append(words[words.index("scalenas.cli") + 1:])
    return out


def _commands():
    with open(README, encoding="utf-8") as f:
        return readme_commands(f.read())


COMMANDS = _commands()


def test_readme_has_the_tour():
    names = {argv[0] for argv in COMMANDS if argv}
    assert {"info", "draw", "data", "train-supernet", "search", "extract", "export", "eval", "predict",
            "demo"} <= names


def test_extraction_joins_continuations_and_drops_comments():
    text = ("x\n```bash\nscalenas info a --json   # note\ntorchrun --n=2 -m scalenas.cli train-supernet c.yaml \\\n"
            "    k=v --resume auto\nmake demo\n```\n```python\nscalenas nope\n```\n")
    assert readme_commands(text) == [["info", "a", "--json"], ["train-supernet", "c.yaml", "k=v", "--resume", "auto"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_readme_command_parses(argv):
    args = build_parser().parse_args(argv)
    assert getattr(args, "_run", None) is not None or argv == []


def _small(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word in SMALL:
            out[i + 1] = SMALL[word]
    return out


@pytest.mark.parametrize("argv", [a for a in COMMANDS if a and a[0] in CHEAP],
                         ids=[" ".join(a) for a in COMMANDS if a and a[0] in CHEAP])
def test_readme_cheap_command_runs(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative outputs (s4.png, data/synth_seg) land here
    argv = _small(argv) if argv[0] == "data" else argv
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    if argv[0] == "draw":
        target = argv[argv.index("-o") + 1] if "-o" in argv else f"{argv[1]}.png"
        assert os.path.getsize(tmp_path / target) > 1000
    elif argv[0] == "data":
        root = tmp_path / argv[2]
        assert sorted(os.listdir(root / "images")) == ["test", "train", "val"]
        assert len(os.listdir(root / "images" / "train")) == 2
    elif "--json" in argv:
        assert out.lstrip().startswith("{")
    else:
        assert out.strip()
