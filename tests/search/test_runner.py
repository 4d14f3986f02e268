"""``run_search`` end to end on the tiny supernet: outputs, resume, workers, constraints, CLI."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from scalenas.cli import main
from scalenas.errors import ScaleNASError
from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.search.parallel import make_pool, start_local_ray
from scalenas.search.runner import run_search
from scalenas.space.arch import Arch


def _log(run):
    with open(os.path.join(run, "evaluations.jsonl")) as f:
        return [json.loads(x) for x in f]


def _fingerprint(run):
    """What must not depend on interruptions or worker counts: every (hash, metric, kind, generation)
    evaluated, and the final front."""
    with open(os.path.join(run, "pareto.json")) as f:
        doc = json.load(f)
    evals = sorted((r["hash"], r["metric"], r["kind"], r["generation"]) for r in _log(run))
    return evals, [(m["hash"], m["metric"]) for m in doc["front"]]


def _per_arch(run):
    """Every metric the task reported and the BN layers calibrated, by arch."""
    return {r["hash"]: (r["metrics"], r["calib_bn"]) for r in _log(run)}


def _factory_calling_first(before):
    """An ``evaluator_factory`` whose evaluators call ``before()`` ahead of every real evaluation."""
    def factory(supernet, task, spec):
        ev = Evaluator(supernet, task, spec)

        class Hooked:
            def evaluate(self, arch):
                before()
                return ev.evaluate(arch)
        return Hooked()
    return factory


@pytest.fixture(scope="module")
def straight(supernet_ckpt, search_cfg, tmp_path_factory):
    run = str(tmp_path_factory.mktemp("straight") / "run")
    summary = run_search(supernet_ckpt, run, search_cfg(), progress=False)
    return run, summary


def test_outputs_references_and_pick(straight, tmp_path, capsys):
    run, summary = straight
    for f in ("config.yaml", "versions.json", "evaluations.jsonl", "state.json", "pareto.json", "pareto.png"):
        assert os.path.getsize(os.path.join(run, f)) > 0, f
    log = _log(run)
    hashes = [r["hash"] for r in log]
    assert len(hashes) == len(set(hashes)) == summary["num_evaluated"] == 2 + 8 + 3 * 6
    # the tiny space has no depth 4, so no HRNet point: largest and smallest are the references
    assert [r["kind"] for r in log[:2]] == ["reference", "reference"]
    assert set(summary["references"]) == {"largest", "smallest"}
    with open(os.path.join(run, "pareto.json")) as f:
        doc = json.load(f)
    assert doc["metric_name"] == "R2" and doc["objectives"] == ["metric", "gflops"]
    front = doc["front"]
    assert front and front == summary["front"]
    for m in front:
        assert {"arch", "hash", "metric", "params", "gflops_2p30", "gflops_1e9", "latency_ms"} <= set(m)
        assert Arch.from_dict(m["arch"]).hash == m["hash"]
        assert m["gflops_1e9"] == pytest.approx(m["gflops_2p30"] * 2**30 / 1e9)
    # the front is a staircase: costlier members have a better metric
    assert [m["gflops_2p30"] for m in front] == sorted(m["gflops_2p30"] for m in front)
    assert all(b["metric"] > a["metric"] for a, b in zip(front, front[1:]))
    # pick: the best metric under a budget between the cheapest and the costliest member
    budget = (front[0]["gflops_2p30"] + front[-1]["gflops_2p30"]) / 2
    out = tmp_path / "arch.json"
    assert main(["search", "pick", run, "--max-gflops", str(budget), "-o", str(out)]) == 0
    info = json.loads(capsys.readouterr().out.split("\narch ")[0])
    best = max((r for r in log if r["gflops_2p30"] <= budget), key=lambda r: r["metric"])
    assert info["hash"] == best["hash"] and Arch.load(str(out)).hash == best["hash"]
    assert main(["search", "pick", run, "--max-gflops", "1e-9"]) == 2
    assert "no evaluated arch fits" in capsys.readouterr().err


def test_stop_and_resume_equals_straight(search_cfg, straight, supernet_ckpt, tmp_path):
    run = str(tmp_path / "run")
    run_search(supernet_ckpt, run, search_cfg(generations=1), progress=False)
    summary = run_search(supernet_ckpt, run, search_cfg(generations=3), resume=True, progress=False)
    assert summary["finished"]
    assert _fingerprint(run) == _fingerprint(straight[0])


def test_interrupted_generation_is_resumed_from_the_log(search_cfg, straight, supernet_ckpt, tmp_path):
    calls = {"n": 0}

    def crash_after_14():
        calls["n"] += 1
        if calls["n"] > 14:  # in the middle of generation 1 (refs 2 + initial 8 + 4 of 6)
            raise KeyboardInterrupt

    crashing = _factory_calling_first(crash_after_14)

    run = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run_search(supernet_ckpt, run, search_cfg(), progress=False, evaluator_factory=crashing)
    assert len(_log(run)) == 14
    with pytest.raises(ScaleNASError, match="--resume"):
        run_search(supernet_ckpt, run, search_cfg(), progress=False)

    counted = {"n": 0}
    counting = _factory_calling_first(lambda: counted.update(n=counted["n"] + 1))

    run_search(supernet_ckpt, run, search_cfg(), resume=True, progress=False, evaluator_factory=counting)
    assert counted["n"] == 28 - 14  # nothing evaluated twice
    assert _fingerprint(run) == _fingerprint(straight[0])


def test_sigkill_and_resume_from_the_cli(search_cfg, straight, supernet_ckpt, tmp_path):
    run = str(tmp_path / "run")
    overrides = [f"{k}={json.dumps(v)}" for k, v in search_cfg().items()]
    cmd = [sys.executable, "-m", "scalenas.cli", "search", supernet_ckpt, *overrides, "-o", run, "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    log = os.path.join(run, "evaluations.jsonl")
    deadline = time.time() + 240
    while p.poll() is None and time.time() < deadline:
        if os.path.exists(log) and sum(1 for _ in open(log)) >= 15:
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    n_before = len(_log(run))
    assert n_before < 28, "the search finished before the kill"
    q = subprocess.run(cmd + ["--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=300)
    assert q.returncode == 0, q.stderr.decode()[-2000:]
    assert _fingerprint(run) == _fingerprint(straight[0])


def _first_generation_matches_straight(run, straight_run) -> None:
    """``run`` (the small search cut to ``generations=1``) evaluated exactly the straight run's archs of
    generations 0 and 1 (references included) and got the same numbers for them."""
    assert _fingerprint(run)[0] == [e for e in _fingerprint(straight_run)[0] if e[3] <= 1]
    per_arch = _per_arch(run)
    assert per_arch == {h: v for h, v in _per_arch(straight_run).items() if h in per_arch}


def test_two_workers_match_one(search_cfg, straight, supernet_ckpt, tmp_path):
    # the first generation suffices to mix the two workers' results (16 of the straight run's 28 evaluations)
    run = str(tmp_path / "run")
    summary = run_search(supernet_ckpt, run, search_cfg(generations=1), workers=2, progress=False)
    assert summary["num_evaluated"] == 2 + 8 + 6
    _first_generation_matches_straight(run, straight[0])


def test_constraints_hold_in_a_real_run(search_cfg, supernet_ckpt, tmp_path):
    run = str(tmp_path / "run")
    # between the smallest (0.00986) and the largest (0.0138) subnet of the tiny space
    cfg = search_cfg(generations=2, constraints={"max_gflops": 0.0125, "gflops_window": [0.0105, 0.013],
                                                   "max_params_m": 0.4})
    summary = run_search(supernet_ckpt, run, cfg, progress=False)
    log = _log(run)
    refs = [r for r in log if r["kind"] == "reference"]
    assert refs and not any(r["feasible"] for r in refs)  # both references break the window
    cands = [r for r in log if r["kind"] != "reference"]
    assert len(cands) >= 10
    for r in cands + summary["front"]:
        assert 0.0105 <= r["gflops_2p30"] <= 0.0125 and r["params_m"] <= 0.4
    assert {m["hash"] for m in summary["front"]} <= {r["hash"] for r in cands}


def test_config_errors(search_cfg, supernet_ckpt, straight, tmp_path):
    with pytest.raises(ScaleNASError, match="search.popsize: unknown key"):
        run_search(supernet_ckpt, str(tmp_path / "a"), {"popsize": 3})
    with pytest.raises(ScaleNASError, match="latency"):
        run_search(supernet_ckpt, str(tmp_path / "a"), {"objectives": ["metric", "latency_ms"]})
    with pytest.raises(ScaleNASError, match=r"search.input_hw: .*multiples of 32 \(got \[100, 100\]\)$"):
        run_search(supernet_ckpt, str(tmp_path / "a"), {"input_hw": [100, 100]})
    with pytest.raises(ScaleNASError, match=r"search.seed \(3 -> 4\)"):
        run_search(supernet_ckpt, straight[0], search_cfg(seed=4), resume=True, progress=False)
    with pytest.raises(ScaleNASError, match="not found"):
        run_search(str(tmp_path / "none.pt"), str(tmp_path / "a"), {})
    with pytest.raises(ScaleNASError, match="'search' split is empty"):
        run_search(supernet_ckpt, str(tmp_path / "a"), {"task": {"num_search": 0}})


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["search", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("SUPERNET_CKPT", "search pick RUN", "--resume", "--workers", "--ray", "--max-gflops", "gflops_2p30"):
        assert word in out


@pytest.fixture(scope="module")
def ray_local():
    """One local 2-CPU Ray instance (no dashboard) for this module's Ray tests: starting one costs ~10 s."""
    import ray

    start_local_ray(ray, 2)
    yield ray
    ray.shutdown()


