"""``bench/task_supernet.py``'s head start and rotation for bottom-up pose: ``--init`` takes a checkpoint, a run
folder or ``topdown`` (the top-down bench trained once under OUT, then reused), and a wrong one is refused in one
line with exit 2; the run config then names the checkpoint as model.pretrained. The bench's real runs (10-30
minutes) are in the README and docs/results/bottomup-bench-seeds.md."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))

import task_supernet as ts  # noqa: E402

TINY = ["--steps", "2", "--train-images", "20", "--val-images", "2", "--size", "96", "--batch", "4", "--width", "4"]


def _main(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["task_supernet.py", *argv])
    ts.main()


def test_init_topdown_trains_the_topdown_bench_once_and_starts_from_its_last_checkpoint(tmp_path, monkeypatch):
    calls = []

    def tiny_bench(script, args):  # the real bench, CPU-test sized (argparse keeps the last of a repeated option)
        calls.append(args)
        return real(script, [*args, *TINY])

    real = ts.bench_json
    monkeypatch.setattr(ts, "bench_json", tiny_bench)
    ckpt, record = ts.init_checkpoint("topdown", str(tmp_path), 4, 3)
    assert calls == [["--task", "pose-topdown", "--width", "4", "--seed", "3", "--out",
                      str(tmp_path / "topdown_init")]]
    assert ckpt == str(tmp_path / "topdown_init" / "run" / "checkpoints" / "step_00000002.pt")
    assert record["seed"] == 3 and record["steps"] == 2 and set(record["after"]) == {"largest", "smallest", "hrnet"}
    assert ts.init_checkpoint("topdown", str(tmp_path), 4, 3) == (ckpt, record) and len(calls) == 1  # kept
    with pytest.raises(ValueError, match="was trained with .*--seed 3.*, not .*--seed 4.*; give another --out"):
        ts.init_checkpoint("topdown", str(tmp_path), 4, 4)  # another seed's head start is not the kept one
    # a run folder, the folder --out left, or the checkpoint itself name the same weights
    for spec in (tmp_path / "topdown_init", tmp_path / "topdown_init" / "run", ckpt):
        assert ts.init_checkpoint(str(spec), "unused", 4, 0) == (ckpt, None)
    cfg = ts.config("pose-bottomup", "data", "run", 10, 128, 4, 8, 3e-3, init=ckpt, rotation=0)
    assert cfg["model"] == {"pretrained": ckpt} and cfg["task"]["augment"] == {"max_rotation": 0}
    assert "model" not in ts.config("pose-bottomup", "data", "run", 10, 128, 4, 8, 3e-3)


def test_a_bottomup_run_starts_from_the_checkpoint_it_names(tmp_path, monkeypatch, capsys):
    _main(monkeypatch, "--task", "pose-topdown", *TINY, "--out", str(tmp_path / "td"))
    _main(monkeypatch, "--task", "pose-bottomup", *TINY, "--size", "64", "--train-images", "24", "--rotation", "0",
          "--init", str(tmp_path / "td"), "--out", str(tmp_path / "bu"), "--json")
    out = capsys.readouterr().out
    assert "started from " + str(tmp_path / "td" / "run" / "checkpoints" / "step_00000002.pt") in out
    assert '"rotation": 0.0' in out and "rotation 0," in out
    report = open(tmp_path / "bu" / "run" / "init_report.json").read()
    assert '"loaded": ' in report and '"loaded": 0' not in report


@pytest.mark.parametrize("argv, message", [
    (["--task", "pose-bottomup", "--init", "/no/such/ckpt.pt"],
     "--init /no/such/ckpt.pt: no such file or folder (give a checkpoint, a run folder or 'topdown')"),
    (["--task", "seg", "--rotation", "0"], "--rotation and --init topdown are pose-bottomup's; --task seg"),
    (["--task", "pose-topdown", "--init", "topdown"], "--task pose-topdown takes neither"),
])
def test_a_wrong_init_or_rotation_is_one_line_with_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        _main(monkeypatch, *argv, "--out", str(tmp_path))
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_run_folder_without_checkpoints_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match=f"--init {tmp_path}: no checkpoint .* in {tmp_path / 'run'}"):
        ts.init_checkpoint(str(tmp_path), "unused", 4, 0)


def test_the_readmes_bench_commands_parse_and_name_known_recipes():
    import re
    import shlex

    import pose_bench_seeds as pbs

    readme = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "README.md")
    with open(readme, encoding="utf-8") as f:
        found = re.findall(r"`(?:python )?bench/(task_supernet|pose_bench_seeds)\.py([^`]*)`", f.read())
    assert {script for script, _ in found} == {"task_supernet", "pose_bench_seeds"}
    for script, tail in found:
        args = (ts if script == "task_supernet" else pbs).parser().parse_args(shlex.split(tail))
        if script == "pose_bench_seeds" and args.only:
            assert set(args.only) <= set(pbs.BENCHES[args.task].recipes), tail
