"""Inference throughput of ScaleNets against the measured convolution peak of this machine.

    python bench/inference_throughput.py [--models hrnet-w18 scalenet-s1@w18 tiny] [--size 256]
        [--batch 1 4] [--repeats 7] [--warmup 2] [--threads N] [--force-bf16] [--quick] [--json]

Peak: one large, compute-bound convolution (3x3, 128->128 channels, 1x128x128x128 input,
channels_last, no grad), fp32, and bf16 where oneDNN has native bf16 kernels (AVX512-BF16 / AMX).
Elsewhere bf16 convolutions fall back to a slow reference kernel; the bf16 rows are then skipped
unless ``--force-bf16`` (which can make the run many times longer). FLOPs = 2 x MACs throughout.

Models (``--models``): ``NAME`` is a shipped preset as is (``create_model``); ``NAME@wN`` lays the
preset's arch on its space at width N (``scalenet-s1@w18``: the released S1 arch on the W18 space);
``tiny`` is the demo-size net (width 8, modules (1,2,1), depths (2,3,4), stem 16, one stage-1 block,
HRNet point). Backends: eager fp32 NCHW, eager fp32 channels_last, eager bf16 autocast
(channels_last; native or forced only), ONNX Runtime fp32 (the project's exporter, CPU provider,
intra-op threads = torch threads, idle workers not spinning unless ``--ort-spinning``).

Achieved GFLOP/s = 2 x analytic conv MACs (``space.profile``) x batch / time: BN, ReLU, upsampling
and additions do the work but are not counted, so this is a lower bound on the arithmetic done.
The fp32 peak conv is timed again inside every (model, size, batch) group, interleaved with the
backends (``_common.interleaved_medians``), and "% of peak" divides by that same-rounds figure, so
a change in machine load between groups moves the percentages less than the absolute figures. On a
machine shared with other jobs, eager torch (an OpenMP barrier per op) slows down far more than one
big conv or ONNX Runtime: read the load averages printed under the table before the eager rows.
Weights are random; BN statistics come from one random batch so activations have a trained net's
scale.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import eager_backends, interleaved_medians, machine, print_table  # noqa: E402

from scalenas.deploy.export import export_onnx  # noqa: E402
from scalenas.errors import ScaleNASError  # noqa: E402
from scalenas.nets.registry import create_model, get_preset  # noqa: E402
from scalenas.nets.scalenet import ScaleNet  # noqa: E402
from scalenas.search.calibrate import bn_stats_from_batch  # noqa: E402
from scalenas.space import HeadSpec, SearchSpace, profile  # noqa: E402
from scalenas.space.profile import check_input_size  # noqa: E402
from scalenas.utils.runtime import native_bf16, setup_process  # noqa: E402

PEAK_SHAPE = (1, 128, 128, 128)  # N, C, H, W of the peak conv's input; 3x3, C->C, padding 1
PEAK_NAME = "conv peak fp32"


# ------------------------------------------------------------------------------------------- peak
def peak_conv(dtype: torch.dtype):
    """(callable, MACs) of the reference conv in ``dtype``; weights and input cast directly (no
    autocast), so the time is the kernel's alone."""
    n, c, h, w = PEAK_SHAPE
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).eval().to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(PEAK_SHAPE).to(dtype=dtype).contiguous(memory_format=torch.channels_last)
    macs = n * c * c * 9 * h * w

    def f():
        with torch.inference_mode():
            conv(x)

    return f, macs


def gflops(macs: float, seconds: float) -> float:
    return 2.0 * macs / seconds / 1e9


