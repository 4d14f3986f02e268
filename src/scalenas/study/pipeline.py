"""``run_study``: the study as a list of steps (data, plan, estimate, waves A-C, report), resumable
because every unit writes its own result (``study/units.py``) and the plan is a pure function of
the config: re-running with the same ``-o`` skips every finished unit, and a folder that holds a
study with other settings is refused, naming the first key that differs.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch
import yaml

from scalenas.config import load_yaml
from scalenas.errors import ScaleNASError
from scalenas.nets.supernet import SuperScaleNet
from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.space.arch import Arch
from scalenas.study.config import StudyConfig, load_study_config, run_config_dict
from scalenas.study.parallel import pending, run_units, threads_per_worker
from scalenas.study.plan import MAIN, Plan
from scalenas.study.report import write_report
from scalenas.study.units import load_result
from scalenas.tasks.base import build_task
from scalenas.train.config import RunConfig
from scalenas.train.engine import time_steps
from scalenas.utils.io import atomic_write_json, atomic_write_text, make_output_dir, read_json
from scalenas.utils.runtime import setup_process, torch_threads


def say(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_study(config: str, out: str, quick: bool = False, workers: int = 1, ray: str | None = None,
              overrides: list[str] | None = None, dry_run: bool = False, log: Callable[[str], None] = say) -> dict:
    """Run (or continue) the study of ``config`` in ``out``; returns ``{"json", "md", "plots", "estimate_s"}``
    (``dry_run``: the plan and estimate only)."""
    if workers < 1:
        raise ScaleNASError("--workers: must be at least 1")
    setup_process()
    cfg = load_study_config(config, overrides, quick)
    out = os.path.abspath(make_output_dir(out, "study folder"))
    cfg = with_data_root(cfg, out)
    cfg_dict = cfg.model_dump(mode="json")
    check_or_write_config(out, cfg_dict)  # before anything is written: a folder of another study is refused
    make_data(cfg, log)
    plan = Plan.build(cfg)
    est = estimate(plan, out, workers, 3 if quick else 12, log)
    if dry_run:
        return {"estimate_s": est, "units": len(plan.wave_a()) + len(plan.wave_b()) + cfg.study.seeds}
    t0 = time.perf_counter()
    for name, units in (("A (supernets, stand-alone fidelity set)", plan.wave_a()),
                        ("B (inherited scores, searches, evaluation budget)", plan.wave_b())):
        log(f"wave {name}: {len(pending(out, units))} of {len(units)} unit(s) to run")
        run_units(out, cfg_dict, units, workers, ray, log)
    searched = pick_searched(plan, out)
    units = plan.wave_c(searched)
    log(f"wave C (the searched arch from scratch): {len(pending(out, units))} of {len(units)} unit(s) to run")
    run_units(out, cfg_dict, units, workers, ray, log)
    res = write_report(plan, out, searched, est)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {res['md']}")
    return {**res, "estimate_s": est}


def with_data_root(cfg: StudyConfig, out: str) -> StudyConfig:
    """With ``study.data``, the task reads the data generated into ``out/data``."""
    if cfg.study.data is None:
        return cfg
    return cfg.model_copy(update={"task": {**cfg.task, "root": os.path.join(out, "data")}})


def make_data(cfg: StudyConfig, log) -> None:
    """Generate ``study.data`` into ``task.root`` once (a marker file says that it finished, and how)."""
    d = cfg.study.data
    if d is None:
        return
    root = cfg.task["root"]
    marker = os.path.join(root, ".study-data.json")
    want = d.model_dump(mode="json")
    if not (os.path.exists(marker) and read_json(marker) == want):
        if d.generator == "synth-seg":
            from scalenas.data.synth_seg import generate
        else:
            from scalenas.data.synth_pose import generate
        extra = {"heights": tuple(d.heights)} if d.heights is not None else {}
        log(generate(root, train=d.train, val=d.val, test=d.test, size=tuple(d.size), seed=d.seed, **extra))
        atomic_write_json(marker, want)


def check_or_write_config(out: str, cfg_dict: dict) -> None:
    path = os.path.join(out, "config.yaml")
    if os.path.exists(path):
        saved = load_yaml(path) or {}
        diff = _first_difference(saved, cfg_dict)
        if diff:
            raise ScaleNASError(f"{out}: holds a study with other settings ({diff}: {_get(saved, diff)!r} -> "
                                f"{_get(cfg_dict, diff)!r}); use another -o folder or the same config")
    atomic_write_text(path, yaml.safe_dump(cfg_dict, sort_keys=False))


def _first_difference(a, b, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = _first_difference(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
            if d:
                return d
        return None
    return None if a == b else (prefix or "(config)")


def _get(d: dict, dotted: str):
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d


def pick_searched(plan: Plan, out: str) -> dict | None:
    """The best arch (search-split metric) of the main search at no more GFLOPs than hrnet, hrnet
    itself excluded; None when the search found none."""
    res = load_result(out, plan.search("evolution", MAIN, 0)["key"])
    hrnet = plan.arch_of("hrnet")
    ok = [e for e in res["evaluations"] if e["gflops"] <= hrnet["gflops"] + 1e-9 and e["hash"] != hrnet["hash"]]
    if not ok:
        return None
    best = max(ok, key=lambda e: (e["metric"], -e["gflops"], e["hash"]))
    return {"name": "searched", "hash": best["hash"], "arch": best["arch"], "gflops": best["gflops"],
            "search_metric": best["metric"]}


# ---- the estimate printed at the start ------------------------------------------------------------
PROBE_FILE = "probe.json"
#: seconds a unit spends besides its steps and evaluations (building the supernet, loading and writing
#: checkpoints, a search's pareto.png): the quick study's 33 units took 86.6 s where their probed steps
#: and evaluations predicted 48 s, i.e. 1.2 s more per unit (on the loaded 2-core machine)
UNIT_OVERHEAD_S = 1.2


def probe(plan: Plan, out: str, steps: int, threads: int | None) -> dict:
    """Seconds per training step of each sampler (and of a fixed arch) and per search evaluation with
    the units' ``threads``, measured once on this machine and kept in ``out/probe.json`` (a rerun with
    the same threads reuses it)."""
    path = os.path.join(out, PROBE_FILE)
    with torch_threads(threads):
        threads = torch.get_num_threads()
        if os.path.exists(path) and read_json(path, "study probe").get("threads") == threads:
            return read_json(path, "study probe")
        cfg, n = plan.cfg, steps + 1  # the first step (start-up) is left out
        step_s = {}
        for kind in list(cfg.study.samplers) + ["fixed"]:
            sampler = {"kind": kind, **({"arch": plan.arch_of("hrnet")["arch"]} if kind == "fixed" else {})}
            rc = RunConfig.model_validate(run_config_dict(cfg, os.path.join(out, "probe"), 0, sampler, 10 ** 6,
                                                          threads))
            step_s[kind] = statistics.fmean(time_steps(rc, n)[1:])
        task = build_task(cfg.task)
        s = cfg.search
        ev = Evaluator(SuperScaleNet(cfg.space.build(), task.head), task,
                       EvalSpec(checkpoint="", task=cfg.task, calib_images=s.get("calib_images", 64),
                                calib_batch_size=s.get("calib_batch_size", 16), device=s.get("device", "auto")))
        ev.evaluate(Arch.from_dict(plan.arch_of("hrnet")["arch"]))  # the first evaluation warms up
        evals = [ev.evaluate(Arch.from_dict(a["arch"]))["eval_s"] for a in plan.archs[:3]]
    res = {"threads": threads, "step_s": step_s, "eval_s": statistics.fmean(evals)}
    atomic_write_json(path, res)
    return res


def estimate(plan: Plan, out: str, workers: int, probe_steps: int, log) -> float:
    """Seconds the whole study should take from ``probe`` figures: per wave, the units' summed time
    spread over the workers (never less than its longest unit)."""
    threads = plan.cfg.study.threads or (threads_per_worker(workers) if workers > 1 else None)
    p = probe(plan, out, probe_steps, threads)
    cfg, st = plan.cfg, plan.cfg.study
    bs = cfg.train.batch_size
    s = cfg.search
    n_search = s.get("initial", 1000) + s.get("population", 100) * s.get("generations", 20) + 3 + 8

    def unit_s(u: dict) -> float:
        prm = u["params"]
        if u["kind"] == "supernet":
            work = prm["images"] // bs * p["step_s"][prm["sampler"]]
        elif u["kind"] == "standalone":
            work = prm["images"] // bs * p["step_s"]["fixed"]
        elif u["kind"] == "search":
            work = n_search * p["eval_s"]
        else:
            work = len(plan.archs) * p["eval_s"] * (2 if u["kind"] == "halving" else 1)
        return UNIT_OVERHEAD_S + work

    waves = [plan.wave_a(), plan.wave_b(), [plan.standalone(plan.arch_of("hrnet"), s) for s in range(st.seeds)]]
    total = sum(max(sum(map(unit_s, w)) / workers, max(map(unit_s, w))) for w in waves if w)
    log(f"estimate: {total / 60:.1f} min with {workers} worker(s) of {p['threads']} thread(s) "
        f"(measured {1e3 * p['step_s']['grouped']:.0f} ms per grouped step, {1e3 * p['eval_s']:.0f} ms per "
        f"evaluation; {len(plan.wave_a()) + len(plan.wave_b()) + st.seeds} units)")
    return total
