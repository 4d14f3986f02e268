"""Running a wave of independent study units: in this process, on local worker processes
(``concurrent.futures`` with spawn, as the search's pool), or as Ray tasks.

Each unit writes its own result file, so a wave that is killed keeps its finished units and a rerun
starts only the others. Every worker gets ``usable_cores() // workers`` torch threads (at least 1;
``study.threads`` fixes it for every unit), so the wave never oversubscribes the cores. A unit's
result does not depend on which worker ran it, only (in the 3rd decimal of a score) on its threads.
With Ray, the study folder must be on a filesystem every node shares (units read checkpoints and
write results there).
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

from scalenas.errors import ScaleNASError
from scalenas.search.parallel import import_ray, start_local_ray
from scalenas.study.units import execute, unit_path
from scalenas.utils.runtime import torch_threads, usable_cores


def threads_per_worker(workers: int) -> int:
    return max(1, usable_cores() // max(1, workers))


def pending(root: str, units: Sequence[dict]) -> list[dict]:
    return [u for u in units if not os.path.exists(unit_path(root, u["key"]))]


def run_units(root: str, cfg_dict: dict, units: Sequence[dict], workers: int = 1, ray: str | None = None,
              say: Callable[[str], None] = print) -> None:
    """Run the units of ``units`` that have no result file yet."""
    todo = pending(root, units)
    if not todo:
        return
    fixed = cfg_dict["study"].get("threads")
    if ray:
        _run_ray(root, cfg_dict, todo, workers, ray, fixed or threads_per_worker(workers), say)
    elif workers <= 1:
        for i, u in enumerate(todo):
            with torch_threads(fixed):
                execute(root, cfg_dict, u, fixed)
            say(f"{u['key']} done ({i + 1}/{len(todo)})")
    else:
        _run_local(root, cfg_dict, todo, workers, fixed or threads_per_worker(workers), say)


def _run_local(root: str, cfg_dict: dict, todo: list[dict], workers: int, threads: int, say) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn")) as ex:
        futures = {ex.submit(execute, root, cfg_dict, u, threads): u["key"] for u in todo}
        for n, f in enumerate(as_completed(futures)):
            _result(f, futures[f])
            say(f"{futures[f]} done ({n + 1}/{len(todo)})")


def _result(future, key: str):
    try:
        return future.result()
    except ScaleNASError:
        raise
    except Exception as e:  # a worker crashed or raised: name the unit
        raise ScaleNASError(f"study unit {key} failed in a worker process: {type(e).__name__}: {e}") from e


def _run_ray(root: str, cfg_dict: dict, todo: list[dict], workers: int, address: str, threads: int, say) -> None:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address == "local":
            start_local_ray(ray, max(usable_cores(), workers * threads))
        else:
            try:
                ray.init(address=address, include_dashboard=False)
            except (ConnectionError, RuntimeError) as e:
                if address != "auto":
                    raise ScaleNASError(f"--ray {address}: cannot connect to the Ray cluster ({e})") from None
                start_local_ray(ray, max(usable_cores(), workers * threads))
        started = True
    try:
        task = ray.remote(num_cpus=threads)(execute)
        refs = {task.remote(os.path.abspath(root), cfg_dict, u, threads): u["key"] for u in todo}
        left = list(refs)
        while left:
            done, left = ray.wait(left, num_returns=1)
            key = refs[done[0]]
            try:
                ray.get(done[0])
            except Exception as e:
                cause = getattr(e, "cause", None) or e
                if isinstance(cause, ScaleNASError):
                    raise cause from None
                raise ScaleNASError(f"study unit {key} failed on Ray: {type(cause).__name__}: "
                                    f"{(str(cause).splitlines() or [''])[0]}") from None
            say(f"{key} done ({len(refs) - len(left)}/{len(refs)})")
    finally:
        if started:
            ray.shutdown()
