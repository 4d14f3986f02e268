"""Evaluation pools: in this process, local worker processes, or Ray actors.

Each worker owns a supernet copy loaded from the checkpoint and its own :class:`Calibrator`, both
built once. ``pool.imap(archs)`` yields ``(index, record)`` as results arrive (any order); the search
puts them back in ask order before telling the strategy, so the outcome does not depend on the
number of workers or on which finished first.

* :class:`InProcessPool` (``workers=1``): no extra process; what the tests and small runs use.
* :class:`ProcessPool`: ``concurrent.futures.ProcessPoolExecutor`` with the "spawn" context (torch
  and fork do not mix); the initializer loads the supernet once per worker. With CUDA, worker i uses
  GPU ``i mod #GPUs``.
* :class:`RayPool` (``--ray auto|local|ADDRESS``): one actor per worker, ``num_gpus=1`` each when
  the cluster has GPUs. The checkpoint travels through Ray's object store, so worker nodes need no
  shared filesystem for it (the task's data must still be readable there).
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterator, Sequence

from scalenas.errors import ScaleNASError
from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.space.arch import Arch
from scalenas.utils.runtime import resolve_device, setup_process, usable_cores


class InProcessPool:
    def __init__(self, spec: EvalSpec, evaluator: Evaluator | None = None):
        self.evaluator = evaluator or Evaluator.from_spec(spec)
        self.workers = 1

    def imap(self, archs: Sequence[Arch], max_images: int | None = None) -> Iterator[tuple[int, dict]]:
        for i, a in enumerate(archs):
            # evaluators that know no image budget (test doubles) are called as before
            yield i, self.evaluator.evaluate(a) if max_images is None else self.evaluator.evaluate(a, max_images)

    def close(self) -> None:
        pass


# ---- local processes ------------------------------------------------------------------------------
_WORKER: Evaluator | None = None


def _init_worker(spec_dict: dict, devices) -> None:
    global _WORKER

    spec = EvalSpec(**spec_dict)
    setup_process(spec.threads or 1)
    if devices is not None:
        spec.device = devices.get()  # one entry per worker: spreads workers over the GPUs
    _WORKER = Evaluator.from_spec(spec)


def _evaluate_in_worker(arch_json: str, max_images: int | None = None) -> dict:
    return _WORKER.evaluate(Arch.from_json(arch_json), max_images)


def _device_list(device: str, workers: int) -> list[str] | None:
    dev = str(resolve_device(device, "search.device"))
    if not dev.startswith("cuda"):
        return None
    import torch

    if ":" in dev:
        return [dev] * workers
    n = torch.cuda.device_count()
    return [f"cuda:{i % n}" for i in range(workers)]


class ProcessPool:
    def __init__(self, spec: EvalSpec, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        devs = _device_list(spec.device, workers)
        q = None
        if devs is not None:
            q = ctx.Queue()
            for d in devs:
                q.put(d)
        self.workers = workers
        self.ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                      initargs=(spec.to_dict(), q))

    def imap(self, archs: Sequence[Arch], max_images: int | None = None) -> Iterator[tuple[int, dict]]:
        from concurrent.futures import as_completed

        futures = {self.ex.submit(_evaluate_in_worker, a.to_json(), max_images): i for i, a in enumerate(archs)}
        try:
            for f in as_completed(futures):
                i = futures[f]
                try:
                    yield i, f.result()
                except ScaleNASError:
                    raise
                except Exception as e:  # a worker crashed or raised: name the arch
                    raise ScaleNASError(f"evaluation of arch {archs[i].hash} failed in a worker process: "
                                        f"{type(e).__name__}: {e}") from e
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        self.ex.shutdown(wait=True, cancel_futures=True)


# ---- Ray ----------------------------------------------------------------------------------------------
class _RayWorker:
    """Body of a Ray actor (wrapped with ``ray.remote`` at run time, as ray is an optional extra).

    A failed set-up (e.g. the task's data missing on that node) is kept and raised by ``evaluate``:
    an exception in an actor's constructor reaches the driver only as a multi-line ``ActorDiedError``,
    whereas one raised by a method arrives as the original exception (Ray 2.x ``RayTaskError.cause``).
    """

    def __init__(self, spec_dict: dict, ckpt_bytes: bytes):
        self.evaluator, self.setup_error = None, None
        try:
            self.evaluator = self._build(EvalSpec(**spec_dict), ckpt_bytes)
        except Exception as e:
            self.setup_error = e

    @staticmethod
    def _build(spec: EvalSpec, ckpt_bytes: bytes) -> Evaluator:
        setup_process(spec.threads or 1)
        fd, path = tempfile.mkstemp(suffix=".pt")
        with os.fdopen(fd, "wb") as f:
            f.write(ckpt_bytes)
        try:
            spec.checkpoint = path
            return Evaluator.from_spec(spec)
        finally:
            os.unlink(path)

    def evaluate(self, index: int, arch_json: str, max_images: int | None = None) -> tuple[int, dict]:
        if self.setup_error is not None:
            raise self.setup_error
        return index, self.evaluator.evaluate(Arch.from_json(arch_json), max_images)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ScaleNASError("--ray: Ray is not installed; install the optional extra (pip install 'scalenas[ray]') "
                            "or run with local worker processes (--workers N)") from None
    return ray


def start_local_ray(ray, num_cpus: int) -> None:
    """A Ray instance on this machine alone, with ``num_cpus`` CPUs and no dashboard (it needs extra
    packages and a port). Actors that do not fit wait forever, so size it to the pool."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=num_cpus, include_dashboard=False)


def _ray_failure(e: Exception, arch: Arch) -> ScaleNASError:
    """One line for an evaluation that failed on a Ray actor: the worker's own ScaleNASError as it
    was, else the original exception's type and first line (Ray's text carries the remote traceback)."""
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, ScaleNASError):
        return cause
    first = (str(cause).strip().splitlines() or [""])[0]
    return ScaleNASError(f"evaluation of arch {arch.hash} failed on a Ray worker: {type(cause).__name__}: {first}")


