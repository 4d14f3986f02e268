"""Training length and LR milestones stated in epochs, resolved to optimiser steps at run time.

Papers state schedules in epochs (HigherHRNet: 300, drops at 200 and 260); a step count gives those
epochs for one GPU count only. An epoch here is exactly :class:`train.data.StepBatchSampler`'s: one
pass of ``N // (batch_size x processes)`` micro-batches per process over the train split (the search
hold-out already removed), ``accumulate`` micro-batches per optimiser step. Epoch ``e`` therefore
starts at step ``ceil(e x batches / accumulate)``, the first step whose micro-batches all belong to it.

:func:`resolve_schedule` is a pure function of the config, the split size and the process count, so
a resumed run recomputes the same steps; the engine refuses a resume whose resolution differs.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from scalenas.errors import ScaleNASError
from scalenas.train.config import TrainCfg


@dataclasses.dataclass(frozen=True)
class Schedule:
    steps: int
    milestones: tuple[int, ...]
    warmup_steps: int
    epochs: float  # the run's length in epochs (from train.steps when the config gave steps)
    milestone_epochs: tuple[float, ...]
    n_train: int
    batch_size: int
    world_size: int
    accumulate: int
    batches_per_epoch: int  # micro-batches per process in one epoch (StepBatchSampler's epoch)
    in_epochs: bool  # the config stated train.epochs

    @property
    def steps_per_epoch(self) -> float:
        return self.batches_per_epoch / self.accumulate

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "milestones": list(self.milestones),
                "milestone_epochs": list(self.milestone_epochs)}

    def apply(self, train: TrainCfg) -> TrainCfg:
        """``train`` with the length, milestones and warm-up in steps (what the optimiser, sampler and
        logs run on, and what the run's config.yaml records)."""
        sched = train.schedule.model_copy(update={"milestones": list(self.milestones), "milestones_epochs": [],
                                                  "warmup_steps": self.warmup_steps, "warmup_epochs": 0.0})
        return train.model_copy(update={"steps": self.steps, "epochs": None, "schedule": sched})

    def describe(self, held_out: int = 0, unit: str = "images") -> str:
        """The one-line resolution printed in the run header; ``unit`` names what N counts (the task's
        ``sample_unit``), ``held_out`` the images kept for the search split."""
        spe = _num(self.steps_per_epoch)
        if self.in_epochs:
            head = f"{_num(self.epochs)} epochs x {spe} steps/epoch = {self.steps:,} steps"
        else:
            head = f"{self.steps:,} steps = {_num(self.epochs)} epochs x {spe} steps/epoch"
        if unit == "images":
            held = f" after {held_out:,} held out" if held_out else ""
        else:
            held = f" of the images left after {held_out:,} held out" if held_out else ""
        line = (f"schedule: {head} (N={self.n_train:,} train {unit}{held}; {self.batch_size}/process x "
                f"{self.world_size} process{'es' if self.world_size != 1 else ''} x accumulate {self.accumulate})")
        if self.milestones:
            line += (f"; lr drops at epochs {', '.join(_num(e) for e in self.milestone_epochs)} = steps "
                     f"{', '.join(f'{m:,}' for m in self.milestones)}")
        if self.warmup_steps:
            e = self.warmup_steps / self.steps_per_epoch
            line += f"; warm-up {self.warmup_steps:,} steps ({_num(e)} epoch{'' if e == 1 else 's'})"
        return line


def _num(x: float) -> str:
    """An epoch count as written: 300, 2,339, 652.3."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def resolve_schedule(train: TrainCfg, n_train: int, world_size: int, unit: str = "images") -> Schedule:
    """The steps of ``train``'s length, milestones and warm-up for ``n_train`` training samples on
    ``world_size`` processes (a pure function: the same inputs give the same steps). ``unit`` names the
    samples in messages (the task's ``sample_unit``: images, or top-down's person crops)."""
    per_step = train.batch_size * world_size
    batches = n_train // per_step
    if batches < 1:
        raise ScaleNASError(f"train split: {n_train} {unit} cannot fill one batch of {train.batch_size} x "
                            f"{world_size} process(es); lower train.batch_size or add data")
    accum = train.accumulate

    def to_steps(epochs: float) -> int:
        return math.ceil(Fraction(epochs).limit_denominator(10**6) * batches / accum)

    s = train.schedule
    steps = train.steps if train.epochs is None else to_steps(train.epochs)
    milestones = s.milestones or [to_steps(e) for e in s.milestones_epochs]
    milestone_epochs = s.milestones_epochs or [m * accum / batches for m in s.milestones]
    warmup = s.warmup_steps or (to_steps(s.warmup_epochs) if s.warmup_epochs else 0)
    epochs = train.epochs if train.epochs is not None else steps * accum / batches
    return Schedule(steps=steps, milestones=tuple(milestones), warmup_steps=warmup, epochs=epochs,
                    milestone_epochs=tuple(milestone_epochs), n_train=n_train, batch_size=train.batch_size,
                    world_size=world_size, accumulate=accum, batches_per_epoch=batches,
                    in_epochs=train.epochs is not None)
