"""The typed ``search:`` config section (the training config's ``search: dict`` slot is validated here)."""
from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Sequence

from pydantic import Field, field_validator, model_validator

from scalenas.config import Strict
from scalenas.errors import ScaleNASError
from scalenas.search.calibrate import CALIB_SEED
from scalenas.search.objectives import Constraints, Objective, parse_objectives
from scalenas.search.strategies import FUSION_GRID, STRATEGIES, Strategy
from scalenas.space.arch import Arch
from scalenas.space.space import SearchSpace


class ConstraintsCfg(Strict):
    """Hard limits: an arch that breaks one is never evaluated nor returned. GFLOPs are multiply-adds
    / 2^30 (the ScaleNAS convention) at ``search.input_hw``; params and GFLOPs are the effective ones
    (what the extracted net runs, ``space.profile``)."""

    max_gflops: Optional[float] = Field(None, gt=0)
    max_params_m: Optional[float] = Field(None, gt=0, description="millions of parameters")
    max_latency_ms: Optional[float] = Field(None, gt=0, description="needs search.latency = measure or table")
    gflops_window: Optional[tuple[float, float]] = Field(None, description="[min, max] GFLOPs (2^30)")

    @field_validator("gflops_window")
    @classmethod
    def _window(cls, v):
        if v is not None and not 0 <= v[0] < v[1]:
            raise ValueError(f"need 0 <= min < max, got {list(v)}")
        return v

    def build(self) -> Constraints:
        hi = self.max_gflops
        lo = None
        if self.gflops_window is not None:
            lo, whi = self.gflops_window
            hi = whi if hi is None else min(hi, whi)
        return Constraints(max_gflops=hi, max_params_m=self.max_params_m, max_latency_ms=self.max_latency_ms,
                           min_gflops=lo)


class AutoShrinkCfg(Strict):
    """``search.autoshrink``: progressive shrinking from the largest subnet (``graph_strategies.AutoShrink``)."""

    candidates: int = Field(16, ge=1, description="K: one-move-smaller archs drawn per topology and step")
    beam: int = Field(1, ge=1, description="topologies kept per step (1: a single path)")
    score: Literal["efficiency", "cost_step"] = Field(
        "efficiency", description="efficiency: metric - cost_weight * ln(cost); cost_step: best metric among "
                                  "the candidates below the next rung of the cost ladder")
    cost_weight: Optional[float] = Field(None, ge=0, description="lambda of the efficiency score; None: the "
                                         "slope from the cheapest to the most expensive arch seen")
    cost_steps: int = Field(20, ge=1, description="rungs of the geometric cost ladder (score: cost_step)")
    floor: Optional[float] = Field(None, gt=0, description="end a path at this cost (first cost objective)")


class GramCfg(Strict):
    """``search.gram``: meta-graph search with structure-level pruning (``graph_strategies.Gram``)."""

    #: of 0.25, 0.5, 1 and 2, 0.5 recovers the most of the known front (bench/strategies_known_front.py)
    lr: float = Field(0.5, gt=0, description="meta-graph step per batch (logits)")
    moves: int = Field(1, ge=1, description="node-wise resamples per candidate")
    budgets: int = Field(8, ge=0, description="models pruned from the meta-graph per batch, at a ladder of budgets")


class HalvingCfg(Strict):
    """Successive halving of each batch's evaluations (``search/halving.py``): every candidate scored on
    the first ``min_images`` images of the split, the best 1/eta re-scored on eta times more, up to the
    whole split (or ``eval_max_images``)."""

    min_images: int = Field(..., ge=1)
    eta: int = Field(3, ge=2)