def test_ray_pool_matches_one_local_worker(ray_local, search_cfg, supernet_ckpt, straight, tmp_path):
    # the straight run's references, initial population and first generation (16 of its 28 evaluations:
    # Ray's actors are slow on 2 cores), spread over two actors: the same archs and the same numbers
    run = str(tmp_path / "run")
    summary = run_search(supernet_ckpt, run, search_cfg(generations=1), workers=2, ray="local", progress=False)
    assert summary["num_evaluated"] == 2 + 8 + 6
    _first_generation_matches_straight(run, straight[0])
    with open(os.path.join(run, "config.yaml")) as f:
        execution = yaml.safe_load(f)["execution"]
    assert (execution["ray"], execution["workers"], execution["threads_per_worker"]) == ("local", 2, 1)
    # the pool killed its actors but left the instance it found running, as it did not start it
    assert ray_local.is_initialized()
    deadline = time.monotonic() + 20
    while ray_local.available_resources().get("CPU") != 2.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_local.available_resources().get("CPU") == 2.0


def test_ray_worker_errors_arrive_as_one_line(ray_local, supernet_ckpt, straight):
    """A worker that cannot build its evaluator raises the same ScaleNASError as a local one would,
    not Ray's multi-line ActorDiedError."""
    from scalenas.tasks.base import build_task

    task = {"name": "no-such-task"}
    with pytest.raises(ScaleNASError) as local:
        build_task(task)
    pool = make_pool(EvalSpec(checkpoint=supernet_ckpt, task=task, device="cpu", threads=1), workers=1, ray="local")
    try:
        with pytest.raises(ScaleNASError) as remote:
            next(pool.imap([Arch.from_dict(_log(straight[0])[0]["arch"])]))
    finally:
        pool.close()
    assert str(remote.value) == str(local.value) and "\n" not in str(remote.value)


