"""Typed schema of a supernet training run (YAML + ``KEY=VALUE`` overrides, HRNet-family feel)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Optional

from pydantic import Field, create_model, field_validator, model_validator

from scalenas.config import Strict
from scalenas.errors import ScaleNASError
from scalenas.space.space import SearchSpace
from scalenas.train.samplers import SAMPLERS, Sampler


class _SpaceSection(Strict):
    """The ``space:`` section: ``SearchSpace``'s own fields (tuples written as YAML lists), validated
    by ``SearchSpace`` itself."""

    def build(self) -> SearchSpace:
        return SearchSpace.from_dict(self.model_dump())

    @model_validator(mode="after")
    def _valid_space(self):
        self.build()  # a ScaleNASError naming the space key, raised as is
        return self


def _space_fields() -> dict[str, tuple]:
    """(type, default) of every ``SearchSpace`` field, in its order; its tuples become lists."""
    hints = typing.get_type_hints(SearchSpace)
    out = {}
    for f in dataclasses.fields(SearchSpace):
        t, default = hints[f.name], f.default
        if typing.get_origin(t) is tuple:
            t, default = list[int], list(default)
        out[f.name] = (t, default)
    return out


SpaceCfg = create_model("SpaceCfg", __base__=_SpaceSection, __module__=__name__, __doc__=_SpaceSection.__doc__,
                        **_space_fields())


class ModelCfg(Strict):
    bn_momentum: float = 0.1
    init: Literal["kaiming", "hrnet"] = "kaiming"
    #: a ScaleNet/supernet checkpoint or an HRNet-family state dict to initialise the supernet from
    pretrained: Optional[str] = None
    #: what the paper's run starts from (a recipe says it, e.g. "ImageNet HRNet-W32"); a run without
    #: ``pretrained`` then warns that its results will not match the paper
    paper_pretrained: Optional[str] = None


class SamplerCfg(Strict):
    kind: str = Field("grouped", description="a sampler registered in train.samplers.SAMPLERS")
    fusion_options: list[float] = [0.2, 0.5, 0.8]
    depth_options: Optional[list[list[int]]] = None  # None: the paper's [[2,3],[3,4],[4,5]] or consecutive pairs
    sandwich: bool = True
    smallest_fusion: Optional[float] = None  # None: 0.1 for segmentation, 0.0 for pose (reference)
    #: False: the group cycle runs on the global step, so every group is trained whatever the epoch length.
    #: True restarts it every epoch, as the reference code does; an epoch shorter than the cycle (11 groups)
    #: then never trains the later groups (a warning says which).
    restart_every_epoch: bool = False
    fusion_prob: float = 0.5  # uniform / sandwich
    num_random: int = 2  # sandwich
    #: fixed: the one architecture trained at every step (an arch dict, as ``Arch.to_dict`` writes it)
    arch: Optional[dict[str, Any]] = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        SAMPLERS.get(v)  # an unknown kind is a ScaleNASError naming sampler.kind and the choices
        return v

    def build(self, space: SearchSpace, seed: int, pose_rule: bool, steps_per_epoch: int) -> Sampler:
        """The sampler of ``kind``, which takes the settings it uses from this section."""
        return SAMPLERS.get(self.kind).from_cfg(self, space, seed, pose_rule, steps_per_epoch)


class OptimizerCfg(Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleCfg(Strict):
    name: Literal["poly", "multistep", "cosine", "constant"] = "poly"
    power: float = 0.9
    milestones: list[int] = []  # in optimiser steps
    #: the same in epochs (as papers state them), resolved to steps at run time (train.schedule module)
    milestones_epochs: list[float] = []
    gamma: float = 0.1
    warmup_steps: int = Field(0, ge=0)
    warmup_epochs: float = Field(0.0, ge=0)
    warmup_factor: float = 0.1

    @model_validator(mode="after")
    def _one_unit(self):
        _one_of(self.milestones, self.milestones_epochs, "train.schedule.milestones",
                "train.schedule.milestones_epochs")
        _one_of(self.warmup_steps, self.warmup_epochs, "train.schedule.warmup_steps",
                "train.schedule.warmup_epochs")
        return self


def _one_of(a, b, key_a: str, key_b: str) -> None:
    """A length given both in steps and in epochs is ambiguous: refuse it, naming both keys."""
    if a and b:
        raise ScaleNASError(f"{key_a} and {key_b}: give one of them, not both")


class DistillCfg(Strict):
    #: "none", "largest" (the supernet's own largest subnet, no gradient) or a checkpoint path
    #: (a supernet checkpoint, whose largest subnet becomes the frozen teacher)
    teacher: str = "none"
    weight: float = 0.5
    #: the teacher the paper distils from (a recipe says it); a run with teacher none/largest then warns
    paper_teacher: Optional[str] = None


class TrainCfg(Strict):
    steps: Optional[int] = Field(None, ge=0, description="optimiser steps (0: save the untrained supernet, a "
                                 "baseline); neither steps nor epochs: 1000 steps")
    #: passes over the train split (after the search hold-out), resolved to steps at run time from the
    #: split's size, batch_size, the number of processes and accumulate (train.schedule)
    epochs: Optional[float] = Field(None, gt=0)
    batch_size: int = Field(8, ge=1, description="images per step per process")
    accumulate: int = Field(1, ge=1)
    workers: int = 2
    optimizer: OptimizerCfg = OptimizerCfg()
    schedule: ScheduleCfg = ScheduleCfg()
    grad_clip: Optional[float] = None
    #: bf16 autocast; "auto" uses it only where bf16 is native (utils.runtime.native_bf16: CUDA compute
    #: capability >= 8.0, or AVX512-BF16/AMX CPUs) and falls back to fp16 with a grad scaler on older GPUs,
    #: fp32 on CPUs; the run header says which (utils.runtime.resolve_amp)
    amp: Literal["none", "bf16", "auto"] = "none"
    channels_last: bool = True
    ckpt_every: int = 500
    keep_last: int = 3
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True
    #: torch intra-op threads; None: utils.runtime.default_threads (the cores less the loader workers)
    threads: Optional[int] = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    distill: DistillCfg = DistillCfg()

    @model_validator(mode="after")
    def _length(self):
        if self.steps is not None and self.epochs is not None:
            raise ScaleNASError("train.steps and train.epochs: give one of them, not both "
                                "(override the other with null)")
        if self.steps is None and self.epochs is None:
            self.steps = 1000
        return self


class RunConfig(Strict):
    run_dir: str = "runs/supernet"
    seed: int = 0
    space: SpaceCfg = SpaceCfg()
    task: dict[str, Any] = {"name": "segmentation"}
    model: ModelCfg = ModelCfg()
    sampler: SamplerCfg = SamplerCfg()
    train: TrainCfg = TrainCfg()
    #: validated by scalenas.search when a search runs from this config
    search: dict[str, Any] = {}


def reproduction_warnings(cfg: "RunConfig") -> list[str]:
    """One line for each start the recipe says the paper used but this run does not have: a full-scale
    run from random initialisation (or without the paper's teacher) trains, but its numbers are not the
    paper's, and that should be said before days of GPU time, not discovered after."""
    out = []
    if cfg.model.paper_pretrained and not cfg.model.pretrained:
        out.append(f"warning: model.pretrained is not set; the paper starts from {cfg.model.paper_pretrained}: "
                   f"from random initialisation the results will not match the paper")
    d = cfg.train.distill
    if d.paper_teacher and d.teacher in ("none", "largest"):
        out.append(f"warning: train.distill.teacher is {d.teacher!r}; the paper distils from {d.paper_teacher}: "
                   f"the results will not match the paper")
    return out
