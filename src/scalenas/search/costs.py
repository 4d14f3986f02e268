"""The costs of an arch in a search: analytic params and FLOPs (``space.profile``), plus latency
measured on this device or predicted by a fitted table.

Costs are a pure function of (space, head, input size, arch), except measured latency, which is
persisted (``latency.jsonl``) so a resumed run sees the values the first run measured, and a fitted
table, which is saved (``latency_table.json``) and reloaded on resume.
"""
from __future__ import annotations

import os
from typing import Callable

from scalenas.errors import ScaleNASError
from scalenas.search.config import SearchCfg
from scalenas.search.latency import LatencyMeter, LatencySettings, LatencyTable, default_table_path, scalenet_builder
from scalenas.search.runlog import JsonlLog
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.profile import profile
from scalenas.space.space import SearchSpace

COST_KEYS = ("params", "params_m", "macs", "gflops_2p30", "gflops_1e9", "latency_ms")
LATENCY_LOG = "latency.jsonl"


class CostModel:
    """Costs of an arch, cached by hash: analytic effective params/FLOPs (``profile``), plus latency measured
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
            # Effective figures: what the extracted net holds and runs (a pose net's dead compute is
            # not built, so it must not cost the search anything; space.liveness).
            c = {"params": p.effective_params, "params_m": p.effective_params_m, "macs": p.effective_macs,
                 "gflops_2p30": p.effective_gflops_2p30, "gflops_1e9": p.effective_gflops_1e9,
                 "latency_ms": self._latency(arch)}
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

    def close(self) -> None:
        if self.latency_log is not None:
            self.latency_log.close()


def build_costs(cfg: SearchCfg, space: SearchSpace, head: HeadSpec, input_hw, device: str, supernet, out_dir: str,
                say: Callable[[str], None]) -> tuple[CostModel, dict | None]:
    """The run's cost model and the description of its latency figures (None without latency):
    ``search.latency`` none (analytic costs only), measure (every arch timed, logged to
    ``latency.jsonl``) or table (a fitted per-block table, loaded or fitted now)."""
    if cfg.latency == "none":
        return CostModel(space, head, input_hw), None
    settings = LatencySettings(input_hw, cfg.latency_threads, cfg.latency_warmup, cfg.latency_repeats, device,
                               cfg.latency_backend)
    if cfg.latency == "measure":
        meter = LatencyMeter(settings, scalenet_builder(space, head, supernet))
        log = JsonlLog(os.path.join(out_dir, LATENCY_LOG))
        return CostModel(space, head, input_hw, meter, log), {"mode": "measure", **settings.describe()}
    table = _latency_table(cfg, space, head, input_hw, settings, supernet, out_dir, say)
    return CostModel(space, head, input_hw, table), {"mode": "table", **table.settings, "fit": table.fit}


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
