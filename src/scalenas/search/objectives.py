"""Objectives and hard constraints of a search, as plain data (no torch, no tasks).

An evaluation record (one line of ``evaluations.jsonl``) carries the task metric and the costs of an
arch: ``params_m``, ``gflops_2p30`` (ScaleNAS convention, multiply-adds / 2^30), ``gflops_1e9``
(HigherHRNet convention) and ``latency_ms`` when latency is on. Params and FLOPs are the *effective*
ones (``Profile.effective_*``): those of the extracted net, without the dead compute that the
published convention counts in a pose net's last module (``space.liveness``). An :class:`Objective`
names one of those values and its direction; strategies only ever see ``{objective name: value}`` dicts.

Costs are a function of the architecture alone (analytic FLOPs/params; latency measured once or
predicted), so constraints are checked *before* an arch is evaluated: the strategy gets a
``feasible(arch)`` predicate and never proposes an arch that fails it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from scalenas.errors import ScaleNASError

#: objective name -> (record key, maximise?). "gflops" and "params" are short aliases.
OBJECTIVES: dict[str, tuple[str, bool]] = {
    "metric": ("metric", True),
    "gflops": ("gflops_2p30", False),
    "gflops_2p30": ("gflops_2p30", False),
    "gflops_1e9": ("gflops_1e9", False),
    "params": ("params_m", False),
    "params_m": ("params_m", False),
    "latency_ms": ("latency_ms", False),
}


@dataclass(frozen=True)
class Objective:
    name: str
    maximize: bool

    @property
    def key(self) -> str:
        """The record field this objective reads."""
        return OBJECTIVES[self.name][0] if self.name in OBJECTIVES else self.name

    def to_min(self, value: float) -> float:
        """The value as a quantity to minimise (what Pareto sorting works on)."""
        return -value if self.maximize else value


def parse_objectives(names: Sequence[str], where: str = "search.objectives") -> list[Objective]:
    names = list(names)
    if not 2 <= len(names) <= 3:
        raise ScaleNASError(f"{where}: give 2 or 3 objectives, e.g. [metric, gflops] or [metric, gflops, latency_ms]; "
                            f"got {names}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ScaleNASError(f"{where}: unknown objective(s) {unknown}; choose from {sorted(OBJECTIVES)}")
    keys = [OBJECTIVES[n][0] for n in names]
    if len(set(keys)) != len(keys):
        raise ScaleNASError(f"{where}: {names} names the same quantity twice")
    if "metric" not in names:
        raise ScaleNASError(f"{where}: 'metric' (the task's accuracy, maximised) must be one of the objectives")
    return [Objective(n, OBJECTIVES[n][1]) for n in names]


def objective_values(record: Mapping, objectives: Sequence[Objective]) -> dict[str, float]:
    """``{objective name: value}`` of an evaluation record (what a strategy is told)."""
    out = {}
    for o in objectives:
        v = record.get(o.key)
        if v is None or not isinstance(v, (int, float)) or math.isnan(v):
            raise ScaleNASError(f"evaluation of {record.get('hash')}: objective {o.name!r} ({o.key}) has no value")
        out[o.name] = float(v)
    return out


@dataclass(frozen=True)
class Constraints:
    """Hard limits; ``None`` means no limit. GFLOPs in the ScaleNAS convention (multiply-adds / 2^30)."""

    max_gflops: float | None = None
    max_params_m: float | None = None
    max_latency_ms: float | None = None
    min_gflops: float | None = None  # the lower end of a FLOPs window

    @property
    def needs_latency(self) -> bool:
        return self.max_latency_ms is not None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_gflops, self.max_params_m, self.max_latency_ms, self.min_gflops))

    def violations(self, costs: Mapping) -> list[str]:
        """Human-readable list of the limits ``costs`` (a record or a cost dict) breaks."""
        out = []
        g = costs.get("gflops_2p30")
        if self.max_gflops is not None and g > self.max_gflops:
            out.append(f"gflops_2p30 {g:.4g} > {self.max_gflops:g}")
        if self.min_gflops is not None and g < self.min_gflops:
            out.append(f"gflops_2p30 {g:.4g} < {self.min_gflops:g}")
        p = costs.get("params_m")
        if self.max_params_m is not None and p > self.max_params_m:
            out.append(f"params_m {p:.4g} > {self.max_params_m:g}")
        if self.max_latency_ms is not None:
            lat = costs.get("latency_ms")
            if lat is None:
                out.append("latency_ms unknown")
            elif lat > self.max_latency_ms:
                out.append(f"latency_ms {lat:.4g} > {self.max_latency_ms:g}")
        return out

    def ok(self, costs: Mapping) -> bool:
        return not self.violations(costs)

    def to_dict(self) -> dict:
        return {"max_gflops": self.max_gflops, "max_params_m": self.max_params_m,
                "max_latency_ms": self.max_latency_ms, "min_gflops": self.min_gflops}


def feasibility(costs_of: Callable, constraints: Constraints) -> Callable:
    """``feasible(arch) -> bool`` from a cost function and the constraints (always true without limits)."""
    if not constraints.active:
        return lambda arch: True
    return lambda arch: constraints.ok(costs_of(arch))
