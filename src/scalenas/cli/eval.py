"""``scalenas eval``: a model dir's metric with its task's evaluation (eager PyTorch or ONNX Runtime)."""
from __future__ import annotations

import os

from scalenas.cli.extract import add_data_arg
from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_json, dumps_json


def add_parser(sub):
    p = sub.add_parser(
        "eval", help="evaluate a model dir on a split",
        description="Evaluate MODEL_DIR with its task's evaluate() on --split. The model runs exactly as at "
                    "extraction (fp32, channels_last), so the number reproduces the one recorded by extract or "
                    "by the search for the same arch and calibration. --onnx evaluates the exported graph instead.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--split", default="val", choices=("search", "val", "test"))
    p.add_argument("--onnx", nargs="?", const="", metavar="FILE",
                   help="evaluate through ONNX Runtime (default file: MODEL_DIR/model.onnx)")
    p.add_argument("--max-images", type=int, metavar="N", help="first N images only")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", metavar="FILE", help="also write the metrics to FILE")
    p.add_argument("--boxes", metavar="DETS.json",
                   help="top-down pose models: person boxes from a detector (COCO results format) instead of the "
                        "ground-truth boxes; the same as --data inference.boxes=DETS.json (the search split always "
                        "uses ground-truth boxes)")
    add_data_arg(p)
    return p


def _scalar(v) -> float | None:
    """A metric value as a float; None for arrays, lists and text (per-class tables and the like)."""
    import numpy as np

    try:
        return float(v) if np.ndim(v) == 0 else None
    except (TypeError, ValueError):
        return None


def run(args) -> int:
    from scalenas.deploy.extract import evaluate_net
    from scalenas.utils.runtime import resolve_device
    from scalenas.deploy.model_dir import load_model
    from scalenas.deploy.runtime import OnnxModule, build_model_task

    device = resolve_device(args.device)
    lm = load_model(args.model_dir, device)
    data = list(args.data)
    if args.boxes is not None:
        if lm.head.kind != "pose-topdown":
            raise ScaleNASError(f"--boxes applies to top-down pose models; {args.model_dir} has a {lm.head.kind} head")
        data.append(f"inference.boxes={os.path.abspath(args.boxes)}")
    task = build_model_task(lm.meta, args.model_dir, need_data=True, overrides=data)
    max_images = args.max_images
    rec = lm.meta.get("search") or {}
    if max_images is None and rec.get("max_images") and args.split == rec.get("split"):
        max_images = rec["max_images"]  # as the search scored it, so the numbers compare
        print(f"note: evaluating the first {max_images} images of split {args.split}, as the search did "
              f"(--max-images to change)")
    if args.onnx is not None:
        path = args.onnx or os.path.join(args.model_dir, "model.onnx")
        metrics = task.evaluate(OnnxModule(path, device=str(device)), args.split, device="cpu",
                                max_images=max_images)
        backend = f"onnxruntime ({path})"
    else:
        metrics = evaluate_net(lm.net, task, args.split, device, max_images)
        backend = "torch eager fp32 channels_last"
    metrics = {k: x for k, x in ((k, _scalar(v)) for k, v in metrics.items()) if x is not None}
    name = task.metric_name
    boxes = f"; person boxes {args.boxes}" if args.boxes else ""
    print(f"{name} = {metrics[name]!r} on split {args.split} ({backend}; arch {lm.arch.hash}{boxes})")
    print(dumps_json(metrics, indent=1))
    if args.json:
        atomic_write_json(args.json, {"metric": name, "value": metrics[name], "split": args.split,
                                      "max_images": max_images, "backend": backend,
                                      **({"boxes": os.path.abspath(args.boxes)} if args.boxes else {}),
                                      "model_dir": os.path.abspath(args.model_dir), "arch_hash": lm.arch.hash,
                                      "metrics": metrics})
    return 0
