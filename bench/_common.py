"""Shared helpers for bench scripts: interleaved timing (ratios measured side by side), tables, and rows
cached on disk so that a stopped bench continues."""
from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

from scalenas.utils.markdown import markdown_table


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int = 7, warmup: int = 2) -> dict[str, float]:
    """Run each function ``warmup`` times, then ``repeats`` rounds in alternating order; median seconds.

    Alternating within a round makes a machine-wide slowdown hit every variant alike, so ratios
    between them stay meaningful on a noisy shared machine.
    """
    times = interleaved_times(fns, repeats, warmup)
    return {k: statistics.median(v) for k, v in times.items()}


def paired_ratio(fn: Callable[[], None], base: Callable[[], None], repeats: int = 11,
                 warmup: int = 2) -> tuple[float, float, float]:
    """(median seconds of ``fn``, of ``base``, median of the per-round ratios fn/base).

    The per-round ratio compares two runs taken back to back, so a slowdown lasting longer than one
    round cancels; its median is a tighter estimate of a small overhead than a ratio of medians.
    """
    t = interleaved_times({"fn": fn, "base": base}, repeats, warmup)
    ratios = [a / b for a, b in zip(t["fn"], t["base"])]
    return statistics.median(t["fn"]), statistics.median(t["base"]), statistics.median(ratios)


def interleaved_times(fns: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of every round for each function (see ``interleaved_medians``)."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> None:
    if title:
        print(f"\n{title}")
    print("\n".join(markdown_table(headers, rows, _fmt, pad=True)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def machine() -> str:
    import torch

    from scalenas.deploy.runtime import device_string  # one CPU/GPU description for cards and benches

    return f"{device_string('cpu')}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def eager_backends(net, x, bf16: bool = True) -> dict[str, Callable[[], None]]:
    """One callable per eager PyTorch variant on the same input: NCHW, channels_last (a converted copy
    of the same weights) and, if ``bf16``, bf16 autocast on the channels_last copy."""
    import copy

    import torch

    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    xcl = x.contiguous(memory_format=torch.channels_last)

    def nchw():
        with torch.inference_mode():
            net(x)

    def cl():
        with torch.inference_mode():
            net_cl(xcl)

    def bf16_cl():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            net_cl(xcl)

    fns = {"eager fp32 NCHW": nchw, "eager fp32 channels_last": cl}
    if bf16:
        fns["eager bf16 autocast (CL)"] = bf16_cl
    return fns


def train_step_fn(model, x, opt=None) -> Callable[[], None]:
    """One SGD step of ``model`` on ``x`` (a stand-in loss: the mean square of the output); ``opt``
    defaults to SGD over all of ``model``'s parameters at a negligible learning rate."""
    import torch

    opt = opt or torch.optim.SGD(model.parameters(), lr=1e-9, momentum=0.9)

    def f():
        model.train()
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
    return f


def infer_fn(model, x) -> Callable[[], None]:
    """One eval-mode forward of ``model`` on ``x`` without autograd."""
    import torch

    def f():
        model.eval()
        with torch.no_grad():
            model(x)
    return f


def bench_json(script: str, args: list[str], threads: int | None = None) -> dict:
    """Run ``bench/<script>`` (a bench that prints its record as a JSON line with ``--json``) in a fresh
    process, on ``threads`` torch threads when given, and return that record; a failed run stops the caller
    with one line naming the command and the run's last line of error output."""
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), script), *args, "--json"]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no error output)"])[-1]
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}): {last}")
    return json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])


def row_path(out: str, name: str) -> str:
    """Where row ``name`` of a bench whose working folder is ``out`` is kept."""
    return os.path.join(out, "rows", f"{name}.json")


def cached_rows(out: str, jobs: dict[str, Callable[[], dict]], workers: int = 1) -> dict[str, dict]:
    """Each job's row, run (in the order given, on ``workers`` spawned processes when more than one) only
    when OUT/rows/<name>.json is missing, and written there atomically: a stopped bench continues.
    The jobs must pickle (module-level functions, ``functools.partial`` of them)."""
    os.makedirs(os.path.join(out, "rows"), exist_ok=True)
    todo = {n: job for n, job in jobs.items() if not os.path.exists(row_path(out, n))}
    if workers > 1 and len(todo) > 1:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            for f in cf.as_completed([ex.submit(_run_cached, out, n, job) for n, job in todo.items()]):
                print(f"done: {f.result()}", flush=True)
    else:
        for n, job in todo.items():
            print(f"done: {_run_cached(out, n, job)}", flush=True)
    return {n: json.load(open(row_path(out, n))) for n in jobs}


def _run_cached(out: str, name: str, job: Callable[[], dict]) -> str:
    from scalenas.utils.io import atomic_write_json

    atomic_write_json(row_path(out, name), job())
    return row_path(out, name)


def publish(prefix: str, settings: dict, doc: dict, md: str, plot: Callable[[str], str] | None = None,
            caption: str = "") -> None:
    """A bench's published results: PREFIX.json (``settings``, this machine, then ``doc``), PREFIX.md (``md``,
    with PREFIX.png linked under ``caption`` when there is a ``plot``, a function of the .png path that draws it)."""
    from scalenas.utils.io import atomic_write_json, atomic_write_text

    atomic_write_json(f"{prefix}.json", {"settings": settings, "machine": machine(), **doc})
    if plot is not None:
        md += f"\n![{caption}]({os.path.basename(prefix)}.png)\n"
        plot(f"{prefix}.png")
    atomic_write_text(f"{prefix}.md", md)
