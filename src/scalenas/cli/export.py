"""``scalenas export``: ONNX or TorchScript from a model dir, with an automatic parity check."""
from __future__ import annotations

from scalenas.cli.extract import add_data_arg


def add_parser(sub):
    p = sub.add_parser(
        "export", help="export a model dir to ONNX or TorchScript (parity-checked)",
        description="Export MODEL_DIR's ScaleNet: input 'image' (B, 3, H, W) normalised float, dynamic batch and "
                    "size (H, W multiples of 32); outputs the head's maps (bottom-up pose: two). The export is "
                    "compared with PyTorch eager on random and real inputs at two sizes and batch sizes; the "
                    "file is written only if the max abs diff is within --tol. A <file>.json beside it records "
                    "the exporter, opset and parity figures.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("-o", "--out", metavar="FILE", help="output file (default: MODEL_DIR/model.onnx or "
                                                      "MODEL_DIR/model.torchscript.pt)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default 17 legacy, 18 dynamo)")
    p.add_argument("--exporter", choices=("auto", "legacy", "dynamo"), default="auto",
                   help="ONNX exporter: legacy (torch.onnx dynamo=False, dynamic_axes; fast), dynamo (torch.export "
                        "with dynamic_shapes; ~10x slower here); auto = legacy, falling back to dynamo")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs diff allowed in the parity check (default 1e-4)")
    add_data_arg(p)
    return p


def run(args) -> int:
    from scalenas.deploy.export import export_model_dir

    opset = args.opset
    exporter = args.exporter
    res = export_model_dir(args.model_dir, args.format, args.out, opset, exporter, args.tol, args.data)
    print(f"wrote {res['path']}")
    return 0
