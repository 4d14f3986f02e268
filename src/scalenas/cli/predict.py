"""``scalenas predict``: overlays and JSON predictions for image files, from the model dir or its ONNX export.

One bad image does not abort a batch: each failure is reported in one line naming the file, the other
images are still predicted, and the exit code is 2 when any image failed.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_json


def add_parser(sub):
    p = sub.add_parser(
        "predict", help="predict images: overlay PNG + JSON per image",
        description="Run MODEL_DIR on each IMAGE with its task's predict() (segmentation: class mask; bottom-up "
                    "pose: people with keypoints, decoded and grouped in Python; top-down pose: the keypoints of "
                    "each person box of --boxes, or of the whole image as one person without it) and write "
                    "OUT/<name>_overlay.png "
                    "and OUT/<name>.json. Array-valued fields (e.g. a mask) are written beside the JSON as PNG or "
                    ".npy and referenced by file name. --onnx runs the exported graph with ONNX Runtime instead "
                    "of PyTorch. No dataset is needed. An image that cannot be read or predicted is reported in "
                    "one line and skipped; the exit code is then 2.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    p.add_argument("--onnx", metavar="FILE", help="use this ONNX export instead of the PyTorch weights")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--min-score", type=float, default=None, metavar="S",
                   help="pose models: draw only the people scoring at least S (default 0.1); the JSON keeps "
                        "every detection with its score")
    p.add_argument("--boxes", metavar="DETS.json",
                   help="top-down pose models: person boxes from a detector, COCO results format "
                        "([{image_id, bbox: [x,y,w,h], score}]); an entry matches an image by its 'file_name' if it "
                        "has one, else by image_id = the number the image file is named after "
                        "(000000397133.jpg -> 397133). Without it the whole image is one person")
    p.add_argument("--box-category", type=int, default=1, metavar="ID",
                   help="with --boxes: the person category id; entries of other categories are skipped "
                        "(default 1, COCO's person)")
    return p


def _stems(paths: list[str]) -> list[str]:
    """Output names from the image names; repeated names (same file name in two folders) get a suffix."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        s = os.path.splitext(os.path.basename(p))[0]
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.append(s if n == 0 else f"{s}_{n}")
    return out


def jsonable(obj, out_dir: str, stem: str, key: str = "value"):
    """Plain JSON data; numpy arrays of 2+ dims are written to files beside the JSON."""
    import cv2

    if isinstance(obj, dict):
        return {str(k): jsonable(v, out_dir, stem, str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, out_dir, stem, key) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.ndim >= 2:
            if obj.ndim == 2 and obj.dtype == np.uint8:
                name = f"{stem}_{key}.png"  # lossless, viewable; class ids as grey levels
                if not cv2.imwrite(os.path.join(out_dir, name), obj):
                    raise ScaleNASError(f"{os.path.join(out_dir, name)}: cannot write")
            else:
                name = f"{stem}_{key}.npy"
                np.save(os.path.join(out_dir, name), obj, allow_pickle=False)
            return {"file": name, "shape": list(obj.shape), "dtype": str(obj.dtype)}
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def run(args) -> int:
    import torch

    from scalenas.utils.runtime import resolve_device
    from scalenas.deploy.model_dir import load_model, read_meta
    from scalenas.deploy.runtime import OnnxModule, build_model_task

    device = resolve_device(args.device)
    if args.onnx:
        meta = read_meta(args.model_dir)
        forward = OnnxModule(args.onnx, device=str(device))
        dev = "cpu"
    else:
        lm = load_model(args.model_dir, device)
        meta, forward, dev = lm.meta, lm.net, device
    vis_kw = {}
    if args.min_score is not None:
        if not str(meta["head"].get("kind", "")).startswith("pose"):
            raise ScaleNASError(f"--min-score applies to pose models; {args.model_dir} has a "
                                f"{meta['head'].get('kind')} head")
        vis_kw["min_score"] = args.min_score
    task = build_model_task(meta, args.model_dir, need_data=False)
    boxes = _person_boxes(args.boxes, meta, args.model_dir, args.box_category)
    os.makedirs(args.out, exist_ok=True)
    failed = 0
    for path, stem in zip(args.images, _stems(args.images)):
        try:
            with torch.no_grad():
                overlay = _predict_one(task, forward, dev, path, stem, args, meta, vis_kw, boxes)
        except ScaleNASError as e:
            failed += 1
            print(f"scalenas predict: error: {e}", file=sys.stderr, flush=True)
            continue
        print(f"{path} -> {overlay}", flush=True)
    if failed:
        print(f"scalenas predict: {failed} of {len(args.images)} images failed", file=sys.stderr)
        return 2
    return 0


def _person_boxes(path: str | None, meta: dict, model_dir: str, category_id: int = 1):
    """The detections of ``--boxes`` (read and checked before any image is predicted), or None."""
    from scalenas.deploy.boxes import PersonBoxes

    kind = meta["head"].get("kind")
    if path is None:
        if kind == "pose-topdown":
            print("note: no --boxes: each image is taken as one person (its whole frame is the person box)",
                  flush=True)
        return None
    if kind != "pose-topdown":
        raise ScaleNASError(f"--boxes applies to top-down pose models; {model_dir} has a {kind} head")
    return PersonBoxes(path, category_id)


def _predict_one(task, forward, dev, path: str, stem: str, args, meta: dict, vis_kw: dict,
                 boxes=None) -> str:
    """Predict one image and write its overlay and JSON; returns the overlay path. A file that is not
    a readable image raises ``ScaleNASError`` naming it (decoded from bytes, so OpenCV prints nothing)."""
    from scalenas.data.seg_folder import read_image

    image = read_image(path)
    kw = {}
    if boxes is not None:
        kw["boxes"], matched = boxes.for_image(path)
        if not kw["boxes"]:
            print(f"note: {boxes.path} has no box for {path} (matched by {matched}): no people predicted",
                  flush=True)
    pred = task.predict(forward, image, device=dev, **kw)
    overlay = os.path.join(args.out, f"{stem}_overlay.png")
    task.visualise(image, pred, overlay, **vis_kw)
    doc = {"image": os.path.abspath(path), "model_dir": os.path.abspath(args.model_dir),
           "arch_hash": meta.get("arch_hash"), "backend": f"onnxruntime ({args.onnx})" if args.onnx else "torch",
           "overlay": os.path.basename(overlay), "prediction": jsonable(pred, args.out, stem)}
    atomic_write_json(os.path.join(args.out, f"{stem}.json"), doc)
    return overlay