# ----------------------------------------------------------------------------------------- models
def build_model(spec: str):
    """(label, space, arch, head, net) for a ``--models`` entry."""
    if spec == "tiny":
        space = SearchSpace(width=8, modules_per_stage=(1, 2, 1), depth_choices=(2, 3, 4), stem_channels=16,
                            stage1_blocks=1)
        arch, head = space.hrnet(), HeadSpec("seg")
        return "tiny", space, arch, head, ScaleNet(space, arch, head)
    name, _, width = spec.partition("@")
    p = get_preset(name)
    if not width:
        return spec, p.space, p.arch, p.head, create_model(name)
    if not (width[:1].lower() == "w" and width[1:].isdigit()):
        raise ScaleNASError(f"--models {spec!r}: expected NAME@wN (e.g. scalenet-s1@w18)")
    space = dataclasses.replace(p.space, width=int(width[1:]))
    return spec, space, p.arch, p.head, ScaleNet(space, p.arch, p.head)


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def ort_session(path: str, threads: int, spinning: bool):
    """CPU session with ``threads`` intra-op threads. Spinning is off by default: idle ORT workers
    otherwise keep spinning after ``run`` returns and take a core from whatever runs next in the
    interleaved rounds (measured on 2 loaded cores: the next variant 1.5-2x slower)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def backends(net, sess, x: torch.Tensor, bf16: bool) -> dict:
    """One callable per backend on the same input; channels_last variants run a converted copy."""
    feed = {sess.get_inputs()[0].name: x.numpy()}
    fns = eager_backends(net, x, bf16)
    fns["onnxruntime fp32"] = lambda: sess.run(None, feed)
    return fns


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["hrnet-w18", "scalenet-s1@w18", "tiny"])
    ap.add_argument("--size", type=int, nargs="+", default=[256], help="square input sides (multiples of 32)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per group (default 7; --quick 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds per group (default 2; --quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime intra-op threads")
    ap.add_argument("--ort-spinning", action="store_true", help="let idle ONNX Runtime workers spin (see ort_session)")
    ap.add_argument("--force-bf16", action="store_true", help="time bf16 even where it is not native (slow)")
    ap.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run, noisier figures")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object with the rows")
    a = ap.parse_args(argv)
    repeats = a.repeats or (3 if a.quick else 7)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    for s in a.size:
        check_input_size((s, s))
    if min(a.batch) < 1:
        ap.error("--batch: sizes must be positive")

    setup_process(a.threads)
    threads = torch.get_num_threads()
    cap = torch.backends.cpu.get_cpu_capability()
    bf16_native = native_bf16("cpu")
    bf16 = bf16_native or a.force_bf16
    load0 = os.getloadavg()[0]
    print(f"machine: {machine()}; torch CPU capability {cap}; 1-min load average {load0:.2f}")
    if not bf16_native:
        print("bf16 is not native on this CPU (no AVX512-BF16/AMX in oneDNN): bf16 convolutions fall back to a "
              "slow reference kernel; " + ("timing them anyway (--force-bf16)" if a.force_bf16
                                           else "bf16 rows skipped (--force-bf16 to time them)"))

    # 1. peak: fp32 (and bf16) conv interleaved, more rounds than a model group since it is cheap
    f32, peak_macs = peak_conv(torch.float32)
    peak_fns = {"fp32": f32}
    if bf16:
        peak_fns["bf16"] = peak_conv(torch.bfloat16)[0]
    pk = interleaved_medians(peak_fns, repeats + 4, warmup + 1)
    peak = {k: gflops(peak_macs, s) for k, s in pk.items()}
    n, c, h, w = PEAK_SHAPE
    print_table(["conv (3x3, channels_last, no grad)", "dtype", "median ms", "GFLOP/s (FLOPs = 2 x MACs)"],
                [[f"{c}->{c}, input {n}x{c}x{h}x{w}, {peak_macs / 1e9:.2f} GMACs", k, pk[k] * 1e3, peak[k]]
                 for k in pk], title=f"Measured conv peak ({threads} threads)")

    # 2. models: per (model, size, batch) one interleaved group of backends plus the peak conv
    rows, info = [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="inference_throughput_") as tmp:
        for spec in a.models:
            label, space, arch, head, net = build_model(spec)
            torch.manual_seed(0)
            bn_stats_from_batch(net, torch.randn(2, 3, a.size[0], a.size[0]))
            n_out = 2 if head.kind == "pose-bottomup" else 1
            names = ["logits"] if n_out == 1 else ["heatmaps_tags", "heatmaps_hr"]
            path = os.path.join(tmp, f"{label.replace('@', '_')}.onnx")
            # a small example (multiples of 32) keeps tracing cheap; the graph is dynamic in B, H, W
            ex = export_onnx(net, path, torch.randn(2, 3, 64, 96), names)
            sess = ort_session(path, threads, a.ort_spinning)
            print(f"{label}: exported to ONNX ({ex['exporter']}, opset {ex['opset']}) in {ex['export_s']:.1f} s",
                  flush=True)
            for size in a.size:
                prof = profile(space, arch, head, (size, size))
                # effective: what the built net runs (a pose net has no dead compute to time)
                info.append({"model": label, "input": size, "params": prof.effective_params,
                             "macs": prof.effective_macs})
                print(f"{label}: {prof.effective_params / 1e6:.2f} M params, {prof.effective_macs / 1e9:.3f} GMACs "
                      f"(effective) at {size}x{size}", flush=True)
                for b in a.batch:
                    x = torch.randn(b, 3, size, size)
                    with torch.no_grad():  # sanity: the exported graph computes the same function here
                        ref = _first(net(x))
                        got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
                        rel = float((got - ref).abs().max() / ref.abs().max())
                    fns = backends(net, sess, x, bf16)
                    fns[PEAK_NAME] = f32
                    med = interleaved_medians(fns, repeats, warmup)
                    group_peak = gflops(peak_macs, med.pop(PEAK_NAME))
                    for k, s in med.items():
                        g = gflops(prof.effective_macs * b, s)
                        rows.append({"model": label, "input": size, "batch": b, "backend": k, "ms": s * 1e3,
                                     "img_s": b / s, "gflops": g, "pct_peak": 100.0 * g / group_peak,
                                     "peak_gflops": group_peak,
                                     "onnx_rel_diff": rel if k.startswith("onnx") else None})
                    print(f"  batch {b}: timed ({time.perf_counter() - t_start:.0f} s so far); max|ort-eager| / "
                          f"max|eager| = {rel:.1e}", flush=True)
            del net, sess

    # 3. table; the load average tells how much other work shared the cores (eager, with its OpenMP
    # barriers per op, suffers far more from oversubscription than ONNX Runtime's pool)
    load1 = os.getloadavg()[0]
    print_table(["model", "input", "batch", "backend", "ms/batch", "img/s", "GFLOP/s", "% of fp32 conv peak",
                 "fp32 peak GFLOP/s (same rounds)"],
                [[r["model"], f"{r['input']}x{r['input']}", r["batch"], r["backend"], r["ms"], r["img_s"],
                  r["gflops"], r["pct_peak"], r["peak_gflops"]] for r in rows],
                title=f"Inference throughput, {threads} threads, median of {repeats} interleaved rounds; "
                      f"GFLOP/s = 2 x analytic conv MACs x batch / time (FLOPs = 2 x MACs)")
    print(f"1-min load average {load0:.2f} at start, {load1:.2f} at end ({os.cpu_count()} cores); "
          f"total {time.perf_counter() - t_start:.0f} s for the models")
    if a.json:
        print(json.dumps({"machine": machine(), "cpu_capability": cap, "threads": threads,
                          "load_avg_1min": [round(load0, 2), round(load1, 2)],
                          "bf16_native": bf16_native, "bf16_timed": bf16, "ort_spinning": a.ort_spinning,
                          "peak_conv": {"shape": list(PEAK_SHAPE), "kernel": 3, "macs": peak_macs,
                                        "gflops": {k: round(v, 3) for k, v in peak.items()}},
                          "models": info, "repeats": repeats, "warmup": warmup,
                          "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                                   for r in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
