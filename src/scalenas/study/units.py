"""The units of a study: each is one independent, deterministic job whose result is written
atomically to ``DIR/units/<key>.json``; a unit whose file exists is done and never re-run.

A unit is plain data, ``{"key", "kind", "params"}``, so that a worker process or a Ray task can run
it from the study folder and the resolved config alone. Kinds:

* ``supernet``: train a supernet with one sampler and seed (``SupernetTrainer``, resumed from its
  newest checkpoint when a killed study left one);
* ``standalone``: train one arch from scratch with the same recipe (the ``fixed`` sampler: the
  supernet's own initialisation, only that subnet's weights trained) and score it on the test split;
* ``scores``: inherited-weight scores of archs of a trained supernet (``search.evaluator``: BN
  recalibration, then the metric on a split), optionally on fewer images (``max_images`` from
  ``first_image``: e.g. one half of the split) or calibration images;
* ``halving``: the same archs scored by ``search.halving.successive_halving``;
* ``search``: one search (``search.runner.run_search``) with a strategy and seed on a supernet,
  then its front scored on the test split with inherited weights;
* ``shrink``: HR-NAS's shrink search (``train.shrink.train_shrink``) of an ``hrnas`` network to a
  FLOPs target with the study's data and recipe, then BN recalibration as the search evaluator does
  it and the metric on the test split (``bench/families_front.py``).

Wall times are kept in the unit files (``seconds``) but not in ``study.json``, which must be the
same whatever the machine's load.
"""
from __future__ import annotations

import os
import time

from scalenas.deploy.extract import evaluate_net, make_calibrator, recalibrate
from scalenas.search.config import SearchCfg
from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.search.halving import successive_halving
from scalenas.search.objectives import objective_values, parse_objectives
from scalenas.search.pareto import select_by_layers
from scalenas.search.pareto_doc import load_run
from scalenas.search.runner import run_search
from scalenas.space.arch import Arch
from scalenas.study.config import StudyConfig, run_config_dict
from scalenas.tasks.base import build_task
from scalenas.train.checkpoint import load_supernet
from scalenas.train.config import RunConfig
from scalenas.train.engine import train_supernet
from scalenas.train.shrink import ShrinkRunConfig, train_shrink
from scalenas.utils.io import atomic_write_json, read_json
from scalenas.utils.runtime import resolve_device, setup_process


def unit_path(root: str, key: str) -> str:
    return os.path.join(root, "units", key + ".json")


def run_dir(root: str, key: str) -> str:
    return os.path.join(root, "runs", key)


def load_result(root: str, key: str) -> dict | None:
    """The result of a finished unit, None when it has not finished."""
    path = unit_path(root, key)
    return read_json(path, "study unit result")["result"] if os.path.exists(path) else None


def execute(root: str, cfg_dict: dict, unit: dict, threads: int | None = None) -> str:
    """Run ``unit`` (in this process, a worker or a Ray task) and write its result file; returns the key."""
    if threads:
        setup_process(threads)
    cfg = StudyConfig.model_validate(cfg_dict)
    t0 = time.perf_counter()
    result = KINDS[unit["kind"]](root, cfg, unit["params"], threads)
    atomic_write_json(unit_path(root, unit["key"]), {**unit, "result": result,
                                                     "seconds": round(time.perf_counter() - t0, 2)})
    return unit["key"]


def _checkpoint(root: str, supernet_key: str) -> str:
    return os.path.join(root, load_result(root, supernet_key)["checkpoint"])


def _train(root: str, cfg: StudyConfig, key: str, seed: int, sampler: dict, images: int, threads) -> dict:
    rc = RunConfig.model_validate(run_config_dict(cfg, run_dir(root, key), seed, sampler, images, threads))
    res = train_supernet(rc, resume="auto")
    return {"checkpoint": os.path.relpath(res["checkpoint"], root), "steps": res["steps"],
            "images": res["steps"] * rc.train.batch_size}


def supernet_unit(root: str, cfg: StudyConfig, p: dict, threads) -> dict:
    out = _train(root, cfg, p["key"], p["seed"], {"kind": p["sampler"]}, p["images"], threads)
    return {**out, "sampler": p["sampler"], "seed": p["seed"], "subnets_per_step": p["subnets_per_step"]}


def standalone_unit(root: str, cfg: StudyConfig, p: dict, threads) -> dict:
    out = _train(root, cfg, p["key"], p["seed"], {"kind": "fixed", "arch": p["arch"]}, p["images"], threads)
    device = resolve_device(cfg.search.get("device", "auto"), "search.device")
    net, _ = load_supernet(os.path.join(root, out["checkpoint"]))
    arch = Arch.from_dict(p["arch"])
    net.set_active(arch)
    task = build_task(cfg.task)
    # BN statistics from its own training (no recalibration: nothing else trained them)
    metric = float(task.evaluate(net.to(device), "test", device)[task.metric_name])
    return {**out, "hash": arch.hash, "seed": p["seed"], "metric": metric}


