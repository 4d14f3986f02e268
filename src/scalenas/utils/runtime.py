"""Process set-up for CPU speed (environment.md): glibc malloc thresholds and torch threads; the
device, thread-count and distributed-rank helpers every layer above shares."""
from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Iterator

from scalenas.errors import ScaleNASError

_DONE = False
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"


def fix_malloc() -> bool:
    """Stop glibc from returning large blocks to the OS after every step (costs ~1.5x on CPU training).

    Both thresholds must be raised; raising only the trim threshold makes things slower. Child
    processes inherit ``GLIBC_TUNABLES``.
    """
    os.environ.setdefault("GLIBC_TUNABLES", GLIBC_TUNABLES)
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1
    ok &= libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    return bool(ok)


def _pin_opencv() -> None:
    """One OpenCV thread: data work runs in loader worker processes, and an OpenCV thread pool
    created in the parent would be inherited half-initialised by forked workers (deadlocks)."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def core_share() -> int:
    """This process's share of the usable cores: ``LOCAL_WORLD_SIZE`` processes per node under torchrun."""
    return max(1, usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def loader_workers(requested: int) -> int:
    """Loader worker processes for training and evaluation: the configured count, at most this process's core share.
    More workers than cores only queue behind each other and the decoding process (and torch warns)."""
    return min(max(0, int(requested)), core_share())


def default_threads(loader_workers: int = 0) -> int:
    """Torch intra-op threads that never oversubscribe the cores: this process's share of the usable
    cores (``LOCAL_WORLD_SIZE`` processes per node under torchrun), less one per busy loader worker,
    at least 1, and at most ``OMP_NUM_THREADS`` when that is set.

    Oversubscription is expensive, not mildly slower: OpenMP threads spin-wait at barriers while a loader
    worker holds their core. On a shared 2-core machine with 2 loader workers a W8 supernet step took a
    median 18.7 s with 2 threads and 0.83 s with 1 (bench/train_threads.py, README). Other processes'
    load is not counted: the count must not change between a run and its resume.
    """
    n = max(1, core_share() - max(0, int(loader_workers)))
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return n


def setup_process(num_threads: int | None = None, loader_workers: int = 0) -> int:
    """Idempotent: fix malloc; set torch intra-op threads (``num_threads``, else :func:`default_threads`).
    Returns the thread count."""
    global _DONE
    if not _DONE:
        fix_malloc()
        _pin_opencv()
        _DONE = True
    import torch

    n = num_threads or default_threads(loader_workers)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: leave the count as it is), then
    restore the previous count."""
    import torch

    prev = torch.get_num_threads()
    if n and n != prev:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)


def resolve_device(device: str, key: str = "--device"):
    """``"auto"``: CUDA when available, else the CPU; an explicit CUDA device on a machine without
    one is refused naming ``key`` (the flag or config key that asked for it). Returns a ``torch.device``."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ScaleNASError(f"{key} {device}: CUDA is not available on this machine")
    return torch.device(device)


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def native_bf16(device) -> bool:
    """True where bf16 runs on a fast path: a CUDA GPU of compute capability 8.0 or later (Ampere on),
    or a CPU whose oneDNN has bf16 kernels (AVX512-BF16 / AMX). ``torch.cuda.is_bf16_supported()`` also
    counts GPUs that only emulate bf16 (e.g. V100, T4), where it is slower than fp16 or fp32. On AVX2-only
    CPUs torch falls back to a reference convolution ~100x slower than fp32, so bf16 must not be used there."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.version.hip:  # ROCm GPUs torch supports all have bf16
            return True
        return tuple(torch.cuda.get_device_capability(dev)) >= (8, 0)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _no_bf16_why(dev) -> str:
    import torch

    if dev.type == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(dev)
        return f"{dev} has no native bf16: compute capability {major}.{minor} < 8.0"
    return f"{dev} has no native bf16 convolution, which needs AVX512-BF16/AMX"


def resolve_amp(requested: str, device) -> tuple[str, str]:
    """(precision, why) for ``train.amp``: "bf16" where bf16 is native; elsewhere "fp16" (with a grad
    scaler) on CUDA and "none" (fp32) on the CPU, where fp16 convolutions are slow. An explicit ``bf16``
    on hardware without native bf16 gets the same fallback, with a warning."""
    import warnings

    import torch

    dev = torch.device(device)
    if requested == "none":
        return "none", "fp32 (train.amp none)"
    if native_bf16(dev):
        return "bf16", f"bf16 (native on {dev})"
    fallback = "fp16" if dev.type == "cuda" else "none"
    name = "fp16 with a grad scaler" if fallback == "fp16" else "fp32"
    if requested == "bf16":
        warnings.warn(f"amp=bf16 requested but {_no_bf16_why(dev)}; running {name}", RuntimeWarning, stacklevel=2)
    return fallback, f"{name} ({_no_bf16_why(dev)})"
