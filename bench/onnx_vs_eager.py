"""Exported ONNX (ONNX Runtime) vs PyTorch eager for the same ScaleNet, side by side in one run.

    python bench/onnx_vs_eager.py [--widths 18 32] [--size 256] [--batches 1 4] [--repeats 10]

Models: the HRNet point of the W18 / W32 spaces and one searched arch (the released ScaleNet-S1
arch, laid on the same space), with the segmentation head (19 classes). Backends: eager fp32 NCHW,
eager fp32 channels_last, eager bf16 autocast (channels_last), ONNX Runtime fp32 (CPU provider, the
graph ``scalenas export`` writes: legacy exporter, opset 17, dynamic shapes). Threads: torch's and
ONNX Runtime's intra-op pools both set to --threads (default: all cores).

bf16 autocast is fast only where oneDNN supports bf16 (AVX512-BF16 / AMX); the header says so. On an
AVX2-only CPU bf16 convolutions fall back to torch's slow reference kernel and run ~5x slower than fp32.

Weights are random, but BN statistics are estimated on one random batch so activations have the
scale of a trained net (no overflow in bf16, no denormals). Timings per (model, batch) are
interleaved across backends (``_common.interleaved_medians``), so ratios stay meaningful on a shared,
noisy machine; absolute figures move with the load.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import eager_backends, interleaved_medians, machine, print_table  # noqa: E402

from scalenas.deploy.export import export_onnx  # noqa: E402
from scalenas.deploy.runtime import OnnxModule  # noqa: E402
from scalenas.nets.registry import get_preset  # noqa: E402
from scalenas.nets.scalenet import ScaleNet  # noqa: E402
from scalenas.search.calibrate import bn_stats_from_batch  # noqa: E402
from scalenas.space.profile import profile  # noqa: E402
from scalenas.space.space import SearchSpace  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402


def _backends(net: torch.nn.Module, onnx: OnnxModule, x: torch.Tensor) -> dict:
    """One callable per backend; the channels_last variants run a converted copy of the same weights."""
    xn = x.numpy()
    return {**eager_backends(net, x, bf16=True), "onnxruntime fp32": lambda: onnx.run_numpy(xn)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[18, 32])
    ap.add_argument("--size", type=int, default=256, help="square input side (multiple of 32)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    setup_process(args.threads)
    bf16 = ("supported" if torch.ops.mkldnn._is_mkldnn_bf16_supported()
            else "NOT supported (bf16 convs fall back to slow kernels)")
    print(f"machine: {machine()}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}, oneDNN bf16 {bf16}")
    searched = get_preset("scalenet-s1").arch
    rows = []
    tmp = tempfile.mkdtemp(prefix="onnx_vs_eager_")
    for width in args.widths:
        space = SearchSpace(width=width)
        for label, arch in (("hrnet", space.hrnet()), ("scalenet-s1 arch", searched)):
            name = f"W{width} {label}"
            torch.manual_seed(0)
            net = ScaleNet(space, arch, "seg").eval()
            bn_stats_from_batch(net, torch.randn(4, 3, args.size, args.size))
            prof = profile(space, arch, "seg", (args.size, args.size))
            path = os.path.join(tmp, f"w{width}_{arch.hash}.onnx")
            info = export_onnx(net, path, torch.randn(2, 3, args.size + 32, args.size + 64), ["logits"])
            onnx = OnnxModule(path, threads=torch.get_num_threads())
            print(f"{name}: {prof.params / 1e6:.2f}M params, {prof.gflops_2p30:.2f} GFLOPs (MACs/2^30) at "
                  f"{args.size}x{args.size}; exported ({info['exporter']}) in {info['export_s']:.1f} s", flush=True)
            for b in args.batches:
                x = torch.randn(b, 3, args.size, args.size)
                with torch.no_grad():  # sanity: the ONNX graph computes the same function
                    ref = net(x)
                    diff = float((onnx(x) - ref).abs().max()) / float(ref.abs().max())
                fns = _backends(net, onnx, x)
                med = interleaved_medians(fns, args.repeats, args.warmup)
                base = med["eager fp32 NCHW"]
                for k, s in med.items():
                    rows.append([name, b, k, s * 1000, b / s, base / s, f"{diff:.1e}" if k.startswith("onnx") else ""])
            del net, onnx
    print_table(["model", "batch", "backend", "median ms", "img/s", "speed-up vs eager fp32 NCHW",
                 "max|ort-eager| / max|eager|"],
                rows, title=f"ONNX Runtime vs eager at {args.size}x{args.size} ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