def test_latency_table_objective_and_constraint(search_cfg, supernet_ckpt, tmp_path):
    import torch

    from scalenas.search.latency import LatencySettings, LatencyTable
    from scalenas.train.checkpoint import load_supernet

    net, _ = load_supernet(supernet_ckpt)
    prev = torch.get_num_threads()
    try:
        table = LatencyTable.build(net.space, net.head_spec, LatencySettings((64, 64), threads=1, warmup=1, repeats=2),
                                   n_fit=8, n_holdout=0)
    finally:
        torch.set_num_threads(prev)
    path = str(tmp_path / "table.json")
    table.save(path)
    limit = 0.98 * table(net.space.largest())
    run = str(tmp_path / "run")
    cfg = search_cfg(generations=1, latency="table", latency_table=path, objectives=["metric", "gflops", "latency_ms"],
                     constraints={"max_latency_ms": limit})
    summary = run_search(supernet_ckpt, run, cfg, progress=False)
    log = _log(run)
    largest = [r for r in log if r["hash"] == net.space.largest().hash][0]
    assert not largest["feasible"] and "latency_ms" in largest["violations"][0]
    for r in log:
        assert r["latency_ms"] == pytest.approx(table(Arch.from_dict(r["arch"])))
        if r["kind"] != "reference":
            assert r["latency_ms"] <= limit
    with open(os.path.join(run, "pareto.json")) as f:
        doc = json.load(f)
    assert doc["latency"]["mode"] == "table" and doc["objectives"] == ["metric", "gflops", "latency_ms"]
    assert all(m["latency_ms"] <= limit for m in summary["front"])


