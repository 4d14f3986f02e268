"""``run_search``: the architecture search as one resumable run (used by ``scalenas search`` and the demo).

The run is a :class:`SearchRun` whose methods are its stages: ``open`` (a new run directory, or
resume one), ``references`` (the reference archs), ``generation`` (one ask / evaluate / tell round),
``finish``. Costs live in ``search/costs.py``, the Pareto document in ``search/pareto_doc.py``.

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

The strategy and the evaluator never see each other: the run asks the strategy for archs, sends
them to the evaluation pool, attaches the analytic costs, logs, and tells the strategy the objective
values in ask order.
"""
from __future__ import annotations

import os
import sys
import time

import torch
import yaml

from scalenas.config import deep_merge, load_yaml, validate_section
from scalenas.errors import ScaleNASError
from scalenas.search.config import RESUMABLE_CHANGES, SearchCfg
from scalenas.search.costs import COST_KEYS, build_costs
from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.search.halving import successive_halving
from scalenas.search.objectives import objective_values, parse_objectives
from scalenas.search.parallel import make_pool
from scalenas.search.pareto import select_by_layers
from scalenas.search.pareto_doc import (
    PARETO_JSON,
    PARETO_PNG,
    doc_header,
    pareto_doc,
    plot_fronts,
)
from scalenas.search.runlog import JsonlLog, load_state, save_state
from scalenas.space.arch import Arch
from scalenas.space.space import SearchSpace
from scalenas.tasks.base import build_task
from scalenas.train.checkpoint import load_supernet
from scalenas.utils.io import atomic_write_json, atomic_write_text, package_versions
from scalenas.utils.runtime import resolve_device, usable_cores

REFERENCE_NAMES = ("hrnet", "largest", "smallest")
RUN_FILES = {"state": "state.json", "log": "evaluations.jsonl", "config": "config.yaml", "pareto": PARETO_JSON,
             "plot": PARETO_PNG, "versions": "versions.json"}
PLOT_EVERY_S = 5.0  # real generations keep pareto.png current (a plot costs ~1 s)




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


def run_search(supernet_ckpt: str, out_dir: str, search_cfg: dict | SearchCfg | None = None, resume: bool = False,
               workers: int | None = None, ray: str | None = None, progress: bool = True,
               evaluator_factory=None) -> dict:
    """Run (or resume) an architecture search on a trained supernet; returns a summary dict.

    ``search_cfg``: the ``search:`` section (dict or :class:`SearchCfg`). ``workers`` overrides
    ``search.workers``; ``ray``: None (local), "auto", "local" or a cluster address.
    ``evaluator_factory`` (tests, demos): ``f(supernet, task, spec) -> object with evaluate(arch)``
    used in place of the BN-calibrating evaluator when ``workers == 1`` and no Ray.
    """
    run = SearchRun(supernet_ckpt, out_dir, _resolve_cfg(search_cfg, workers), ray, _Progress(progress),
                    evaluator_factory)
    run.open(resume)
    try:
        run.references()
        while run.generation():
            pass
        run.finish()
    finally:
        run.close()
    return run.summary()


