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
import random
import shutil
import statistics
import time

from scalenas.data.synth_pose import generate as generate_pose
from scalenas.data.synth_seg import generate as generate_seg
from scalenas.demo.deploy import deploy_models
from scalenas.demo.report import write_report
from scalenas.demo.settings import TASKS, phase_budgets, settings_for
from scalenas.errors import ScaleNASError
from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.search.resolve import resolve_search_cfg
from scalenas.search.runner import run_search
from scalenas.train.config import RunConfig
from scalenas.train.engine import time_steps, train_supernet
from scalenas.utils.io import atomic_write_json, package_versions
from scalenas.utils.runtime import setup_process

STATE_FILE = "demo_state.json"
#: one step to start the loader, then two rounds of the grouped sampler's 11 groups: only the second is timed,
#: because the first builds each subnet's kernels once (the top-down demo's first round ran 1.47x the real mean)
PROBE_STEPS = 23
PROBE_TIMED = 11
TRAIN_MARGIN = 1.1  # real / probed step time: 1.07 measured (seg, 60 steps; checkpoints, logging) on 2 loaded cores


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


def run_demo(out: str = "demo-out", task: str = "seg", budget_minutes: float = 12.0, fresh: bool = False,
             seed: int = 0) -> dict:
    """The demo of ``task`` in ``out`` (resumed when it holds one). ``seed`` seeds the supernet training and the
    search; the data are always generated with seed 0, so runs with different seeds are scored on the same
    test images and their spread is the method's, not the data's."""
    if task not in (*TASKS, "both"):
        raise ScaleNASError(f"--task {task!r}: choose {', '.join(TASKS)} or both")
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
        started = state.get(t, "seed", seed)
        if started != seed:
            raise ScaleNASError(f"--seed {seed}: {out} holds a demo run with seed {started}; use another -o, "
                                f"or --fresh to start over")
        state.set(t, "seed", seed)
        remaining = budget_minutes * 60 - (time.time() - t0)
        budget = state.get(t, "budget_s") or max(60.0, remaining / (len(tasks) - i))
        state.set(t, "budget_s", budget)
        say(f"task {t}: budget {budget / 60:.1f} min")
        results[t] = run_task_demo(t, os.path.join(out, t), budget, state, seed)
    report = write_report(out, results, budget_minutes, time.time() - t0)
    say(f"report: {report}")
    return {"report": report, "results": results, "seconds": time.time() - t0}


def run_task_demo(kind: str, tdir: str, budget_s: float, state: DemoState, seed: int = 0) -> dict:
    """One task's demo: data, supernet, search, deploy; each step is skipped when ``state`` says it is done."""
    t_start = time.time()
    s = settings_for(kind, budget_s)
    budgets = phase_budgets(budget_s, kind)
    os.makedirs(tdir, exist_ok=True)
    data_dir = make_data(kind, tdir, s, state)
    cfg_dict = run_config(kind, tdir, s, data_dir, seed)
    steps = train_steps(kind, cfg_dict, budgets["train"], state)
    cfg = RunConfig.model_validate({**cfg_dict, "train": {**cfg_dict["train"], "steps": steps}})
    ckpt_path = train(kind, cfg, state)
    search_dir = os.path.join(tdir, "search")
    # the search gets its share, or all the time that data and training left before the deploy share
    search_s = max(budgets["search"], budget_s - budgets["deploy"] - (time.time() - t_start))
    search_cfg = search_settings(kind, ckpt_path, cfg_dict["task"], {**s["search"], "seed": seed}, search_s, state)
    search(kind, ckpt_path, search_dir, search_cfg, state)
    models = state.get(kind, "models")
    if models is None:
        models = deploy_models(kind, tdir, ckpt_path, search_dir, search_cfg, cfg)
        state.set(kind, "models", models)
    return {"kind": kind, "dir": tdir, "models": models, "supernet": ckpt_path, "search_dir": search_dir,
            "train_steps": steps, "search_cfg": search_cfg, "config": cfg.model_dump(mode="json"),
            "versions": package_versions(), "budget_s": budget_s,
            "train_losses": state.get(kind, "train_losses"), "seed": seed}


def make_data(kind: str, tdir: str, s: dict, state: DemoState) -> str:
    """1. The synthetic dataset of the task (regenerated whole if an earlier run stopped inside it)."""
    data_dir = os.path.join(tdir, "data")
    if not state.get(kind, "data_done"):
        generate = generate_seg if kind == "seg" else generate_pose
        d = s["data"]
        if os.path.exists(data_dir):
            shutil.rmtree(data_dir)
        extra = {"heights": d["heights"]} if "heights" in d else {}  # person heights of the pose data
        say(generate(data_dir, train=d["train"], val=d["val"], test=d["test"], size=d["size"], seed=0, **extra))
        state.set(kind, "data_done", True)
    return data_dir