def test_measured_latency_is_logged_and_reused_on_resume(search_cfg, supernet_ckpt, tmp_path):
    run = str(tmp_path / "run")
    lat = {"latency": "measure", "latency_threads": 1, "latency_repeats": 2, "latency_warmup": 1, "initial": 4,
           "population": 3, "parents": 3, "references": False}
    run_search(supernet_ckpt, run, search_cfg(generations=1, **lat), progress=False)
    run_search(supernet_ckpt, run, search_cfg(generations=2, **lat), resume=True, progress=False)
    with open(os.path.join(run, "latency.jsonl")) as f:
        measured = [json.loads(x) for x in f]
    log = _log(run)
    assert len(log) == 4 + 3 + 3
    assert len({m["hash"] for m in measured}) == len(measured)  # never measured twice
    by_hash = {m["hash"]: m["latency_ms"] for m in measured}
    assert all(r["latency_ms"] == by_hash[r["hash"]] > 0 for r in log)


def test_cli_config_file_and_overrides(search_cfg, supernet_ckpt, tmp_path, capsys):
    import torch

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"steps": 5}, "search": search_cfg(initial=4, generations=0)}))
    run = tmp_path / "run"
    prev = torch.get_num_threads()
    try:
        rc = main(["search", supernet_ckpt, str(cfg), "population=2", "search.seed=7", "--strategy", "random",
                   "-o", str(run), "--quiet"])
    finally:
        torch.set_num_threads(prev)
    assert rc == 0
    out = capsys.readouterr().out
    assert "archs evaluated" in out and "GFLOPs(2^30)" in out
    saved = yaml.safe_load((run / "config.yaml").read_text())["search"]
    assert (saved["initial"], saved["population"], saved["seed"], saved["strategy"]) == (4, 2, 7, "random")
    assert len(_log(str(run))) == 2 + 4
    assert main(["search", supernet_ckpt, str(cfg), "bogus=1", "-o", str(tmp_path / "x")]) == 2
    assert "search.bogus: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["autoshrink", "gram"])
def test_topology_aware_strategies_run_and_resume(name, search_cfg, supernet_ckpt, tmp_path):
    over = {"strategy": name, "initial": 4, "population": 3, "autoshrink": {"candidates": 3}, "gram": {"budgets": 1}}
    whole = str(tmp_path / "whole")
    summary = run_search(supernet_ckpt, whole, search_cfg(**over), progress=False)
    assert summary["finished"] and summary["strategy"] == name
    kinds = {r["kind"] for r in _log(whole)}
    assert kinds == {"reference", "initial", {"autoshrink": "shrink", "gram": "gram"}[name]}
    run = str(tmp_path / "run")
    run_search(supernet_ckpt, run, search_cfg(**{**over, "generations": 1}), progress=False)
    run_search(supernet_ckpt, run, search_cfg(**over), resume=True, progress=False)
    assert _fingerprint(run) == _fingerprint(whole)


def test_a_run_saved_before_new_settings_existed_resumes(search_cfg, straight, supernet_ckpt, tmp_path):
    import shutil

    run = str(tmp_path / "run")
    shutil.copytree(straight[0], run)
    path = os.path.join(run, "config.yaml")
    meta = yaml.safe_load(open(path))
    del meta["search"]["autoshrink"], meta["search"]["gram"]  # as written before these settings existed
    with open(path, "w") as f:
        yaml.safe_dump(meta, f)
    assert run_search(supernet_ckpt, run, search_cfg(), resume=True, progress=False)["finished"]