class SearchRun:
    """One search run directory, stage by stage: ``open(resume)``, ``references()``, ``generation()``
    until it returns False, ``finish()``, then ``close()`` (always) and ``summary()``.

    The run's state (``self.state``: reference hashes, per-generation fronts, finished) is what
    ``state.json`` holds besides the strategy's own state; every stage that changes it saves it."""

    def __init__(self, supernet_ckpt: str, out_dir: str, cfg: SearchCfg, ray: str | None = None, say=print,
                 evaluator_factory=None):
        self.supernet_ckpt, self.out_dir, self.cfg, self.ray, self.say = supernet_ckpt, out_dir, cfg, ray, say
        self.evaluator_factory = evaluator_factory
        self.paths = {k: os.path.join(out_dir, f) for k, f in RUN_FILES.items()}
        self.log: JsonlLog | None = None
        self.costs = None
        self._pool = None
        self.doc: dict = {}

    # ---- open ---------------------------------------------------------------------------------
    def open(self, resume: bool) -> None:
        """Load the supernet and its task, open (or resume) the run directory, set up costs, strategy
        and the evaluation log."""
        self._load_supernet_and_task()
        self._open_dir(resume)
        cfg = self.cfg
        self.costs, self.latency_info = build_costs(cfg, self.space, self.head, self.input_hw, self.device,
                                                    self.supernet, self.out_dir, self.say)
        if (cfg.workers > 1 or self.ray) and cfg.latency != "measure":
            self.supernet = None  # workers load their own copies; keep no idle one here
        self._build_strategy()
        self.log = JsonlLog(self.paths["log"])
        if self.log.dropped:
            self.say(f"dropped {self.log.dropped} torn line(s) at the end of {self.paths['log']}")
        self.spec = EvalSpec(checkpoint=os.path.abspath(self.supernet_ckpt), task=self.task_cfg,
                             split=cfg.eval_split, max_images=cfg.eval_max_images, calib_images=cfg.calib_images,
                             calib_batch_size=cfg.calib_batch_size, calib_seed=cfg.calib_seed, device=self.device,
                             threads=self.eval_threads)
        self.header = doc_header(self.task.metric_name, self.objectives, self.input_hw, self.constraints,
                                 self.latency_info)
        self.t_start = time.perf_counter()

    def _load_supernet_and_task(self) -> None:
        cfg, ckpt = self.cfg, self.supernet_ckpt
        if not os.path.isfile(ckpt):
            raise ScaleNASError(f"{ckpt}: supernet checkpoint not found")
        self.supernet, ck = load_supernet(ckpt)
        self.supernet_step = ck.get("step")  # keep neither the optimizer state nor the weights' second copy
        self.space, self.head = self.supernet.space, self.supernet.head_spec
        self.task_cfg = deep_merge(ck["meta"].get("task") or {}, cfg.task)
        self.task = build_task(self.task_cfg)
        self.task.check_dependencies()  # before the first candidate, not after it
        if self.task.head != self.head:
            raise ScaleNASError(f"search.task: the task's head {self.task.head.to_dict()} does not match the "
                                f"supernet's {self.head.to_dict()} ({ckpt})")
        n_split = _check_split(self.task, cfg.eval_split)
        self.split_images = min(n_split, cfg.eval_max_images or n_split)
        self.input_hw = tuple(cfg.input_hw) if cfg.input_hw else self.task.input_hw
        self.objectives = parse_objectives(cfg.objectives)
        self.constraints = cfg.constraints.build()
        self.device = str(resolve_device(cfg.device, "search.device"))

    def _run_meta(self) -> dict:
        """``config.yaml``: the resolved settings, compared on resume."""
        cfg = self.cfg
        self.eval_threads = cfg.threads_per_worker or (max(1, usable_cores() // cfg.workers)
                                                       if cfg.workers > 1 or self.ray else None)
        return {"supernet": os.path.abspath(self.supernet_ckpt), "supernet_step": self.supernet_step,
                "space": self.space.to_dict(), "head": self.head.to_dict(), "task": self.task_cfg,
                "input_hw": list(self.input_hw), "metric_name": self.task.metric_name,
                "search": cfg.model_dump(mode="json"),
                "execution": {"device": self.device, "workers": cfg.workers, "ray": self.ray,
                              "threads_per_worker": self.eval_threads or torch.get_num_threads()}}

    def _open_dir(self, resume: bool) -> None:
        out_dir, paths = self.out_dir, self.paths
        os.makedirs(out_dir, exist_ok=True)
        self.saved = load_state(paths["state"])
        run_meta = self._run_meta()
        # a folder with a log but no state.json was killed before its first generation finished: its
        # logged evaluations are reused as well, so it must hold the same settings
        existing = self.saved is not None or os.path.exists(paths["log"])
        if existing and not resume:
            raise ScaleNASError(f"{out_dir}: already holds a search (state.json / evaluations.jsonl); pass --resume "
                                f"to continue it or choose another output folder")
        if existing and os.path.exists(paths["config"]):
            _check_resume(load_yaml(paths["config"]) or {}, self.cfg, run_meta, paths["config"])
        if self.saved is not None:
            self.say(f"resuming {out_dir} at generation {self.saved['strategy']['generation']}")
        atomic_write_text(paths["config"], yaml.safe_dump(run_meta, sort_keys=False))
        atomic_write_json(paths["versions"], package_versions())

    def _build_strategy(self) -> None:
        cfg, pose_rule = self.cfg, self.head.pose_rule
        feasible = (lambda arch: self.constraints.ok(self.costs(arch))) if self.constraints.active else None
        self.strategy = cfg.build_strategy(self.space, self.objectives, pose_rule, feasible)
        if self.saved is None:
            self.state = {"references": {}, "references_done": False, "fronts": [], "finished": False}
        else:
            self.state = self.saved
            self.strategy.load_state_dict(self.saved["strategy"])

    # ---- the stages ---------------------------------------------------------------------------
    def references(self) -> None:
        """Evaluate the reference archs once per run; they count in the history when feasible."""
        if not self.cfg.references or self.state["references_done"]:
            return
        log, name = self.log, self.task.metric_name
        refs = _reference_archs(self.space, self.head.pose_rule)
        self._evaluate(list(refs.values()), "reference", -1)
        self.state["references"] = {n: a.hash for n, a in refs.items()}
        self.strategy.tell([(a, objective_values(log[a.hash], self.objectives)) for a in refs.values()
                            if log[a.hash]["feasible"]])
        for n, a in refs.items():
            r = log[a.hash]
            self.say(f"reference {n} ({a.hash}): {name} {r['metric']:.3f}, {r['gflops_2p30']:.3f} GFLOPs (2^30)"
                     + ("" if r["feasible"] else " [violates constraints]"))
        self.state["references_done"] = True
        self._save_state()

    def generation(self) -> bool:
        """Ask, evaluate (archs already in the log are not re-run), tell, and record one generation;
        False once the strategy is done or cannot propose a new feasible arch."""
        strategy, log = self.strategy, self.log
        if strategy.done:
            return False
        t0 = time.perf_counter()
        archs = strategy.ask()
        gen = strategy.generation - 1
        if not archs:
            self.say(f"generation {gen}: no new feasible arch could be proposed; stopping")
            return False
        cached = sum(a.hash in log for a in archs)
        self._evaluate(archs, "initial" if gen == 0 else strategy.batch_kind, gen)
        strategy.tell([(a, objective_values(log[a.hash], self.objectives)) for a in archs])
        self.state["fronts"].append({"generation": gen, "hashes": self._front_hashes()})
        self._save_state()
        self._write_pareto()
        if time.perf_counter() - t0 > PLOT_EVERY_S:
            self._plot()
        front, name = self.doc["front"], self.task.metric_name
        best = max((m["metric"] for m in front), default=float("nan"))
        self.say(f"{strategy.progress()}: {len(archs)} archs ({cached} from the log), "
                 f"front {len(front)}, best {name} {best:.3f}, {len(log)} evaluated, {time.perf_counter() - t0:.1f}s")
        return True

    def finish(self) -> None:
        """Final state (finished or not), ``pareto.json`` and ``pareto.png``."""
        self.state["finished"] = self.strategy.done
        self._save_state()
        self._write_pareto()
        self._plot()

    def close(self) -> None:
        """Release the evaluation pool and the log files (also after an error)."""
        if self._pool is not None:
            self._pool.close()
        if self.log is not None:
            self.log.close()
        if self.costs is not None:
            self.costs.close()

    def summary(self) -> dict:
        doc, log = self.doc, self.log
        self.say(f"done: {len(log)} archs evaluated, {len(doc['front'])} on the front, "
                 f"{time.perf_counter() - self.t_start:.1f}s; {self.paths['pareto']}")
        return {"run_dir": self.out_dir, "strategy": self.cfg.strategy, "generation": self.strategy.generation - 1,
                "finished": self.state["finished"], "num_evaluated": len(log), "metric_name": self.task.metric_name,
                "objectives": [o.name for o in self.objectives], "front": doc["front"],
                "references": doc["references"], "pareto_json": self.paths["pareto"], "plot": self.paths["plot"]}

    # ---- helpers of the stages ------------------------------------------------------------------
    def _pool_(self):
        """The evaluation pool, started on first use (a resumed run with nothing left starts none)."""
        if self._pool is None:
            cfg, ev = self.cfg, None
            if cfg.workers == 1 and not self.ray:
                factory = self.evaluator_factory or Evaluator
                ev = factory(self.supernet, self.task, self.spec)
            self.say(f"starting {'Ray' if self.ray else 'local'} evaluation with {cfg.workers} worker(s)")
            self._pool = make_pool(self.spec, cfg.workers, self.ray, ev)
        return self._pool

    def _evaluate(self, archs: list[Arch], kind: str, generation: int) -> None:
        """Evaluate the archs not in the log yet; append each record as it arrives."""
        todo = [a for a in archs if a.hash not in self.log]
        if not todo:
            return
        for i, res in self._results(todo):
            a = todo[i]
            c = self.costs(a)
            viol = self.constraints.violations(c)
            self.log.append({"hash": a.hash, "kind": kind, "generation": generation, "metric": res["metric"],
                             "metric_name": self.task.metric_name, **{k: c[k] for k in COST_KEYS},
                             "feasible": not viol, "violations": viol, "metrics": res.get("metrics", {}),
                             "calib_bn": res.get("calib_bn"), "eval_s": res.get("eval_s"),
                             **{k: res[k] for k in ("eval_images", "rung", "measured_metric") if k in res},
                             "arch": a.to_dict()})

    def _results(self, archs: list[Arch]):
        """``(index, record)`` of each arch: as the pool yields them, or with ``search.halving`` all at
        once after the last rung (a killed generation is then re-scored whole)."""
        h = self.cfg.halving
        if h is None:
            yield from self._pool_().imap(archs)
            return

        def score(batch: list[Arch], n: int) -> list[dict]:
            out: list[dict | None] = [None] * len(batch)
            for i, res in self._pool_().imap(batch, n):
                out[i] = res
            return out

        def select(records: list[dict], k: int) -> list[int]:
            by_hash = {a.hash: a for a in archs}
            values = [objective_values({**r, **self.costs(by_hash[r["hash"]])}, self.objectives) for r in records]
            return select_by_layers(values, self.objectives, k)

        records, _ = successive_halving(archs, score, self.split_images, h.min_images, h.eta, select)
        yield from enumerate(records)

    def _front_hashes(self) -> list[str]:
        return [a.hash for a, _ in self.strategy.front()]

    def _save_state(self) -> None:
        save_state(self.paths["state"], {**self.state, "strategy": self.strategy.state_dict()})

    def _write_pareto(self) -> None:
        self.doc = pareto_doc(self.header, self.strategy.generation - 1, self.log,
                              self.state.get("references", {}), self._front_hashes())
        atomic_write_json(self.paths["pareto"], self.doc)

    def _plot(self) -> None:
        plot_fronts(self.paths["plot"], self.log, [f["hashes"] for f in self.state["fronts"]],
                    self.state.get("references", {}), self.task.metric_name)


def _check_resume(saved: dict, cfg: SearchCfg, meta_now: dict, where: str) -> None:
    # a setting added after the run started (absent from its config.yaml) had its default then
    old = {**SearchCfg().model_dump(mode="json"), **saved.get("search", {})}
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


def _check_split(task, split: str) -> int:
    """Fail early, in this process, when the split that ranks candidates is missing or empty."""
    try:
        n = task.num_eval_images(split)
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise ScaleNASError(f"search.eval_split: task {task.name!r} cannot build split {split!r} ({e})") from None
    if n == 0:
        raise ScaleNASError(f"search.eval_split: the task's {split!r} split is empty; hold out training images for it "
                            f"(e.g. task.search_holdout=N) or rank candidates on another split (search.eval_split=val)")
    return n


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
