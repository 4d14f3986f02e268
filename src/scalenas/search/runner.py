"""``run_search``: the architecture search as one resumable run (used by ``scalenas search`` and the demo).

A run directory holds:

* ``config.yaml``: the resolved settings (search section, task, space, head, input size, supernet);
  ``versions.json``;
* ``evaluations.jsonl``: one record per evaluated arch, appended as results arrive;
* ``state.json``: strategy state (history, RNG, generation), per-generation fronts, written
  atomically after every generation: a killed search loses at most the generation in progress, and
  the evaluations of that generation already in the log are reused, not recomputed;
* ``latency.jsonl`` (latency=measure: every measurement, so a resumed run sees the same values) or
  ``latency_table.json`` (latency=table, unless a saved table was given);
* ``pareto.json`` (the front, rewritten every generation) and ``pareto.png`` (the front of every
  generation; refreshed after each generation that took more than a few seconds, and at the end).

The strategy and the evaluator never see each other: this loop asks the strategy for archs, sends
them to the evaluation pool, attaches the analytic costs, logs, and tells the strategy the objective
values in ask order.
"""
from __future__ import annotations

import io
import os
import sys
import time
from typing import Any

import yaml

from scalenas.config import deep_merge, validate_section
from scalenas.errors import ScaleNASError
from scalenas.search.config import RESUMABLE_CHANGES, SearchCfg
from scalenas.search.evaluator import EvalSpec, Evaluator, resolve_device
from scalenas.search.latency import LatencyMeter, LatencySettings, LatencyTable, default_table_path, scalenet_builder
from scalenas.search.objectives import Constraints, objective_values, parse_objectives
from scalenas.search.parallel import make_pool
from scalenas.search.runlog import JsonlLog, load_state, save_state
from scalenas.search.strategies import Strategy, build_strategy
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.profile import profile
from scalenas.space.space import SearchSpace
from scalenas.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, package_versions

REFERENCE_NAMES = ("hrnet", "largest", "smallest")
COST_KEYS = ("params", "params_m", "macs", "gflops_2p30", "gflops_1e9", "latency_ms")


class CostModel:
    """Costs of an arch, cached by hash: analytic params/FLOPs (``profile``), plus latency measured
    or predicted. Measured latencies are persisted (``latency.jsonl``) so resumed runs reuse them."""

    def __init__(self, space: SearchSpace, head: HeadSpec, input_hw, latency=None, latency_log: JsonlLog | None = None):
        self.space, self.head, self.input_hw = space, head, tuple(input_hw)
        self.latency = latency
        self.latency_log = latency_log
        self.cache: dict[str, dict] = {}

    def __call__(self, arch: Arch) -> dict:
        h = arch.hash
        c = self.cache.get(h)
        if c is None:
            p = profile(self.space, arch, self.head, self.input_hw)
            c = {"params": p.params, "params_m": p.params_m, "macs": p.macs, "gflops_2p30": p.gflops_2p30,
                 "gflops_1e9": p.gflops_1e9, "latency_ms": self._latency(arch)}
            self.cache[h] = c
        return c

    def _latency(self, arch: Arch) -> float | None:
        if self.latency is None:
            return None
        log = self.latency_log
        if log is not None and arch.hash in log:
            return float(log[arch.hash]["latency_ms"])
        ms = float(self.latency(arch))
        if log is not None:
            log.append({"hash": arch.hash, "latency_ms": ms})
        return ms


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[search] {msg}", file=sys.stderr, flush=True)


def _resolve_cfg(search_cfg, workers) -> SearchCfg:
    cfg = validate_section(SearchCfg, search_cfg if search_cfg is not None else {}, "search")
    if workers is not None:
        cfg = cfg.model_copy(update={"workers": int(workers)})
    return cfg


