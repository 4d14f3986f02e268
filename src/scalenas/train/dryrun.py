"""``scalenas train-supernet CONFIG --dry-run``: what a recipe will do, checked and printed, without training.

It builds what a run needs before its first step (the task and its train index, the schedule, the
sampler, the teacher checkpoint) so a bad path or key fails in seconds, not after the GPUs are rented,
and it starts no process group, builds no supernet and writes nothing.
"""
from __future__ import annotations

import os

import torch

from scalenas.errors import ScaleNASError
from scalenas.tasks.base import build_task
from scalenas.train import checkpoint as ckpt
from scalenas.train.config import RunConfig, reproduction_warnings
from scalenas.train.schedule import resolve_schedule
from scalenas.utils.runtime import resolve_amp


def dry_run(cfg: RunConfig, world_size: int) -> list[str]:
    """The lines the dry run prints for ``cfg`` on ``world_size`` processes."""
    t = cfg.train
    task = build_task(cfg.task)
    task.check_dependencies()  # what the run will need (e.g. xtcocotools for CrowdPose AP), checked now
    space = cfg.space.build()
    n_train = len(task.build_dataset("train", train=True))
    sched = resolve_schedule(t, n_train, world_size, task.sample_unit)
    sampler = cfg.sampler.build(space, cfg.seed, task.head.pose_rule, max(1, sched.batches_per_epoch // t.accumulate))
    device = torch.device("cuda" if (t.device == "cuda" or t.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    per_step = t.batch_size * world_size * t.accumulate
    lines = [f"dry run of {cfg.task['name']} into {cfg.run_dir}: nothing is trained or written",
             f"world size: {world_size} process{'es' if world_size != 1 else ''} on {device.type}",
             f"{task.sample_unit} per step: {per_step:,} ({t.batch_size}/process x {world_size} "
             f"x accumulate {t.accumulate})",
             sched.describe(int(cfg.task.get("search_holdout", 0) or 0), task.sample_unit),
             f"optimiser: {t.optimizer.name}, lr {t.optimizer.lr:g}, {t.schedule.name} schedule",
             f"precision: {resolve_amp(t.amp, device)[1]} (train.amp={t.amp})",
             f"teacher: {_teacher(cfg, space, task.head)}",
             f"pretrained: {_pretrained(cfg.model.pretrained, cfg.model.init)}",
             f"sampling groups ({cfg.sampler.kind}), estimated images seen over the run:"]
    for name, steps in sampler.steps_per_group(sched.steps).items():
        lines.append(f"  {name}: {steps:,} steps, {steps * per_step:,} images "
                     f"({steps / sched.steps_per_epoch:,.1f} epochs)")
    return lines + reproduction_warnings(cfg)


def _teacher(cfg: RunConfig, space, head) -> str:
    d = cfg.train.distill
    if d.teacher == "none":
        return "none (no distillation)"
    if d.teacher == "largest":
        return f"the supernet's own largest subnet (KD weight {d.weight:g})"
    if not os.path.isfile(d.teacher):
        raise ScaleNASError(f"train.distill.teacher: {d.teacher}: file not found")
    ckpt.load_teacher_supernet(d.teacher, space, head)  # the same refusal as training's
    return f"{d.teacher} (its largest subnet, KD weight {d.weight:g})"


def _pretrained(path: str | None, init: str) -> str:
    if not path:
        return f"none (model.init={init} from random)"
    if not os.path.isfile(path):
        raise ScaleNASError(f"model.pretrained: {path}: file not found")
    return f"{path} ({os.path.getsize(path) / 2**20:,.1f} MiB)"
