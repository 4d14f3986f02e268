"""``bench/pose_bench_seeds.py``: a row is the pose bench's own JSON record with its recipe, the report
marks a run as meeting the bar only when all three subnets reach it (top-down: within 20 minutes), and
summarises each recipe over its runs; the real rows are the bench's (~10-30 minutes each)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))

import pose_bench_seeds as tbs  # noqa: E402


def _row(recipe, seed, aps, wall_min=18.0, threads=1):
    return {"recipe": recipe, "seed": seed, "threads": threads, "steps": 6000, "wall_s": wall_min * 60,
            "after": dict(zip(tbs.SUBNETS, aps))}


def test_report_marks_the_bar_and_summarises_each_recipe():
    rows = [_row("warmup20", 0, (63.19, 60.43, 62.38)),
            _row("warmup20", 1, (63.27, 60.25, 59.90)),       # hrnet under 60
            _row("lr_1e-2", 0, (63.12, 60.76, 60.84), 20.3),  # over 20 minutes
            _row("lr_1e-2", 2, (62.83, 61.18, 60.03), 17.5)]
    md = tbs.report("pose-topdown", rows)
    assert "| warmup20 | 0 | 1 | 6000 | 18.0 | 63.19 | 60.43 | 62.38 | yes |" in md
    assert "| warmup20 | 1 | 1 | 6000 | 18.0 | 63.27 | 60.25 | 59.90 | no |" in md
    assert "| lr_1e-2 | 0 | 1 | 6000 | 20.3 | 63.12 | 60.76 | 60.84 | no |" in md
    assert "| warmup20 | 2 | 63.23 ± 0.06 | 60.34 ± 0.13 | 61.14 ± 1.75 | 59.90 | 1 of 2 |" in md
    assert "| lr_1e-2 | 2 | 62.97 ± 0.21 | 60.97 ± 0.30 | 60.44 ± 0.57 | 60.03 | 1 of 2 |" in md


def test_a_row_is_the_benchs_record(tmp_path, monkeypatch):
    tiny = ["--steps", "2", "--train-images", "20", "--val-images", "2", "--width", "4", "--size", "96", "--batch", "4"]
    monkeypatch.setitem(tbs.BENCHES["pose-topdown"].recipes, "tiny", tiny)
    r = tbs.row(str(tmp_path), "pose-topdown", "tiny", 3)
    assert r["recipe"] == "tiny" and r["args"] == tiny and r["seed"] == 3 and r["threads"] == 1
    assert r["steps"] == 2 and r["train_images"] == 20 and set(r["after"]) == set(tbs.SUBNETS)
    assert os.path.isdir(os.path.join(tmp_path, "runs", "tiny-seed3", "run"))


def test_a_failed_run_is_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setitem(tbs.BENCHES["pose-topdown"].recipes, "bad", ["--steps", "notanumber"])
    with pytest.raises(SystemExit, match="task_supernet.py .*--steps notanumber.* failed"):
        tbs.row(str(tmp_path), "pose-topdown", "bad", 0)


def test_rows_on_more_threads_are_named_apart_and_never_share_a_core(monkeypatch, capsys):
    assert tbs.row_name("warmup1000", 0) == "warmup1000-seed0"
    assert tbs.row_name("warmup1000", 0, 2) == "warmup1000-seed0-2threads"
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(sys, "argv", ["pose_bench_seeds.py", "--out", "unused", "--threads", str(cores),
                                      "--workers", "2"])
    with pytest.raises(SystemExit) as e:
        tbs.main()
    assert e.value.code == 2
    assert f"--threads {cores} x --workers 2 must be between 1 and this process's {cores} cores" in \
        capsys.readouterr().err


def test_bottomup_rows_meet_the_aim_without_a_clock_and_show_their_head_start():
    def bu(seed, aps, start_min=None):
        r = {**_row("topdown_256_960", seed, aps, wall_min=31.0), "steps": 2000}
        return {**r, "init_record": {"wall_s": start_min * 60}} if start_min else r

    rows = [bu(0, (10.2, 10.9, 11.2), 10.4), bu(1, (9.9, 12.0, 12.5), 10.1)]  # 31 min: no clock for bottom-up
    md = tbs.report("pose-bottomup", rows)
    assert "# Bottom-up bench over seeds" in md and "within" not in md
    assert "| topdown_256_960 | 0 | 1 | 2000 | 31.0 | 10.4 | 10.20 | 10.90 | 11.20 | yes |" in md
    assert "| topdown_256_960 | 1 | 1 | 2000 | 31.0 | 10.1 | 9.90 | 12.00 | 12.50 | no |" in md
    assert "| topdown_256_960 | 2 | 10.05 ± 0.21 | 11.45 ± 0.78 | 11.85 ± 0.92 | 9.90 | 1 of 2 |" in md
    assert "head start" not in tbs.report("pose-topdown", [_row("w16_3000", 0, (70, 65, 66))])


def test_recipes_are_named_once_across_tasks_and_an_unknown_one_is_refused(monkeypatch, capsys):
    names = [n for b in tbs.BENCHES.values() for n in b.recipes]
    assert len(names) == len(set(names))  # a row's recipe names its task
    monkeypatch.setattr(sys, "argv", ["pose_bench_seeds.py", "--task", "pose-bottomup", "--out", "unused",
                                      "--only", "w16_3000"])
    with pytest.raises(SystemExit) as e:
        tbs.main()
    assert e.value.code == 2
    assert "--only: unknown pose-bottomup recipe(s) w16_3000; known: topdown_256_960_val40," in capsys.readouterr().err
