"""The demo pipeline: synthetic data -> supernet (grouped sampling) -> evolutionary search ->
extract + BN-calibrate the best models along the front and the hrnet point -> evaluate them on the
held-out test split -> export one to ONNX with a parity check -> report.

Each phase records its completion in ``demo_state.json``; an interrupted demo re-run with the same
``-o`` continues where it stopped (training resumes from its newest checkpoint, the search from its
last generation). Sizes that depend on this machine's speed (training steps, search budget) are
measured once and stored, so a resumed run keeps them.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import torch

from scalenas.demo.settings import phase_budgets, settings_for
from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_json, package_versions
from scalenas.utils.runtime import setup_process

STATE_FILE = "demo_state.json"


class DemoState:
    """Completed phases and stored decisions, per task, written atomically after each phase."""

    def __init__(self, out: str):
        self.path = os.path.join(out, STATE_FILE)
        self.data = json.load(open(self.path)) if os.path.exists(self.path) else {}

    def get(self, task: str, key: str, default=None):
        return self.data.get(task, {}).get(key, default)

    def set(self, task: str, key: str, value) -> None:
        self.data.setdefault(task, {})[key] = value
        atomic_write_json(self.path, self.data)


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_demo(out: str = "demo-out", task: str = "seg", budget_minutes: float = 12.0, fresh: bool = False) -> dict:
    if task not in ("seg", "pose", "both"):
        raise ScaleNASError(f"--task {task!r}: choose seg, pose or both")
    if budget_minutes <= 0:
        raise ScaleNASError("--budget-minutes must be positive")
    setup_process()
    out = os.path.abspath(out)
    if fresh and os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    state = DemoState(out)
    tasks = ["seg", "pose"] if task == "both" else [task]
    t0 = time.time()
    results = {}
    for i, t in enumerate(tasks):
        remaining = budget_minutes * 60 - (time.time() - t0)
        budget = state.get(t, "budget_s") or max(60.0, remaining / (len(tasks) - i))
        state.set(t, "budget_s", budget)
        say(f"task {t}: budget {budget / 60:.1f} min")
        results[t] = run_task_demo(t, os.path.join(out, t), budget, state)
    from scalenas.demo.report import write_report

    report = write_report(out, results, budget_minutes, time.time() - t0)
    say(f"report: {report}")
    return {"report": report, "results": results, "seconds": time.time() - t0}


def _probe_step_seconds(cfg, batches: int = 3) -> float:
    """Seconds of one training step of the grouped sampler's average subnet, measured on this machine."""
    from scalenas.nets.supernet import SuperScaleNet
    from scalenas.tasks.base import build_task
    from scalenas.train.engine import space_of
    from scalenas.train.step import tree_float
    from scalenas.utils.runtime import resolve_amp

    task = build_task(cfg.task)
    space = space_of(cfg)
    net = SuperScaleNet(space, task.head).to(memory_format=torch.channels_last).train()
    ds = task.build_dataset("train", train=True)
    batch = task.collate([ds[i % len(ds)] for i in range(cfg.train.batch_size)])
    x = batch["image"].contiguous(memory_format=torch.channels_last)
    amp = resolve_amp(cfg.train.amp, "cpu") == "bf16"
    import random

    archs = [space.sample(random.Random(i), 0.5, pose_rule=task.head.pose_rule) for i in range(batches + 1)]
    times = []
    for a in archs:
        net.set_active(a)
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = net(x)
        loss, _ = task.loss(tree_float(out), batch)
        loss.backward()
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[len(times[1:]) // 2]


def _probe_eval_seconds(ckpt_path: str, task_cfg: dict, search: dict) -> float:
    """Seconds of one search evaluation (BN recalibration + metric on the search split) of the trained
    supernet's average subnet, measured on this machine. Measured rather than derived from the training
    step because decoding costs differ by task: pose grouping took 2x the forward-based estimate."""
    import random

    from scalenas.search.evaluator import EvalSpec, Evaluator

    ev = Evaluator.from_spec(EvalSpec(checkpoint=os.path.abspath(ckpt_path), task=task_cfg,
                                      calib_images=search["calib_images"],
                                      calib_batch_size=search["calib_batch_size"]))
    pose = ev.task.head.pose_rule
    return ev.evaluate(ev.net.space.sample(random.Random(0), 0.5, pose_rule=pose))["eval_s"]


def run_task_demo(kind: str, tdir: str, budget_s: float, state: DemoState) -> dict:
    from scalenas.train.config import RunConfig

    s = settings_for(kind, budget_s)
    budgets = phase_budgets(budget_s)
    os.makedirs(tdir, exist_ok=True)
    data_dir = os.path.join(tdir, "data")

    # 1. data ------------------------------------------------------------------------------------
    if not state.get(kind, "data_done"):
        if kind == "seg":
            from scalenas.data.synth_seg import generate
        else:
            from scalenas.data.synth_pose import generate
        d = s["data"]
        if os.path.exists(data_dir):
            shutil.rmtree(data_dir)
        say(generate(data_dir, train=d["train"], val=d["val"], test=d["test"], size=d["size"], seed=0))
        state.set(kind, "data_done", True)

    task_cfg = dict(s["task"])
    task_cfg["root"] = data_dir
    cfg_dict = {"run_dir": os.path.join(tdir, "supernet"), "seed": 0, "space": s["space"], "task": task_cfg,
                "model": s["model"], "sampler": s["sampler"], "train": dict(s["train"]), "search": {}}

    # 2. supernet ----------------------------------------------------------------------------------
    steps = state.get(kind, "train_steps")
    if steps is None:
        probe = _probe_step_seconds(RunConfig.model_validate({**cfg_dict, "train": {**cfg_dict["train"], "steps": 1}}))
        # measured: real steps run ~1.5x the probe on 2 cores (loader workers share the cores; logging, checkpoints)
        steps = int(max(20, min(4000, budgets["train"] / (probe * 1.5))))
        state.set(kind, "train_step_probe_s", probe)
        state.set(kind, "train_steps", steps)
        say(f"measured {probe * 1e3:.0f} ms per training step: training {steps} steps")
    cfg_dict["train"]["steps"] = steps
    cfg = RunConfig.model_validate(cfg_dict)
    ckpt_path = state.get(kind, "supernet")
    if not ckpt_path:
        from scalenas.train.engine import train_supernet

        say(f"training the supernet ({steps} steps, grouped sampling) in {cfg.run_dir}")
        res = train_supernet(cfg, resume="auto")
        ckpt_path = res["checkpoint"]
        state.set(kind, "supernet", ckpt_path)
        state.set(kind, "train_losses", [res["losses"][0], res["losses"][-1]] if res["losses"] else None)

    # 3. search ------------------------------------------------------------------------------------
    search_dir = os.path.join(tdir, "search")
    search_cfg = state.get(kind, "search_cfg")
    if search_cfg is None:
        # 1.2x: under load an evaluation runs slower than the probe (cf. the training margin)
        per_eval = _probe_eval_seconds(ckpt_path, task_cfg, s["search"]) * 1.2
        state.set(kind, "eval_probe_s", per_eval)
        n_evals = int(max(12, min(400, budgets["search"] / per_eval)))
        initial = max(6, int(0.4 * n_evals))
        population = max(4, int(0.2 * n_evals))
        generations = max(1, (n_evals - initial - 3) // population)
        search_cfg = {**s["search"], "initial": initial, "population": population, "generations": generations,
                      "parents": min(s["search"]["parents"], initial)}
        state.set(kind, "search_cfg", search_cfg)
        say(f"search budget ~{n_evals} evaluations ({per_eval:.1f} s each): {initial} initial + "
            f"{generations} generations of {population}")
    if not state.get(kind, "search_done"):
        from scalenas.search.runner import run_search

        say(f"evolutionary search in {search_dir}")
        run_search(ckpt_path, search_dir, search_cfg, resume=os.path.exists(os.path.join(search_dir, "state.json")),
                   workers=1, progress=True)
        state.set(kind, "search_done", True)

    # 4. deploy: extract, evaluate on test, export, draw ------------------------------------------
    from scalenas.demo.deploy import deploy_models

    models = state.get(kind, "models")
    if models is None:
        models = deploy_models(kind, tdir, ckpt_path, search_dir, search_cfg, cfg)
        state.set(kind, "models", models)
    return {"kind": kind, "dir": tdir, "models": models, "supernet": ckpt_path, "search_dir": search_dir,
            "train_steps": steps, "search_cfg": search_cfg, "config": cfg.model_dump(mode="json"),
            "versions": package_versions(), "budget_s": budget_s,
            "train_losses": state.get(kind, "train_losses")}