class RayPool:
    def __init__(self, spec: EvalSpec, workers: int, address: str = "auto"):
        ray = import_ray()
        self.ray = ray
        threads = spec.threads or 1
        # a local instance gets at least a CPU per worker thread: more workers than cores then share
        # them, as local processes do, instead of leaving actors waiting for CPUs that never come
        local_cpus = max(usable_cores(), workers * threads)
        self.started = False
        if not ray.is_initialized():
            if address == "local":
                start_local_ray(ray, local_cpus)
            elif address == "auto":
                try:  # a running cluster (RAY_ADDRESS or `ray start`), else a local one
                    ray.init(address="auto", include_dashboard=False)
                except (ConnectionError, RuntimeError):
                    start_local_ray(ray, local_cpus)
            else:
                try:
                    ray.init(address=address)
                except Exception as e:
                    raise ScaleNASError(f"--ray {address}: cannot connect to the Ray cluster ({e})") from None
            self.started = True
        gpus = ray.cluster_resources().get("GPU", 0)
        use_gpu = gpus >= 1 and spec.device != "cpu"
        spec = EvalSpec(**{**spec.to_dict(), "device": "cuda" if use_gpu else "cpu"})
        with open(spec.checkpoint, "rb") as f:
            ckpt_ref = ray.put(f.read())
        actor_cls = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=threads)(_RayWorker)
        self.actors = [actor_cls.remote(spec.to_dict(), ckpt_ref) for _ in range(workers)]
        self.workers = workers

    def imap(self, archs: Sequence[Arch], max_images: int | None = None) -> Iterator[tuple[int, dict]]:
        ray = self.ray
        todo = list(enumerate(archs))[::-1]
        running = {}
        idle = list(self.actors)
        while todo or running:
            while idle and todo:
                i, a = todo.pop()
                actor = idle.pop()
                running[actor.evaluate.remote(i, a.to_json(), max_images)] = (actor, i)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                actor, i = running.pop(ref)
                idle.append(actor)
                try:
                    result = ray.get(ref)
                except Exception as e:
                    raise _ray_failure(e, archs[i]) from e
                yield result

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self.started:
            self.ray.shutdown()


def make_pool(spec: EvalSpec, workers: int = 1, ray: str | None = None, evaluator: Evaluator | None = None):
    """The pool for ``workers`` and ``ray`` (None: local). ``evaluator`` reuses an in-process one."""
    if workers < 1:
        raise ScaleNASError("--workers: must be at least 1")
    if ray:
        return RayPool(spec, workers, ray)
    if workers == 1:
        return InProcessPool(spec, evaluator)
    return ProcessPool(spec, workers)
