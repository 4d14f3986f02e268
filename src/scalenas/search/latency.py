"""Latency as a search objective: measured on the current device, or predicted from a per-device table.

**Measured** (:func:`measure_latency`): the *extracted* static ScaleNet (only the arch's blocks and
edges exist, as deployed), eval mode, batch 1 at a fixed input size, a fixed number of threads;
PyTorch eager with channels_last, or ONNX Runtime on the exported graph; ``warmup`` runs, then the
median of ``repeats`` timed runs (CUDA is synchronised around each run). Several nets are timed in
interleaved rounds, which keeps their ranking stable on a shared, noisy machine.

**Predicted** (:class:`LatencyTable`): a linear model over per-type counts of the operations the built
net runs (live blocks and edges only, as measured), fitted once
per (space, head, input size, device, threads) on measured archs with non-negative least squares:
blocks per branch (4 kinds), fusion edges per (input, output) branch pair (12 kinds), fusion
outputs per branch (the add+ReLU after a step, 4 kinds) and a constant (stem, stage 1,
transitions, head). Modules of one stage have identical operators at identical resolutions, so
these ~21 counts carry nearly all of the latency while needing only tens of measured archs; the
per-op costs absorb framework overhead per launched op. Its quality (Spearman rank correlation and
mean absolute % error on held-out archs) is stored in the table and printed by
``bench/latency_table.py``.
"""
from __future__ import annotations

import io
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from scalenas.errors import ScaleNASError
from scalenas.nets.scalenet import ScaleNet
from scalenas.search.calibrate import bn_stats_from_batch
from scalenas.search.strategies import FUSION_GRID
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.liveness import liveness
from scalenas.space.space import SearchSpace
from scalenas.utils.runtime import torch_threads
from scalenas.utils.io import atomic_write_json, read_json

TABLE_FORMAT = "scalenas.latency_table/1"


@dataclass(frozen=True)
class LatencySettings:
    input_hw: tuple[int, int]
    threads: int | None = None  # None: the process's current torch thread count (recorded)
    warmup: int = 5
    repeats: int = 20
    device: str = "cpu"
    backend: str = "torch"  # "torch" (eager, channels_last) or "onnxruntime" (CPU)
    batch: int = 1

    def resolved(self) -> "LatencySettings":
        if self.backend not in ("torch", "onnxruntime"):
            raise ScaleNASError(f"search.latency_backend: unknown backend {self.backend!r}; use torch or onnxruntime")
        if self.backend == "onnxruntime" and not str(self.device).startswith("cpu"):
            raise ScaleNASError("search.latency_backend: onnxruntime latency is measured on the CPU; set "
                                "search.device=cpu or use the torch backend")
        if self.warmup < 0 or self.repeats < 1:
            raise ScaleNASError("search.latency_warmup / latency_repeats: need warmup >= 0 and repeats >= 1")
        t = self.threads or torch.get_num_threads()
        return LatencySettings(tuple(int(v) for v in self.input_hw), int(t), self.warmup, self.repeats,
                               str(self.device), self.backend, self.batch)

    def describe(self) -> dict:
        d = asdict(self.resolved())
        d["input_hw"] = list(d["input_hw"])
        d["device_name"] = device_name(self.device)
        return d


def device_name(device: str) -> str:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return platform.processor() or platform.machine() or "cpu"


def _time_round_robin(runs: Sequence[Callable[[], None]], warmup: int, repeats: int,
                      sync: Callable[[], None]) -> list[float]:
    """Median ms of each callable, timed in interleaved rounds so that a change in machine load (shared
    CPUs) hits every candidate alike instead of biasing whichever was measured during it."""
    for run in runs:
        for _ in range(warmup):
            run()
    sync()
    times = [[] for _ in runs]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            t0 = time.perf_counter()
            run()
            sync()
            times[i].append(time.perf_counter() - t0)
    return [1000.0 * statistics.median(t) for t in times]


def measure_latencies(models: Sequence[torch.nn.Module], settings: LatencySettings) -> list[float]:
    """Median milliseconds per forward of each model (ScaleNets) on a zero batch of ``settings.input_hw``."""
    s = settings.resolved()
    h, w = s.input_hw
    if s.backend == "onnxruntime":
        runs = [_ort_runner(m.eval(), s) for m in models]
        with torch_threads(s.threads):
            return _time_round_robin(runs, s.warmup, s.repeats, lambda: None)
    dev = torch.device(s.device)
    models = [m.eval().to(dev).to(memory_format=torch.channels_last) for m in models]
    x = torch.zeros(s.batch, 3, h, w, device=dev).contiguous(memory_format=torch.channels_last)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    with torch_threads(s.threads), torch.inference_mode():
        return _time_round_robin([(lambda m=m: m(x)) for m in models], s.warmup, s.repeats, sync)


def measure_latency(model: torch.nn.Module, settings: LatencySettings) -> float:
    return measure_latencies([model], settings)[0]