def run_config(kind: str, tdir: str, s: dict, data_dir: str, seed: int = 0) -> dict:
    """The supernet's run config (as a dict, before the step count is known)."""
    task_cfg = dict(s["task"])
    task_cfg["root"] = data_dir
    return {"run_dir": os.path.join(tdir, "supernet"), "seed": seed, "space": s["space"], "task": task_cfg,
            "model": s["model"], "sampler": s["sampler"], "train": dict(s["train"]), "search": {}}


def train_steps(kind: str, cfg_dict: dict, budget_s: float, state: DemoState) -> int:
    """2a. How many training steps fit the training budget, from steps timed through the engine."""
    steps = state.get(kind, "train_steps")
    if steps is None:
        probe = probe_step_seconds(RunConfig.model_validate(cfg_dict))
        steps = int(max(20, min(4000, budget_s / (probe * TRAIN_MARGIN))))
        state.set(kind, "train_step_probe_s", probe)
        state.set(kind, "train_steps", steps)
        say(f"measured {probe * 1e3:.0f} ms per training step: training {steps} steps")
    return steps


def probe_step_seconds(cfg: RunConfig) -> float:
    """Mean seconds of one engine training step on this machine, over one round of the grouped
    sampler's 11 groups (smallest to largest subnet), timed after a first round that starts the loader
    workers and builds every group's kernels."""
    return statistics.fmean(time_steps(cfg, PROBE_STEPS)[-PROBE_TIMED:])


def train(kind: str, cfg: RunConfig, state: DemoState) -> str:
    """2b. The supernet (grouped sampling), resumed from its newest checkpoint; returns its path."""
    ckpt_path = state.get(kind, "supernet")
    if not ckpt_path:
        say(f"training the supernet ({cfg.train.steps} steps, grouped sampling) in {cfg.run_dir}")
        res = train_supernet(cfg, resume="auto")
        ckpt_path = res["checkpoint"]
        state.set(kind, "supernet", ckpt_path)
        state.set(kind, "train_losses", [res["losses"][0], res["losses"][-1]] if res["losses"] else None)
    return ckpt_path


def search_settings(kind: str, ckpt_path: str, task_cfg: dict, search: dict, budget_s: float,
                    state: DemoState) -> dict:
    """3a. The search section: the task's settings, sized to the search budget from one timed evaluation."""
    search_cfg = state.get(kind, "search_cfg")
    if search_cfg is None:
        # 1.2x: under load an evaluation runs slower than the probe (cf. the training margin)
        per_eval = _probe_eval_seconds(ckpt_path, task_cfg, search) * 1.2
        state.set(kind, "eval_probe_s", per_eval)
        n_evals = int(max(12, min(400, budget_s / per_eval)))
        initial = max(6, int(0.4 * n_evals))
        population = max(4, int(0.2 * n_evals))
        generations = max(1, (n_evals - initial - 3) // population)
        search_cfg = {**search, "initial": initial, "population": population, "generations": generations,
                      "parents": min(search["parents"], initial)}
        state.set(kind, "search_cfg", search_cfg)
        say(f"search budget ~{n_evals} evaluations ({per_eval:.1f} s each): {initial} initial + "
            f"{generations} generations of {population}")
    return search_cfg


def _probe_eval_seconds(ckpt_path: str, task_cfg: dict, search: dict) -> float:
    """Seconds of one search evaluation (BN recalibration + metric on the search split) of the trained
    supernet's average subnet, measured on this machine. Measured rather than derived from the training
    step because decoding costs differ by task: pose grouping took 2x the forward-based estimate."""
    ev = Evaluator.from_spec(EvalSpec(checkpoint=os.path.abspath(ckpt_path), task=task_cfg,
                                      calib_images=search["calib_images"],
                                      calib_batch_size=search["calib_batch_size"]))
    pose = ev.task.head.pose_rule
    return ev.evaluate(ev.net.space.sample(random.Random(0), 0.5, pose_rule=pose))["eval_s"]


def search(kind: str, ckpt_path: str, search_dir: str, search_cfg: dict, state: DemoState) -> None:
    """3b. The evolutionary search, with its settings resolved as ``scalenas search CKPT`` resolves a
    config's section (a stopped search resumes from its last generation)."""
    if state.get(kind, "search_done"):
        return
    resume = os.path.exists(os.path.join(search_dir, "state.json"))
    cfg = resolve_search_cfg(ckpt_path, search_dir, search_cfg, resume=resume)
    say(f"evolutionary search in {search_dir}")
    run_search(ckpt_path, search_dir, cfg, resume=resume, workers=1, progress=True)
    state.set(kind, "search_done", True)
