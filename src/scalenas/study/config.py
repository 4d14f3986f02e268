"""The ``study:`` section and the study's whole config: a supernet run config (space, task, model,
sampler settings, the training recipe, the search section) plus what the study varies and how much.

Budgets are in images drawn from the train split, so samplers and stand-alone runs compare at equal
data: a run's steps are ``images // train.batch_size``. ``quick`` holds dotted ``KEY=VALUE``
overrides of the whole config that ``--quick`` applies (the test-suite size), so the quick study is
the same study, smaller, and its sizes are visible in the config file.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from scalenas.config import Strict, apply_overrides, load_config, validate_section
from scalenas.errors import ScaleNASError
from scalenas.search.config import HalvingCfg, SearchCfg
from scalenas.search.strategies import STRATEGIES
from scalenas.train.config import RunConfig
from scalenas.train.samplers import SAMPLERS


class DataCfg(Strict):
    """Synthetic data generated into ``DIR/data`` (``task.root`` then points there)."""

    generator: Literal["synth-seg", "synth-pose"] = "synth-seg"
    train: int = Field(400, ge=8)
    val: int = Field(10, ge=1)
    test: int = Field(100, ge=1)
    size: tuple[int, int] = (64, 64)
    seed: int = 0
    #: synth-pose only: (min, max) person height as fractions of the image's short side; None: the
    #: generator's default (0.065-0.95, the 1:8 span that makes scale matter bottom-up)
    heights: Optional[tuple[float, float]] = None

    @model_validator(mode="after")
    def _heights(self):
        if self.heights is not None:
            if self.generator != "synth-pose":
                raise ValueError("heights applies to the synth-pose generator only")
            if not 0 < self.heights[0] < self.heights[1] <= 1:
                raise ValueError(f"heights {list(self.heights)}: need 0 < min < max <= 1")
        return self


def _registered(names: list[str], known: list[str], what: str) -> None:
    """A ValueError (named by the config key it is raised under) for a name not in the registry."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(known)}"
                             + (f" (did you mean {close[0]!r}?)" if close else ""))


class StudyCfg(Strict):
    data: Optional[DataCfg] = Field(None, description="None: the task's own data (task.root)")
    archs: int = Field(16, ge=4, description="architectures of the ranking-fidelity set (incl. smallest, "
                       "largest, hrnet)")
    arch_pool: int = Field(400, ge=8, description="random archs drawn to stratify the fidelity set over GFLOPs")
    arch_seed: int = 0
    seeds: int = Field(3, ge=1, description="supernet seeds per sampler, search seeds per strategy, "
                       "from-scratch seeds per arch")
    samplers: list[str] = Field(default_factory=lambda: ["grouped", "uniform", "sandwich"], min_length=1)
    #: None: every registered strategy (evolution, random, and those added later)
    strategies: Optional[list[str]] = None
    supernet_images: int = Field(4800, ge=1, description="training images drawn per supernet (equal for all "
                                 "samplers; steps = images // train.batch_size)")
    #: second view of the sampler ablation: a sampler training k subnets per step also at 1/k of the steps
    #: (equal subnet passes, about equal compute)
    equal_compute: bool = True
    standalone_images: int = Field(4800, ge=1, description="training images per stand-alone (from-scratch) run")
    ceiling_seeds: int = Field(1, ge=0, description="every fidelity arch also trained stand-alone at seeds 1.."
                               "ceiling_seeds: the rank agreement of seed 0 with them is the noise ceiling of "
                               "the fidelity taus (0: no ceiling)")
    eval_images: list[int] = Field(default_factory=lambda: [5, 10, 20], min_length=1,
                                   description="stage 5: search-split image counts (the full split is added)")
    calib_images: list[int] = Field(default_factory=lambda: [4, 8, 16], min_length=1,
                                    description="stage 5: BN-calibration image counts (search.calib_images is added)")
    halving: HalvingCfg = HalvingCfg(min_images=5, eta=3)
    bootstrap: int = Field(1000, ge=50, description="bootstrap resamples of the rank statistics")
    bootstrap_seed: int = 0
    #: torch threads of every unit; None: this process's setting with one worker, else cores / workers.
    #: Scores move in the 3rd decimal with the thread count, so fix it for a study.json that is identical
    #: whatever --workers or --ray it is continued with.
    threads: Optional[int] = Field(None, ge=1)
    #: dotted overrides of the whole config applied by --quick
    quick: list[str] = []

    @field_validator("samplers")
    @classmethod
    def _samplers(cls, v):
        _registered(v, SAMPLERS.names(), "sampler")
        if "grouped" not in v:
            raise ValueError("must include 'grouped': its first seed is the supernet the strategies search")
        return v

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v):
        _registered(v or [], STRATEGIES.names(), "strategy")
        return v

    def strategy_names(self) -> list[str]:
        return list(self.strategies) if self.strategies is not None else STRATEGIES.names()


class StudyConfig(RunConfig):
    """A supernet run config with a ``study:`` section; ``run_dir`` and ``train.steps`` are set per run."""

    study: StudyCfg = StudyCfg()

    @model_validator(mode="after")
    def _search_section(self):
        validate_section(SearchCfg, self.search, "search")  # every search of the study uses it
        if "evolution" not in self.study.strategy_names():
            raise ScaleNASError("study.strategies: must include 'evolution' (the sampler ablation searches with it)")
        if self.study.archs > self.study.arch_pool:
            raise ScaleNASError(f"study.arch_pool ({self.study.arch_pool}) must be at least study.archs "
                                f"({self.study.archs})")
        return self


def load_study_config(path: str, overrides: list[str] | None = None, quick: bool = False) -> StudyConfig:
    """Read and validate a study config; ``quick`` applies its ``study.quick`` overrides first."""
    raw = load_config(path, overrides)
    if quick:
        raw = apply_overrides(raw, list((raw.get("study") or {}).get("quick") or []))
    return validate_section(StudyConfig, raw)


def run_config_dict(cfg: StudyConfig, run_dir: str, seed: int, sampler: dict[str, Any], images: int,
                    threads: int | None) -> dict:
    """The plain run config of one training of the study: the study's recipe with ``sampler`` (merged
    over the shared sampler settings), ``images // batch_size`` steps, ``seed`` and ``threads``."""
    d = cfg.model_dump(mode="json", exclude={"study"})
    d["run_dir"], d["seed"] = run_dir, seed
    d["sampler"] = {**d["sampler"], **sampler}
    steps = max(1, images // cfg.train.batch_size)
    d["train"] = {**d["train"], "steps": steps, "epochs": None, "threads": threads, "progress": False,
                  "keep_last": 1}
    return d