def _ort_runner(model: torch.nn.Module, s: LatencySettings) -> Callable[[], None]:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ScaleNASError("search.latency_backend=onnxruntime needs the onnxruntime package") from e
    import warnings

    h, w = s.input_hw
    x = torch.zeros(s.batch, 3, h, w)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # the legacy exporter: no onnxscript dependency, weights inline, a few seconds faster
        torch.onnx.export(model.cpu().float(), (x,), buf, dynamo=False, opset_version=17, input_names=["image"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = s.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    feed = {"image": x.numpy()}
    return lambda: sess.run(None, feed)


class LatencyMeter:
    """``meter(arch) -> ms``: builds the arch's static net with ``build(arch)`` and times it;
    ``meter.many(archs)`` times several in interleaved rounds, ``chunk`` nets in memory at a time."""

    def __init__(self, settings: LatencySettings, build: Callable[[Arch], torch.nn.Module], chunk: int = 16):
        self.settings = settings.resolved()
        self.build = build
        self.chunk = max(1, chunk)

    def __call__(self, arch: Arch) -> float:
        return self.many([arch])[0]

    def many(self, archs: Sequence[Arch], progress: Callable[[int, int], None] | None = None) -> list[float]:
        out: list[float] = []
        # building runs under the same fixed thread count: an oversubscribed OpenMP pool on a busy
        # machine can make even set-up forwards 100x slower
        with torch_threads(self.settings.threads):
            for s in range(0, len(archs), self.chunk):
                nets = [self.build(a) for a in archs[s:s + self.chunk]]
                out += measure_latencies(nets, self.settings)
                del nets
                if progress:
                    progress(len(out), len(archs))
        return out


def scalenet_builder(space: SearchSpace, head: HeadSpec, supernet=None) -> Callable[[Arch], torch.nn.Module]:
    """Build the static ScaleNet of an arch: extracted from ``supernet`` when given (as deployed),
    else freshly initialised (timing does not depend on the weights)."""
    if supernet is not None:
        return lambda arch: supernet.extract(arch)

    def build(arch: Arch) -> torch.nn.Module:
        net = ScaleNet(space, arch, head)
        # BN statistics of its own activations, so eval-mode timing runs at a trained net's scale
        bn_stats_from_batch(net, torch.randn(2, 3, 64, 64))
        return net

    return build


# ---- the predictor ---------------------------------------------------------------------------------
def feature_names(space: SearchSpace) -> list[str]:
    nbmax = max(space.module_branches)
    names = ["const"] + [f"blocks_b{i}" for i in range(nbmax)]
    names += [f"edge_{k}to{j}" for j in range(nbmax) for k in range(nbmax) if k != j]
    names += [f"fuse_b{j}" for j in range(nbmax)]
    return names


def arch_features(space: SearchSpace, arch: Arch, head: HeadSpec | str = "seg") -> np.ndarray:
    """Counts of the operations that the built net of (``arch``, ``head``) runs, in :func:`feature_names`
    order: only live blocks and edges (``space.liveness``; a pose net does not build its dead compute)."""
    names = feature_names(space)
    idx = {n: i for i, n in enumerate(names)}
    f = np.zeros(len(names))
    f[0] = 1.0
    for ma, lv in zip(arch.modules, liveness(arch, head)):
        for j in range(ma.num_branches):
            f[idx[f"blocks_b{j}"]] += lv.depth[j]
            for s in range(ma.depth[j]):
                ins = ma.inputs(j, s) if lv.fuses(s, j) else ()
                for k in ins:
                    f[idx[f"edge_{k}to{j}"]] += 1
                if ins:
                    f[idx[f"fuse_b{j}"]] += 1
    return f


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def mape(pred: Sequence[float], true: Sequence[float]) -> float:
    p, t = np.asarray(pred, float), np.asarray(true, float)
    return float(np.mean(np.abs(p - t) / t) * 100.0)


def sample_archs(space: SearchSpace, n: int, seed: int, pose_rule: bool = False) -> list[Arch]:
    """``n`` distinct archs spread over the FLOPs range: smallest, largest, then the fusion x depth grid."""

    rng = random.Random(seed)
    grid = [(f, d) for f in FUSION_GRID for d in space.depth_pairs()]
    out, seen = [], set()
    for a in [space.smallest(pose_rule), space.largest(pose_rule)]:
        if a.hash not in seen and len(out) < n:
            out.append(a)
            seen.add(a.hash)
    tries = 0
    while len(out) < n and tries < 100 * n:
        f, d = grid[tries % len(grid)]
        tries += 1
        a = space.sample(rng, f, d, pose_rule)
        if a.hash not in seen:
            out.append(a)
            seen.add(a.hash)
    return out


class LatencyTable:
    """A fitted per-device latency predictor (see the module doc). ``table(arch) -> ms``."""

    def __init__(self, space: SearchSpace, head: HeadSpec, settings: dict, coef: Sequence[float], fit: dict,
                 measured: list[dict] | None = None):
        self.space, self.head = space, head
        self.settings = settings
        self.coef = np.asarray(coef, float)
        self.fit = fit
        self.measured = measured or []
        if len(self.coef) != len(feature_names(space)):
            raise ScaleNASError("latency table: coefficient count does not match the space")

    def __call__(self, arch: Arch) -> float:
        return float(arch_features(self.space, arch, self.head) @ self.coef)

    def breakdown(self) -> dict[str, float]:
        """Fitted milliseconds per operation of each kind."""
        return {n: float(c) for n, c in zip(feature_names(self.space), self.coef)}

    # ---- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit_measured(cls, space: SearchSpace, head: HeadSpec, settings: LatencySettings, archs: Sequence[Arch],
                     latencies: Sequence[float], holdout: Sequence[tuple[Arch, float]] = ()) -> "LatencyTable":
        from scipy.optimize import nnls

        X = np.stack([arch_features(space, a, head) for a in archs])
        y = np.asarray(latencies, float)
        coef, _ = nnls(X, y)
        fit = {"n_fit": len(archs), "fit_spearman": spearman(X @ coef, y), "fit_mape": mape(X @ coef, y)}
        measured = [{"hash": a.hash, "latency_ms": float(t), "predicted_ms": float(X[i] @ coef), "set": "fit"}
                    for i, (a, t) in enumerate(zip(archs, y))]
        if holdout:
            hp = [float(arch_features(space, a, head) @ coef) for a, _ in holdout]
            ht = [float(t) for _, t in holdout]
            fit.update({"n_holdout": len(holdout), "holdout_spearman": spearman(hp, ht), "holdout_mape": mape(hp, ht)})
            measured += [{"hash": a.hash, "latency_ms": t, "predicted_ms": p, "set": "holdout"}
                         for (a, _), p, t in zip(holdout, hp, ht)]
        return cls(space, head, settings.describe(), coef, fit, measured)

    @classmethod
    def build(cls, space: SearchSpace, head: HeadSpec, settings: LatencySettings, n_fit: int = 40,
              n_holdout: int = 20, seed: int = 0, build: Callable[[Arch], torch.nn.Module] | None = None,
              progress: Callable[[int, int], None] | None = None) -> "LatencyTable":
        """Measure ``n_fit + n_holdout`` archs on this device and fit the table on the first ``n_fit``."""
        if n_fit < 2:
            raise ScaleNASError("search.latency_table_archs: need at least 2 archs to fit a latency table")
        meter = LatencyMeter(settings, build or scalenet_builder(space, head))
        archs = sample_archs(space, n_fit + n_holdout, seed, head.pose_rule)
        rng = random.Random(seed + 1)
        order = list(range(len(archs)))
        rng.shuffle(order)  # smallest/largest land in either set; the fit must not rely on them
        lat = dict(zip(order, meter.many([archs[i] for i in order], progress)))
        # held-out archs spread evenly over the measurement order, so a change in machine load
        # between measurement chunks does not bias one set against the other
        n = len(order)
        hold_pos = {int(k * n / n_holdout) for k in range(n_holdout)} if n_holdout else set()
        fit_idx = [i for p, i in enumerate(order) if p not in hold_pos]
        hold_idx = [i for p, i in enumerate(order) if p in hold_pos]
        return cls.fit_measured(space, head, settings, [archs[i] for i in fit_idx], [lat[i] for i in fit_idx],
                                [(archs[i], lat[i]) for i in hold_idx])

    # ---- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": TABLE_FORMAT, "space": self.space.to_dict(), "head": self.head.to_dict(),
                "settings": self.settings, "features": feature_names(self.space),
                "coef": [float(c) for c in self.coef], "fit": self.fit, "measured": self.measured}

    def save(self, path: str) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "LatencyTable":
        d = read_json(path, "latency table")
        if not isinstance(d, dict) or d.get("format") != TABLE_FORMAT:
            raise ScaleNASError(f"{path}: not a scalenas latency table (format {TABLE_FORMAT!r})")
        space, head = SearchSpace.from_dict(d["space"]), HeadSpec.from_dict(d["head"])
        if d.get("features") != feature_names(space):
            raise ScaleNASError(f"{path}: feature list does not match this version of scalenas")
        return cls(space, head, d["settings"], d["coef"], d.get("fit", {}), d.get("measured", []))

    def check_compatible(self, space: SearchSpace, head: HeadSpec, input_hw, where: str) -> None:
        """The table must describe the same space, head and input size as the search using it."""
        if self.space != space:
            raise ScaleNASError(f"{where}: the latency table was fitted for another search space")
        if self.head != head:
            raise ScaleNASError(f"{where}: the latency table was fitted for head {self.head.kind!r} "
                                f"({self.head.to_dict()}), the search uses {head.to_dict()}")
        if list(self.settings.get("input_hw", [])) != [int(v) for v in input_hw]:
            raise ScaleNASError(f"{where}: the latency table was measured at input {self.settings.get('input_hw')}, "
                                f"the search uses {list(input_hw)}")


def default_table_path(run_dir: str) -> str:
    return os.path.join(run_dir, "latency_table.json")
