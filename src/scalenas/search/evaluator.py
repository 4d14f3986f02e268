"""The evaluator: scores one subnet of a trained supernet on a task split. Knows nothing of evolution.

``evaluate(arch)``: make ``arch`` the active subnet, recalibrate the BN statistics it uses on a fixed
set of training images (method §6.2; the :class:`Calibrator` is built once per evaluator, so
thousands of evaluations reuse the same cached batches), then ``task.evaluate`` on the **search**
split: images held out from training and distinct from the val/test splits that results are
reported on. The result is a pure function of (weights, arch, calibration set, split): calibration
resets every BN layer the subnet runs, so the order of evaluations does not matter and any number of
workers gives the same numbers.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from scalenas.errors import ScaleNASError
from scalenas.search.calibrate import CALIB_SEED, Calibrator
from scalenas.space.arch import Arch
from scalenas.tasks.base import build_task
from scalenas.train.checkpoint import load_supernet
from scalenas.utils.runtime import resolve_device, torch_threads


BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
BN_CACHE_SIZE = 512  # archs whose recalibrated BN statistics are kept (a few kB to a few MB each)


@dataclass
class EvalSpec:
    """Everything a worker needs to build its own evaluator (plain, picklable data)."""

    checkpoint: str
    task: dict
    split: str = "search"
    max_images: int | None = None
    calib_images: int = 64
    calib_batch_size: int = 16
    calib_seed: int = CALIB_SEED
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads during evaluation (None: leave as is)
    channels_last: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class Evaluator:
    """Scores subnets of ``supernet`` on ``task`` with the split, image counts, calibration set,
    device and threads of ``spec`` (its checkpoint and task config are for workers that build their
    own copy: :meth:`from_spec`)."""

    def __init__(self, supernet, task, spec: EvalSpec):
        self.task = task
        self.split = spec.split
        self.max_images = spec.max_images
        self.device = resolve_device(spec.device, "search.device")
        self.threads = spec.threads
        self.net = supernet.to(self.device)
        if spec.channels_last:
            self.net.to(memory_format=torch.channels_last)
        with torch_threads(spec.threads):
            self.calibrator = Calibrator(task, spec.calib_images, spec.calib_batch_size, spec.calib_seed, self.device,
                                         spec.channels_last)
        self._bn_cache: dict[str, list] = {}  # arch hash -> recalibrated BN buffers (see _calibrate)
        if not task.metric_name:
            raise ScaleNASError(f"task {task.name}: no metric_name to rank archs by")

    @classmethod
    def from_spec(cls, spec: EvalSpec) -> "Evaluator":
        net, _ = load_supernet(spec.checkpoint)
        return cls(net, build_task(spec.task), spec)

    def evaluate(self, arch: Arch, max_images: int | None = None, first_image: int = 0) -> dict[str, Any]:
        """``{"hash", "metric", "metrics", "calib_bn", "eval_s"}`` for ``arch`` (BN recalibrated first),
        scored on ``max_images`` images of the split (None: the spec's ``max_images``) from
        ``first_image`` on (0: the first ones)."""
        t0 = time.perf_counter()
        with torch_threads(self.threads):
            self.net.set_active(arch)
            n_bn = self._calibrate(arch, cache=max_images is not None)
            metrics = self.task.evaluate(self.net, self.split, self.device,
                                          self.max_images if max_images is None else max_images,
                                          first_image=first_image)
        name = self.task.metric_name
        if name not in metrics:
            raise ScaleNASError(f"task {self.task.name}: evaluate() returned no {name!r} (got {sorted(metrics)})")
        value = float(metrics[name])
        if math.isnan(value):
            raise ScaleNASError(f"arch {arch.hash}: the metric {name} is NaN on split {self.split!r}")
        return {"hash": arch.hash, "metric": value, "metrics": _scalars(metrics), "calib_bn": n_bn,
                "eval_s": round(time.perf_counter() - t0, 4)}

    def _calibrate(self, arch: Arch, cache: bool) -> int:
        """BN recalibration of the active ``arch``. With ``cache`` (evaluations on a stated number of
        images: successive halving's rungs), the recalibrated statistics are kept by arch hash and
        restored when the arch is scored again on more images, instead of recalibrating: the result is
        the same (calibration is deterministic), the cost of a rung is then its images alone."""
        saved = self._bn_cache.pop(arch.hash, None) if cache else None
        if saved is not None:
            for bn, buffers in saved:
                for name, value in buffers.items():
                    getattr(bn, name).copy_(value)
            self._bn_cache[arch.hash] = saved
            return len(saved)
        n_bn = self.calibrator.calibrate(self.net)
        if cache:
            self._bn_cache[arch.hash] = [(bn, {k: getattr(bn, k).clone() for k in BN_BUFFERS})
                                         for bn in self.calibrator.last_layers]
            while len(self._bn_cache) > BN_CACHE_SIZE:
                self._bn_cache.pop(next(iter(self._bn_cache)))  # the least recently used
        return n_bn


def _scalars(d: dict) -> dict:
    """The JSON-able scalar entries of a metrics dict (tasks may add arrays or per-class lists)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, bool):
            out[k] = v
        elif isinstance(v, (int, float)):
            out[k] = float(v)
        elif torch.is_tensor(v) and v.numel() == 1:
            out[k] = float(v)
    return out