def _evaluator(root: str, cfg: StudyConfig, supernet_key: str, threads, split: str = "search",
               calib_images: int | None = None) -> Evaluator:
    s = cfg.search
    return Evaluator.from_spec(EvalSpec(
        checkpoint=_checkpoint(root, supernet_key), task=cfg.task, split=split,
        calib_images=calib_images or s.get("calib_images", 64), calib_batch_size=s.get("calib_batch_size", 16),
        device=s.get("device", "auto"), threads=threads))


def scores_unit(root: str, cfg: StudyConfig, p: dict, threads) -> dict:
    ev = _evaluator(root, cfg, p["supernet"], threads, p.get("split", "search"), p.get("calib_images"))
    return {"metrics": [ev.evaluate(Arch.from_dict(a), p.get("max_images"), p.get("first_image", 0))["metric"]
                        for a in p["archs"]]}


def halving_unit(root: str, cfg: StudyConfig, p: dict, threads) -> dict:
    ev = _evaluator(root, cfg, p["supernet"], threads)
    archs = [Arch.from_dict(a) for a in p["archs"]]
    objectives = parse_objectives(cfg.search.get("objectives", ["metric", "gflops"]))
    costs = {a.hash: c for a, c in zip(archs, p["costs"])}

    def score(batch, n):
        return [ev.evaluate(a, n) for a in batch]

    def select(records, k):
        values = [objective_values({**r, **costs[r["hash"]]}, objectives) for r in records]
        return select_by_layers(values, objectives, k)

    recs, spent = successive_halving(archs, score, p["full_images"], p["min_images"], p["eta"], select)
    return {"metrics": [r["metric"] for r in recs], "eval_images": [r["eval_images"] for r in recs],
            "images_scored": spent, "evaluations": sum(r["rung"] + 1 for r in recs)}


def search_unit(root: str, cfg: StudyConfig, p: dict, threads) -> dict:
    out = run_dir(root, p["key"])
    resume = any(os.path.exists(os.path.join(out, f)) for f in ("state.json", "evaluations.jsonl"))
    section = {**cfg.search, "strategy": p["strategy"], "seed": p["seed"], "workers": 1}
    run_search(_checkpoint(root, p["supernet"]), out, section, resume=resume, progress=False)
    doc, records = load_run(out)  # the records in evaluation order (the log's)
    evals = [{"hash": r["hash"], "metric": r["metric"], "gflops": r["gflops_2p30"], "arch": r["arch"]}
             for r in records]
    ev = _evaluator(root, cfg, p["supernet"], threads, split="test")
    front = [{"hash": m["hash"], "search_metric": m["metric"], "gflops": m["gflops_2p30"],
              "test_metric": ev.evaluate(Arch.from_dict(m["arch"]))["metric"]} for m in doc["front"]]
    return {"strategy": p["strategy"], "seed": p["seed"], "evaluations": evals, "front": front}


def shrink_unit(root: str, cfg: StudyConfig, p: dict, threads) -> dict:
    """``p["config"]``: a shrink run config (its run_dir, task and threads are set here); the shrunk
    net recalibrated on the search's calibration images, then scored on the test split."""
    d = p["config"]
    d = {**d, "run_dir": run_dir(root, p["key"]), "task": cfg.task, "train": {**d["train"], "threads": threads}}
    rc = ShrinkRunConfig.model_validate(d)
    t0 = time.perf_counter()
    net, res = train_shrink(rc, resume="auto")
    train_s = time.perf_counter() - t0
    task = build_task(cfg.task)
    s = cfg.search
    device = resolve_device(s.get("device", "auto"), "search.device")
    calib = {"num_images": s.get("calib_images", 64), "batch_size": s.get("calib_batch_size", 16),
             "seed": s.get("calib_seed", SearchCfg().calib_seed)}
    net.to(device)
    recalibrate(net, make_calibrator(task, calib, device))
    metric = float(evaluate_net(net, task, "test", device)[task.metric_name])
    return {"target_gflops": res["target_gflops"], "gflops": res["gflops"], "macs": res["macs"],
            "gflops_convention": res["gflops_convention"], "reached": res["reached"], "steps": res["steps"],
            "images": res["steps"] * rc.train.batch_size, "shrink_events": len(res["events"]),
            "arch_hash": res["arch"].hash, "test_metric": metric, "train_seconds": round(train_s, 2)}


KINDS = {"supernet": supernet_unit, "standalone": standalone_unit, "scores": scores_unit, "halving": halving_unit,
         "search": search_unit, "shrink": shrink_unit}
