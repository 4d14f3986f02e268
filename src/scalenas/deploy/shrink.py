"""``scalenas shrink``: HR-NAS's shrink search from a config to a model dir.

Stages: ``train`` (``train.shrink.train_shrink``: the engine trains an ``hrnas`` network from its
largest arch and removes channels until the FLOPs target), then the stages ``scalenas extract`` runs on
an extracted subnet, with its own functions: BN recalibration (default on, on training images as the
search evaluator does: HR-NAS recalibrates before every evaluation, ``bn_calibration: True``),
optional fine-tuning (``deploy.finetune``, then recalibration), evaluation, latency, and the atomic
model dir. The result is an ordinary model dir (``model.json`` records ``space.family: hrnas``), so
``scalenas eval``, ``export``, ``predict`` and ``info`` work on it unchanged.
"""
from __future__ import annotations

import os
from typing import Callable

from scalenas.deploy import model_dir as md
from scalenas.deploy.extract import (Choice, ExtractOptions, evaluate, fine_tune, finetune_recipe, make_calibrator,
                                     measure, recalibrate, write)
from scalenas.deploy.runtime import apply_task_overrides
from scalenas.search.config import SearchCfg
from scalenas.tasks.base import build_task
from scalenas.train.checkpoint import load_checkpoint
from scalenas.train.shrink import ShrinkRunConfig, train_shrink
from scalenas.utils.io import atomic_write_json
from scalenas.utils.runtime import resolve_device

SUMMARY_FILE = "shrink_summary.json"


def shrink_to_model_dir(cfg: ShrinkRunConfig, opts: ExtractOptions, resume: str | None = None,
                        log: Callable[[str], None] = print) -> dict:
    """Train and shrink (``cfg``), then calibrate, fine-tune, evaluate and write the model dir
    ``opts.out`` (``opts.checkpoint`` is ignored: it becomes the run's last checkpoint); returns
    {"model_dir", "meta", "card", "shrink"}."""
    out_dir = os.path.abspath(opts.out)
    md.check_target(out_dir, opts.overwrite)  # fail before the training
    recipe = finetune_recipe(opts.finetune_config) if opts.finetune_config else None
    net, res = train_shrink(cfg, resume)
    summary = {k: v for k, v in res.items() if k not in ("arch", "losses")}
    summary["arch"], summary["arch_hash"] = res["arch"].to_dict(), res["arch"].hash
    atomic_write_json(os.path.join(cfg.run_dir, SUMMARY_FILE), summary)
    opts.checkpoint = res["checkpoint"]
    ck = load_checkpoint(res["checkpoint"])
    origin = {"kind": "shrink", "run_dir": os.path.abspath(cfg.run_dir), "target_gflops": res["target_gflops"],
              "gflops_convention": res["gflops_convention"], "reached": res["reached"], "steps": res["steps"]}
    task_cfg = apply_task_overrides(dict(cfg.task), opts.data)
    choice = Choice(res["arch"], origin, task_cfg)
    task = build_task(task_cfg)
    device = resolve_device(opts.device)
    net.to(device)
    calib, calibrator = _calibrate(opts, net, task, device, log)
    ft = fine_tune(opts, net, task, recipe or cfg.train.model_dump(mode="json"), calibrator, device, log)
    metric = evaluate(opts, net, task, choice, calib is not None, device, log)
    input_hw, latency = measure(opts, net, task, choice, device, log)
    out = write(opts, out_dir, net, choice, task, ck, calib=calib, ft=ft, metric=metric, input_hw=input_hw,
                latency=latency, log=log)
    return {**out, "shrink": summary}


def _calibrate(opts: ExtractOptions, net, task, device, log) -> tuple[dict | None, object]:
    """BN statistics re-estimated on training images (the search's calibrator and defaults)."""
    if not opts.calibrate:
        return None, None
    d = SearchCfg()
    calib = {"num_images": opts.calib_images or d.calib_images,
             "batch_size": opts.calib_batch_size or d.calib_batch_size,
             "seed": d.calib_seed if opts.calib_seed is None else opts.calib_seed,
             "source": "command line" if opts.calib_images or opts.calib_batch_size else "defaults"}
    calibrator = make_calibrator(task, calib, device)
    n_bn = recalibrate(net, calibrator)
    log(f"recalibrated {n_bn} BN layers on {calib['num_images']} images (batch {calib['batch_size']}, "
        f"seed {calib['seed']})")
    return calib, calibrator
