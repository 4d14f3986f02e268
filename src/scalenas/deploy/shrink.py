"""``scalenas shrink``: HR-NAS's shrink search from a config to a model dir.

Stages: ``train`` (``train.shrink.train_shrink``: the engine trains an ``hrnas`` network from its
largest arch and removes channels until the FLOPs target), then the stages ``scalenas extract`` runs on
an extracted subnet, with its own functions: BN recalibration (default on, on training images as the
search evaluator does: HR-NAS recalibrates before every evaluation, ``bn_calibration: True``),
optional fine-tuning (``deploy.finetune``, then recalibration), evaluation, latency, and the atomic
model dir. The result is an ordinary model dir (``model.json`` records ``space.family: hrnas``), so
``scalenas eval``, ``export``, ``predict`` and ``info`` work on it unchanged. ``scalenas extract
SHRINK_CKPT`` (``model_dir_from_shrink_checkpoint``) runs the same stages on the network any checkpoint of
the run holds.
"""
from __future__ import annotations

import os
from typing import Callable

from scalenas.deploy.extract import (Choice, ExtractOptions, calibrate, check_before_loading, evaluate, fine_tune,
                                     measure, task_of, write)
from scalenas.config import validate_section
from scalenas.deploy.runtime import apply_task_overrides
from scalenas.errors import ScaleNASError
from scalenas.nets.hrnas import HRNASNet
from scalenas.space.heads import HeadSpec
from scalenas.space.hrnas import HRNASArch
from scalenas.train.checkpoint import SHRINK_FORMAT, is_shrink_checkpoint, load_checkpoint
from scalenas.train.shrink import ShrinkRunConfig, train_shrink
from scalenas.utils.io import atomic_write_json
from scalenas.utils.runtime import resolve_device

SUMMARY_FILE = "shrink_summary.json"


def shrink_to_model_dir(cfg: ShrinkRunConfig, opts: ExtractOptions, resume: str | None = None,
                        log: Callable[[str], None] = print) -> dict:
    """Train and shrink (``cfg``), then calibrate, fine-tune, evaluate and write the model dir
    ``opts.out`` (``opts.checkpoint`` is ignored: it becomes the run's last checkpoint); returns
    {"model_dir", "meta", "card", "shrink"}."""
    out_dir, recipe = check_before_loading(opts)  # fail before the training
    net, res = train_shrink(cfg, resume)
    summary = {k: v for k, v in res.items() if k not in ("arch", "losses")}
    summary["arch"], summary["arch_hash"] = res["arch"].to_dict(), res["arch"].hash
    atomic_write_json(os.path.join(cfg.run_dir, SUMMARY_FILE), summary)
    opts.checkpoint = res["checkpoint"]
    ck = load_checkpoint(res["checkpoint"])
    out = _model_dir(opts, out_dir, net, ck, cfg, recipe, log)
    return {**out, "shrink": summary}


def model_dir_from_shrink_checkpoint(opts: ExtractOptions, ck: dict | None = None,
                                     log: Callable[[str], None] = print) -> dict:
    """``scalenas extract SHRINK_CKPT -o MODEL_DIR``: the model dir of a shrink run's checkpoint
    (``opts.checkpoint``; ``ck`` when already loaded), whichever step it was saved at: the network it
    holds (its arch and weights), then the stages ``shrink_to_model_dir`` runs after training."""
    out_dir, recipe = check_before_loading(opts)
    if opts.arch_file is not None or opts.pick_run is not None:
        raise ScaleNASError(f"{opts.checkpoint}: a shrink run's checkpoint holds one network with its own arch; "
                            f"give no ARCH.json and no --pick")
    ck = load_checkpoint(opts.checkpoint) if ck is None else ck
    if not is_shrink_checkpoint(ck):
        raise ScaleNASError(f"{opts.checkpoint}: not a shrink run's checkpoint (meta.format is "
                            f"{(ck.get('meta') or {}).get('format')!r}, not {SHRINK_FORMAT!r})")
    net, cfg = shrunk_net(ck, opts.checkpoint)
    log(f"{opts.checkpoint}: the shrink run's network at step {ck.get('step')} ({net.arch.hash})")
    return _model_dir(opts, out_dir, net.eval(), ck, cfg, recipe, log)


def shrunk_net(ck: dict, path: str) -> tuple[HRNASNet, ShrinkRunConfig]:
    """(the network a shrink checkpoint holds, with its weights; the run's config)."""
    missing = [k for k in ("config", "arch", "model", "shrink") if k not in ck]
    if missing:
        raise ScaleNASError(f"{path}: a shrink checkpoint without {missing[0]!r}")
    try:
        cfg = validate_section(ShrinkRunConfig, ck["config"], "config")
    except ScaleNASError as e:
        raise ScaleNASError(f"{path}: {e}") from None
    space = cfg.space.build()
    arch = space.validate(HRNASArch.from_dict(ck["arch"], f"{path}: arch"))
    net = HRNASNet(space, arch, HeadSpec.from_dict(ck["meta"]["head"]), bn_momentum=cfg.model.bn_momentum,
                   init="none")
    try:
        net.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise ScaleNASError(f"{path}: weights do not fit the arch it records ({str(e).splitlines()[0]})") from None
    return net, cfg


def _model_dir(opts: ExtractOptions, out_dir: str, net: HRNASNet, ck: dict, cfg: ShrinkRunConfig,
               recipe: dict | None, log) -> dict:
    """The stages after training: BN recalibration, fine-tuning, evaluation, latency, the model dir."""
    s, state = cfg.shrink, ck["shrink"]
    origin = {"kind": "shrink", "run_dir": os.path.abspath(cfg.run_dir), "target_gflops": s.target_gflops,
              "gflops_convention": s.gflops_convention, "reached": bool(state["reached"]), "steps": ck.get("step")}
    task_cfg = apply_task_overrides(dict(cfg.task), opts.data)
    choice = Choice(net.arch, origin, task_cfg)
    task = task_of(opts, task_cfg, net.head_spec, log)
    device = resolve_device(opts.device)
    net.to(device)
    calib, calibrator = calibrate(opts, net, task, device, log)
    ft = fine_tune(opts, net, task, recipe or cfg.train.model_dump(mode="json"), calibrator, device, log)
    metric = evaluate(opts, net, task, choice, calib is not None, device, log)
    input_hw, latency = measure(opts, net, task, choice, device, log)
    return write(opts, out_dir, net, choice, task, ck, calib=calib, ft=ft, metric=metric, input_hw=input_hw,
                 latency=latency, log=log)