class SearchCfg(Strict):
    strategy: str = Field("evolution", description="a strategy registered in search.strategies.STRATEGIES")
    seed: int = 0
    # ---- budget (method §6.1: 1000 initial, then 20 generations of 100) ----
    initial: int = Field(1000, ge=1, description="random archs evaluated at generation 0")
    population: int = Field(100, ge=1, description="archs proposed per generation")
    parents: int = Field(100, ge=1, description="archs kept by successive Pareto layers as parents")
    generations: int = Field(20, ge=0, description="generations after the initial population")
    # ---- variation ----
    crossover_prob: float = Field(0.25, ge=0, le=1, description="per module: take the partner's whole module")
    bit_mutation_prob: float = Field(0.2, ge=0, le=1, description="per non-self fusion bit")
    #: not in the reference (depth changes there only through crossover); 0 reproduces it
    depth_mutation_prob: float = Field(0.1, ge=0, le=1, description="per branch of each non-frozen module")
    #: None: frozen for pose heads (the reference never varies M7, which keeps the pose rule)
    freeze_last_module: Optional[bool] = None
    fusion_options: list[float] = Field(default_factory=lambda: list(FUSION_GRID), min_length=1)
    depth_options: Optional[list[list[int]]] = None  # None: consecutive pairs of the depth choices
    max_tries: int = Field(200, ge=1, description="draws per proposed arch (constraints, duplicates)")
    # ---- the topology-aware strategies ----
    autoshrink: AutoShrinkCfg = AutoShrinkCfg()
    gram: GramCfg = GramCfg()
    # ---- objectives and constraints ----
    objectives: list[str] = Field(default_factory=lambda: ["metric", "gflops"])
    constraints: ConstraintsCfg = ConstraintsCfg()
    references: bool = Field(True, description="evaluate the hrnet, largest and smallest subnets first")
    # ---- evaluation ----
    eval_split: str = Field("search", description="split that ranks candidates (held out from training)")
    eval_max_images: Optional[int] = Field(None, ge=1)
    #: None (default): every candidate scored on the whole split
    halving: Optional[HalvingCfg] = None
    calib_images: int = Field(64, ge=1, description="training images for BN recalibration")
    calib_batch_size: int = Field(16, ge=1)
    calib_seed: int = CALIB_SEED
    input_hw: Optional[tuple[int, int]] = Field(None, description="FLOPs/latency input size; None: from the task")
    # ---- latency ----
    latency: Literal["none", "measure", "table"] = "none"
    latency_backend: Literal["torch", "onnxruntime"] = "torch"
    latency_table: Optional[str] = Field(None, description="a saved table; None: fit one at the start")
    latency_threads: Optional[int] = Field(None, ge=1, description="None: the process's torch threads")
    latency_warmup: int = Field(5, ge=0)
    latency_repeats: int = Field(20, ge=1)
    latency_table_archs: int = Field(40, ge=2, description="measured archs the table is fitted on")
    latency_table_holdout: int = Field(20, ge=0, description="measured archs that score the fit")
    # ---- execution ----
    workers: int = Field(1, ge=1, description="evaluation workers (1: in this process)")
    #: None: cores / workers (one worker in this process: the process's setting). Float results
    #: depend (at the 1e-6 level) on the thread count, so fix it for results that are bit-identical
    #: across different worker counts or machines.
    threads_per_worker: Optional[int] = Field(None, ge=1, description="torch threads per evaluation worker")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: merged over the checkpoint's task config (e.g. another data root)
    task: dict[str, Any] = {}

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        STRATEGIES.get(v)  # an unknown name is a ScaleNASError naming search.strategy and the choices
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v):
        try:
            parse_objectives(v)
        except ScaleNASError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("input_hw")
    @classmethod
    def _hw(cls, v):
        if v is not None and (v[0] <= 0 or v[1] <= 0 or v[0] % 32 or v[1] % 32):
            raise ValueError("height and width must be positive multiples of 32")  # the input is appended
        return v

    @model_validator(mode="after")
    def _latency(self):
        if self.latency == "none":
            if "latency_ms" in self.objectives:
                raise ValueError("objective latency_ms needs search.latency = measure or table")
            if self.constraints.max_latency_ms is not None:
                raise ValueError("constraints.max_latency_ms needs search.latency = measure or table")
        return self

    def build_strategy(self, space: SearchSpace, objectives: Sequence[Objective], pose_rule: bool,
                       feasible: Callable[[Arch], bool] | None = None) -> Strategy:
        """The strategy named by ``strategy``, reading its settings from this (validated) section."""
        return STRATEGIES.build(self.strategy, space, objectives, self, self.seed, pose_rule, feasible)


#: settings that may change when a search resumes (budget and execution only)
RESUMABLE_CHANGES = {"generations", "workers", "threads_per_worker", "device"}