def _check_resume(saved: dict, cfg: SearchCfg, meta_now: dict, where: str) -> None:
    old = saved.get("search", {})
    new = cfg.model_dump(mode="json")
    diff = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if diff:
        raise ScaleNASError(f"{where}: --resume with settings that differ from the run's config.yaml: "
                            + ", ".join(f"search.{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in diff)
                            + f"; only {sorted(RESUMABLE_CHANGES)} may change")
    for key in ("space", "head", "task", "input_hw", "supernet_step"):
        if saved.get(key) != meta_now.get(key):
            raise ScaleNASError(f"{where}: --resume with a different {key} than the run was started with "
                                f"({saved.get(key)!r} vs {meta_now.get(key)!r})")


def run_search(supernet_ckpt: str, out_dir: str, search_cfg: dict | SearchCfg | None = None, resume: bool = False,
               workers: int | None = None, ray: str | None = None, progress: bool = True,
               evaluator_factory=None) -> dict:
    """Run (or resume) an architecture search on a trained supernet; returns a summary dict.

    ``search_cfg``: the ``search:`` section (dict or :class:`SearchCfg`). ``workers`` overrides
    ``search.workers``; ``ray``: None (local), "auto", "local" or a cluster address.
    ``evaluator_factory`` (tests, demos): ``f(supernet, task, spec) -> object with evaluate(arch)``
    used in place of the BN-calibrating evaluator when ``workers == 1`` and no Ray.
    """
    from scalenas.train.checkpoint import load_supernet
    from scalenas.tasks.base import build_task

    say = _Progress(progress)
    cfg = _resolve_cfg(search_cfg, workers)
    if not os.path.isfile(supernet_ckpt):
        raise ScaleNASError(f"{supernet_ckpt}: supernet checkpoint not found")
    supernet, ck = load_supernet(supernet_ckpt)
    ck = {"meta": ck["meta"], "step": ck.get("step")}  # drop the optimizer state and the weights' second copy
    meta = ck["meta"]
    space, head = supernet.space, supernet.head_spec
    task_cfg = deep_merge(meta.get("task") or {}, cfg.task)
    task = build_task(task_cfg)
    if task.head != head:
        raise ScaleNASError(f"search.task: the task's head {task.head.to_dict()} does not match the supernet's "
                            f"{head.to_dict()} ({supernet_ckpt})")
    _check_split(task, cfg.eval_split)
    input_hw = tuple(cfg.input_hw) if cfg.input_hw else task.input_hw
    objectives = parse_objectives(cfg.objectives)
    constraints: Constraints = cfg.constraints.build()
    device = resolve_device(cfg.device)
    pose_rule = head.pose_rule

    # ---- the run directory -------------------------------------------------------------------
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f) for k, f in (
        ("state", "state.json"), ("log", "evaluations.jsonl"), ("config", "config.yaml"), ("pareto", "pareto.json"),
        ("plot", "pareto.png"), ("latency", "latency.jsonl"), ("versions", "versions.json"))}
    state = load_state(paths["state"])
    eval_threads = cfg.threads_per_worker or (max(1, (os.cpu_count() or 1) // cfg.workers)
                                               if cfg.workers > 1 or ray else None)
    run_meta = {"supernet": os.path.abspath(supernet_ckpt), "supernet_step": ck.get("step"),
                "space": space.to_dict(), "head": head.to_dict(), "task": task_cfg, "input_hw": list(input_hw),
                "metric_name": task.metric_name, "search": cfg.model_dump(mode="json"),
                "execution": {"device": device, "workers": cfg.workers, "ray": ray,
                              "threads_per_worker": eval_threads or _torch_threads()}}
    # a folder with a log but no state.json was killed before its first generation finished: its
    # logged evaluations are reused as well, so it must hold the same settings
    existing = state is not None or os.path.exists(paths["log"])
    if existing and not resume:
        raise ScaleNASError(f"{out_dir}: already holds a search (state.json / evaluations.jsonl); pass --resume to "
                            f"continue it or choose another output folder")
    if existing and os.path.exists(paths["config"]):
        with open(paths["config"], encoding="utf-8") as f:
            _check_resume(yaml.safe_load(f) or {}, cfg, run_meta, paths["config"])
    if state is not None:
        say(f"resuming {out_dir} at generation {state['strategy']['generation']}")
    atomic_write_text(paths["config"], yaml.safe_dump(run_meta, sort_keys=False))
    atomic_write_json(paths["versions"], package_versions())

    # ---- costs: analytic, plus latency when asked ----------------------------------------------
    latency_fn, latency_log, latency_info = None, None, None
    if cfg.latency != "none":
        lat_settings = LatencySettings(input_hw, cfg.latency_threads, cfg.latency_warmup, cfg.latency_repeats,
                                       device, cfg.latency_backend)
        if cfg.latency == "measure":
            latency_fn = LatencyMeter(lat_settings, scalenet_builder(space, head, supernet))
            latency_log = JsonlLog(paths["latency"])
            latency_info = {"mode": "measure", **lat_settings.describe()}
        else:
            latency_fn = _latency_table(cfg, space, head, input_hw, lat_settings, supernet, out_dir, say)
            latency_info = {"mode": "table", **latency_fn.settings, "fit": latency_fn.fit}
    costs = CostModel(space, head, input_hw, latency_fn, latency_log)
    if (cfg.workers > 1 or ray) and cfg.latency != "measure":
        supernet = None  # workers load their own copies; keep no idle one here

    def feasible(arch: Arch) -> bool:
        return constraints.ok(costs(arch))

    strategy = build_strategy(cfg.strategy, space, objectives, cfg.strategy_settings(pose_rule), cfg.seed, pose_rule,
                              feasible if constraints.active else None)
    if state is None:
        state = {"references": {}, "references_done": False, "fronts": [], "finished": False}
    else:
        strategy.load_state_dict(state["strategy"])
    log = JsonlLog(paths["log"])
    if log.dropped:
        say(f"dropped {log.dropped} torn line(s) at the end of {paths['log']}")

    spec = EvalSpec(checkpoint=os.path.abspath(supernet_ckpt), task=task_cfg, split=cfg.eval_split,
                    max_images=cfg.eval_max_images, calib_images=cfg.calib_images,
                    calib_batch_size=cfg.calib_batch_size, calib_seed=cfg.calib_seed, device=device,
                    threads=eval_threads)
    pool_box: dict[str, Any] = {}

    def pool():
        if "pool" not in pool_box:
            ev = None
            if cfg.workers == 1 and not ray:
                ev = (evaluator_factory(supernet, task, spec) if evaluator_factory else
                      Evaluator(supernet, task, spec.split, spec.max_images, spec.calib_images, spec.calib_batch_size,
                                spec.calib_seed, spec.device, spec.threads))
            say(f"starting {'Ray' if ray else 'local'} evaluation with {cfg.workers} worker(s)")
            pool_box["pool"] = make_pool(spec, cfg.workers, ray, ev)
        return pool_box["pool"]

    def evaluate(archs: list[Arch], kind: str, generation: int) -> None:
        """Evaluate the archs not in the log yet; append each record as it arrives."""
        todo = [a for a in archs if a.hash not in log]
        if not todo:
            return
        for i, res in pool().imap(todo):
            a = todo[i]
            c = costs(a)
            viol = constraints.violations(c)
            rec = {"hash": a.hash, "kind": kind, "generation": generation, "metric": res["metric"],
                   "metric_name": task.metric_name, **{k: c[k] for k in COST_KEYS},
                   "feasible": not viol, "violations": viol, "metrics": res.get("metrics", {}),
                   "calib_bn": res.get("calib_bn"), "eval_s": res.get("eval_s"), "arch": a.to_dict()}
            log.append(rec)

    def front_hashes() -> list[str]:
        return [a.hash for a, _ in strategy.front()]

    def write_pareto() -> dict:
        out = _pareto_doc(strategy, log, state, objectives, task.metric_name, input_hw, constraints, latency_info)
        atomic_write_json(paths["pareto"], out)
        return out

    t_start = time.perf_counter()
    try:
        # ---- reference points (they count in the history when feasible) ------------------------
        if cfg.references and not state["references_done"]:
            refs = _reference_archs(space, pose_rule)
            evaluate(list(refs.values()), "reference", -1)
            state["references"] = {n: a.hash for n, a in refs.items()}
            strategy.tell([(a, objective_values(log[a.hash], objectives)) for a in refs.values()
                           if log[a.hash]["feasible"]])
            for n, a in refs.items():
                r = log[a.hash]
                say(f"reference {n} ({a.hash}): {task.metric_name} {r['metric']:.3f}, "
                    f"{r['gflops_2p30']:.3f} GFLOPs (2^30)" + ("" if r["feasible"] else " [violates constraints]"))
            state["references_done"] = True
            save_state(paths["state"], {**state, "strategy": strategy.state_dict()})
        # ---- generations ---------------------------------------------------------------------------
        while not strategy.done:
            t0 = time.perf_counter()
            archs = strategy.ask()
            gen = strategy.generation - 1
            if not archs:
                say(f"generation {gen}: no new feasible arch could be proposed; stopping")
                break
            cached = sum(a.hash in log for a in archs)
            evaluate(archs, "initial" if gen == 0 else ("offspring" if strategy.name == "evolution" else "random"),
                     gen)
            strategy.tell([(a, objective_values(log[a.hash], objectives)) for a in archs])
            state["fronts"].append({"generation": gen, "hashes": front_hashes()})
            save_state(paths["state"], {**state, "strategy": strategy.state_dict()})
            doc = write_pareto()
            if time.perf_counter() - t0 > 5.0:  # real generations: keep pareto.png current (costs ~1 s)
                _plot(paths["plot"], log, state, task.metric_name, constraints)
            best = max((m["metric"] for m in doc["front"]), default=float("nan"))
            say(f"generation {gen}/{cfg.generations}: {len(archs)} archs ({cached} from the log), "
                f"front {len(doc['front'])}, best {task.metric_name} {best:.3f}, "
                f"{len(log)} evaluated, {time.perf_counter() - t0:.1f}s")
        state["finished"] = strategy.done
        save_state(paths["state"], {**state, "strategy": strategy.state_dict()})
        doc = write_pareto()
        _plot(paths["plot"], log, state, task.metric_name, constraints)
    finally:
        if "pool" in pool_box:
            pool_box["pool"].close()
        log.close()
        if latency_log is not None:
            latency_log.close()
    say(f"done: {len(log)} archs evaluated, {len(doc['front'])} on the front, "
        f"{time.perf_counter() - t_start:.1f}s; {paths['pareto']}")
    return {"run_dir": out_dir, "strategy": cfg.strategy, "generation": strategy.generation - 1,
            "finished": state["finished"], "num_evaluated": len(log), "metric_name": task.metric_name,
            "objectives": [o.name for o in objectives], "front": doc["front"], "references": doc["references"],
            "pareto_json": paths["pareto"], "plot": paths["plot"]}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _check_split(task, split: str) -> None:
    """Fail early, in this process, when the split that ranks candidates is missing or empty."""
    try:
        n = len(task.build_dataset(split, train=False))
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise ScaleNASError(f"search.eval_split: task {task.name!r} cannot build split {split!r} ({e})") from None
    if n == 0:
        raise ScaleNASError(f"search.eval_split: the task's {split!r} split is empty; hold out training images for it "
                            f"(e.g. task.search_holdout=N) or rank candidates on another split (search.eval_split=val)")


def _reference_archs(space: SearchSpace, pose_rule: bool) -> dict[str, Arch]:
    refs: dict[str, Arch] = {}
    for name in REFERENCE_NAMES:
        try:
            a = getattr(space, name)(pose_rule)
        except ScaleNASError:  # e.g. no depth 4 in the space: no HRNet point
            continue
        if a.hash not in {r.hash for r in refs.values()}:
            refs[name] = a
    return refs


def _latency_table(cfg: SearchCfg, space, head, input_hw, settings, supernet, out_dir, say) -> LatencyTable:
    path = cfg.latency_table or default_table_path(out_dir)
    if os.path.exists(path):
        table = LatencyTable.load(path)
        table.check_compatible(space, head, input_hw, path)
        return table
    if cfg.latency_table:
        raise ScaleNASError(f"search.latency_table: {path} not found")
    n = cfg.latency_table_archs + cfg.latency_table_holdout
    say(f"fitting a latency table on this device: measuring {n} archs at {input_hw[0]}x{input_hw[1]}")
    table = LatencyTable.build(space, head, settings, cfg.latency_table_archs, cfg.latency_table_holdout,
                               cfg.seed, scalenet_builder(space, head, supernet))
    table.save(path)
    fit = table.fit
    if "holdout_spearman" in fit:
        say(f"latency table: held-out Spearman {fit['holdout_spearman']:.3f}, "
            f"mean abs error {fit['holdout_mape']:.1f}% ({path})")
    return table


def front_entry(rec: dict) -> dict:
    return {"hash": rec["hash"], "metric": rec["metric"], "params": rec["params"], "params_m": rec["params_m"],
            "gflops_2p30": rec["gflops_2p30"], "gflops_1e9": rec["gflops_1e9"], "latency_ms": rec["latency_ms"],
            "kind": rec["kind"], "generation": rec["generation"], "metrics": rec.get("metrics", {}),
            "arch": rec["arch"]}


def _pareto_doc(strategy: Strategy, log: JsonlLog, state: dict, objectives, metric_name, input_hw, constraints,
                latency_info) -> dict:
    refs = {}
    for name, h in state.get("references", {}).items():
        r = log.get(h)
        if r is not None:
            refs[name] = {**{k: v for k, v in front_entry(r).items() if k != "arch"}, "feasible": r["feasible"]}
    return {"format": "scalenas.pareto/1", "metric_name": metric_name, "objectives": [o.name for o in objectives],
            "input_hw": list(input_hw), "flops_note": "multiply-adds; gflops_2p30 = /2^30 (ScaleNAS), gflops_1e9 = /1e9",
            "constraints": constraints.to_dict(), "latency": latency_info, "generation": strategy.generation - 1,
            "num_evaluated": len(log), "references": refs,
            "front": [front_entry(log[a.hash]) for a, _ in strategy.front()]}


def _plot(path: str, log: JsonlLog, state: dict, metric_name: str, constraints: Constraints) -> None:
    from scalenas.viz.plots import plot_pareto

    fronts = [f["hashes"] for f in state["fronts"]]
    buf = io.BytesIO()
    plot_pareto(buf, list(log.records.values()), fronts, state.get("references", {}), x="gflops_2p30", y="metric",
                x_label="GFLOPs (multiply-adds / 2^30)", y_label=metric_name,
                title=f"search front over {len(fronts)} generation(s), {len(log)} archs")
    atomic_write_bytes(path, buf.getvalue())


def load_run(run_dir: str) -> tuple[dict, list[dict]]:
    """(pareto.json document, all evaluation records) of a search run."""
    import json

    p = os.path.join(run_dir, "pareto.json")
    if not os.path.isfile(p):
        raise ScaleNASError(f"{run_dir}: no pareto.json (not a search run, or it has not finished a generation)")
    with open(p, encoding="utf-8") as f:
        doc = json.load(f)
    lp = os.path.join(run_dir, "evaluations.jsonl")
    records = list(JsonlLog(lp).records.values()) if os.path.exists(lp) else []
    return doc, records


def pick(run_dir: str, max_gflops: float | None = None, max_params_m: float | None = None,
         max_latency_ms: float | None = None) -> dict:
    """The best-metric arch under the given budgets (GFLOPs in the 2^30 convention).

    Candidates are every feasible evaluated arch of the run (the best one under a budget is a member
    of the Pareto front over metric and the budgeted costs), or the front of pareto.json when the log
    is missing. Ties go to the cheaper arch."""
    doc, records = load_run(run_dir)
    cands = [front_entry(r) for r in records if r.get("feasible", True)] or doc["front"]
    budget = Constraints(max_gflops=max_gflops, max_params_m=max_params_m, max_latency_ms=max_latency_ms)
    if max_latency_ms is not None and all(c.get("latency_ms") is None for c in cands):
        raise ScaleNASError(f"--max-latency-ms: {run_dir} has no latency figures (search.latency was none)")
    ok = [c for c in cands if budget.ok(c)]
    if not ok:
        cheapest = min(cands, key=lambda c: c["gflops_2p30"], default=None)
        raise ScaleNASError(f"{run_dir}: no evaluated arch fits the budget "
                            f"({', '.join(f'{k}={v}' for k, v in budget.to_dict().items() if v is not None)})"
                            + (f"; the cheapest has {cheapest['gflops_2p30']:.4g} GFLOPs, "
                               f"{cheapest['params_m']:.4g}M params" if cheapest else ""))
    return max(ok, key=lambda c: (c["metric"], -c["gflops_2p30"], -c["params"], c["hash"]))
