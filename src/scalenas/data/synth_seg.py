"""Synthetic multi-scale segmentation data: the project's embedded default dataset.

Six object classes (disc, square, triangle, ring, bar, cross) plus background. Each class has its own
texture family and a preferred hue, but hues are drawn wide enough to overlap the neighbouring
classes and the background clutter reuses the object textures on irregular blobs, so colour or
texture alone does not decide the class: shape, and with it context at the right scale, does.
Object diameters are log-uniform from 4 px to 0.9 x the short image side (1:57 at 256x256),
objects occlude each other, some images carry an ignore band (like Cityscapes' ego vehicle).

Output (the generic folder format of ``seg_folder``)::

    <out>/dataset_info.json
    <out>/images/<split>/00000.jpg       BGR image (JPEG quality 95)
    <out>/masks/<split>/00000.png        class ids, 255 = ignore
    <out>/instances/<split>/00000.png    instance ids (uint8, 0 = none), for size-bucket metrics
    <out>/instances_<split>.json         per object: id, class, diameter, visible area, full area, bbox

Every image is a pure function of (seed, split, index), so the files are byte-identical across runs.
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import shutil

import cv2
import numpy as np

from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_json, make_output_dir

NAME = "synth-seg"
CLASSES = ("background", "disc", "square", "triangle", "ring", "bar", "cross")
PALETTE = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180))
IGNORE = 255
_SPLITS = ("train", "val", "test")
# preferred hue (degrees) and texture family of each object class
_HUE = {1: 0, 2: 60, 3: 120, 4: 180, 5: 240, 6: 300}
_TEXTURE = {1: "speckle", 2: "stripes", 3: "checker", 4: "gradient", 5: "stripes", 6: "dots"}
_HUE_STD = 30.0  # half the 60 degree spacing: a third of a class's colours lie nearer a neighbour's hue
_MIN_DIAMETER = 4.0
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]
_JPG = [cv2.IMWRITE_JPEG_QUALITY, 95]  # images as JPEG: 15x faster to write than PNG, labels stay PNG


# ------------------------------------------------------------------------------------------- textures
def _colour(rng: np.random.Generator, hue_deg: float | None, sat=(0.45, 1.0)) -> np.ndarray:
    """BGR float colour: hue around ``hue_deg`` (any hue when None), saturation in ``sat``."""
    h = (rng.uniform(0, 360) if hue_deg is None else rng.normal(hue_deg, _HUE_STD)) % 360
    r, g, b = colorsys.hsv_to_rgb(h / 360, rng.uniform(*sat), rng.uniform(0.35, 1.0))
    return np.array([b, g, r], np.float32) * 255


def _pattern(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """(h, w) float32 blend weights in [0, 1] of a texture family."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    th = rng.uniform(0, math.pi)
    u = xx * math.cos(th) + yy * math.sin(th)
    if kind == "speckle":
        p = (rng.random((h, w), dtype=np.float32) > 0.5).astype(np.float32)
    elif kind == "stripes":
        p = 0.5 + 0.5 * np.sin(u * (2 * math.pi / rng.uniform(3, 8)) + rng.uniform(0, 6.3))
    elif kind == "checker":
        per = rng.uniform(3, 8)
        v = -xx * math.sin(th) + yy * math.cos(th)
        p = ((np.floor(u / per) + np.floor(v / per)) % 2).astype(np.float32)
    elif kind == "gradient":
        p = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
    else:  # dots
        per = rng.uniform(4, 9)
        p = ((np.sin(xx * (2 * math.pi / per)) * np.sin(yy * (2 * math.pi / per))) > 0.4).astype(np.float32)
    return np.broadcast_to(p, (h, w))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency gratings over a random base colour (drawn at 1/4 size and upsampled: they are smooth)."""
    sh, sw = (h + 3) // 4, (w + 3) // 4
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32) * 4
    img = np.empty((sh, sw, 3), np.float32)
    img[:] = _colour(rng, None, (0.05, 0.6)) * 0.8  # backgrounds are mostly duller than objects
    for _ in range(3):
        th = rng.uniform(0, math.pi)
        g = np.sin((xx * math.cos(th) + yy * math.sin(th)) * (2 * math.pi / rng.uniform(16, 128)) + rng.uniform(0, 6.3))
        img += g[..., None] * (rng.uniform(-1, 1, 3).astype(np.float32) * 35)
    return cv2.resize(img, (sw * 4, sh * 4), interpolation=cv2.INTER_LINEAR)[:h, :w].copy()


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray:
    """Irregular star-like polygon: clutter that is none of the object shapes."""
    n = int(rng.integers(5, 10))
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = r * rng.uniform(0.3, 1.0, n)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)


# ---------------------------------------------------------------------------------------------- shapes
def _poly(mask: np.ndarray, pts: np.ndarray, value: int = 1) -> None:
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], value, lineType=cv2.LINE_8, shift=4)


def _rotated_rect(cx, cy, length, width, th) -> np.ndarray:
    c, s = math.cos(th), math.sin(th)
    dx = np.array([-1, 1, 1, -1]) * length / 2
    dy = np.array([-1, -1, 1, 1]) * width / 2
    return np.stack([cx + dx * c - dy * s, cy + dx * s + dy * c], 1)


def _draw_shape(mask: np.ndarray, cls: int, cx: float, cy: float, d: float, rng: np.random.Generator) -> None:
    """Rasterise object class ``cls`` of diameter ``d`` into ``mask`` (uint8, 1 = inside)."""
    th = rng.uniform(0, math.pi)
    if cls == 1:  # disc (slightly elliptic)
        ax = (int(round(d / 2 * 16)), int(round(d / 2 * rng.uniform(0.75, 1.0) * 16)))
        cv2.ellipse(mask, (int(round(cx * 16)), int(round(cy * 16))), ax, math.degrees(th), 0, 360, 1, -1,
                    cv2.LINE_8, 4)
    elif cls == 2:  # square
        _poly(mask, _rotated_rect(cx, cy, d / math.sqrt(2), d / math.sqrt(2), th))
    elif cls == 3:  # triangle with jittered corners
        ang = th + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        _poly(mask, np.stack([cx + d / 2 * np.cos(ang), cy + d / 2 * np.sin(ang)], 1))
    elif cls == 4:  # ring: the hole shows whatever lies behind
        c = (int(round(cx * 16)), int(round(cy * 16)))
        cv2.circle(mask, c, int(round(d / 2 * 16)), 1, -1, cv2.LINE_8, 4)
        cv2.circle(mask, c, int(round(d / 2 * rng.uniform(0.45, 0.65) * 16)), 0, -1, cv2.LINE_8, 4)
    elif cls == 5:  # bar: long thin rectangle
        _poly(mask, _rotated_rect(cx, cy, d, max(2.0, d * rng.uniform(0.12, 0.25)), th))
    else:  # cross: two bars
        arm = max(2.0, d * rng.uniform(0.2, 0.3))
        _poly(mask, _rotated_rect(cx, cy, d, arm, th))
        _poly(mask, _rotated_rect(cx, cy, d, arm, th + math.pi / 2))


# ----------------------------------------------------------------------------------------------- images
def make_sample(seed: int, split_id: int, index: int, size: tuple[int, int], n_obj_classes: int = 6):
    """One image: (image BGR uint8, label uint8, instances uint8, objects list). Pure function of its args."""
    h, w = size
    rng = np.random.default_rng([seed, split_id, index])
    img = _background(rng, h, w)
    # clutter labelled background: strokes, and blobs wearing object textures
    for _ in range(int(rng.integers(3, 10))):
        p = rng.uniform(0, 1, 4) * [w, h, w, h]
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), _colour(rng, None).tolist(),
                 int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(0, 3))):
        r = math.exp(rng.uniform(math.log(3), math.log(0.25 * min(h, w))))
        m = np.zeros((h, w), np.uint8)
        _poly(m, _blob(rng, rng.uniform(0, w), rng.uniform(0, h), r))
        x, y, bw, bh = cv2.boundingRect(m)
        if bw:
            _paint(img, m[y:y + bh, x:x + bw] > 0, (x, y, bw, bh), rng, int(rng.integers(1, 7)))
    label = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.uint8)
    n = int(rng.integers(4, 13))
    d_max = 0.9 * min(h, w)
    diam = np.exp(rng.uniform(math.log(_MIN_DIAMETER), math.log(max(d_max, _MIN_DIAMETER + 1)), n))
    classes = rng.integers(1, n_obj_classes + 1, n)
    classes[0] = 1 + (index + split_id) % n_obj_classes  # every class appears in any 6 consecutive images
    # mostly large-behind-small (so small objects survive), but some objects jump the queue to occlude
    order = list(np.argsort(-diam, kind="stable"))
    for k in range(n):
        if rng.random() < 0.25:
            j = order.pop(k)
            order.insert(int(rng.integers(0, n)), j)
    objects = []
    for j in order:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        # rasterise in a window around the object only: most objects are small
        r = 0.55 * diam[j] + 2
        wx0, wy0 = max(0, int(cx - r)), max(0, int(cy - r))
        wx1, wy1 = min(w, int(cx + r) + 1), min(h, int(cy + r) + 1)
        m = np.zeros((wy1 - wy0, wx1 - wx0), np.uint8)
        _draw_shape(m, int(classes[j]), cx - wx0, cy - wy0, float(diam[j]), rng)
        x, y, bw, bh = cv2.boundingRect(m)
        if bw == 0:
            continue
        x, y = x + wx0, y + wy0
        sub = m[y - wy0:y - wy0 + bh, x - wx0:x - wx0 + bw] > 0
        oid = len(objects) + 1
        _paint(img, sub, (x, y, bw, bh), rng, int(classes[j]))
        label[y:y + bh, x:x + bw][sub] = classes[j]
        inst[y:y + bh, x:x + bw][sub] = oid
        objects.append({"id": oid, "class": int(classes[j]), "class_name": CLASSES[classes[j]],
                        "diameter": round(float(diam[j]), 2), "full_area": int(np.count_nonzero(sub)),
                        "_box": (x, y, bw, bh)})
    if rng.random() < 0.15:  # an ignore band along the bottom, painted last
        band = int(h * rng.uniform(0.05, 0.12))
        img[h - band:] = rng.uniform(10, 50)
        label[h - band:] = IGNORE
        inst[h - band:] = 0
    img += (rng.random((h, w, 1), dtype=np.float32) - 0.5) * 14  # luminance noise, std ~4
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    image = np.clip(img, 0, 255).astype(np.uint8)
    # visible area and box after occlusion; fully hidden objects are dropped from the record
    area = np.bincount(inst.ravel(), minlength=len(objects) + 1)
    kept = []
    for o in objects:
        a = int(area[o["id"]])
        if a == 0:
            continue
        x, y, bw, bh = o.pop("_box")  # the visible part lies inside the unoccluded box
        vx, vy, vw, vh = cv2.boundingRect((inst[y:y + bh, x:x + bw] == o["id"]).view(np.uint8))
        o["area"] = a
        o["bbox"] = [x + vx, y + vy, vw, vh]
        kept.append(o)
    return image, label, inst, kept


def _paint(img: np.ndarray, sub: np.ndarray, box, rng: np.random.Generator, cls: int) -> None:
    """Fill the boolean mask ``sub`` of box (x, y, w, h) on ``img`` with a texture of class ``cls``."""
    x, y, bw, bh = box
    c1 = _colour(rng, _HUE[cls])
    c2 = np.clip(c1 * rng.uniform(0.4, 0.8) + rng.uniform(-30, 30, 3), 0, 255).astype(np.float32)
    p = _pattern(rng, _TEXTURE[cls], bh, bw)[sub][:, None]
    img[y:y + bh, x:x + bw][sub] = c1 + (c2 - c1) * p


# ----------------------------------------------------------------------------------------------- writer
def _write(path: str, arr: np.ndarray) -> None:
    ext = os.path.splitext(path)[1]
    ok, buf = cv2.imencode(ext, arr, _JPG if ext == ".jpg" else _PNG)
    if not ok:
        raise ScaleNASError(f"{path}: image encoding failed")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def _prepare(out: str) -> None:
    """Refuse to write into a non-empty folder that is not an earlier synth-seg output; clear ours."""
    if os.path.isdir(out) and os.listdir(out):
        info = os.path.join(out, "dataset_info.json")
        try:
            with open(info, encoding="utf-8") as f:
                name = json.load(f).get("name")
        except (OSError, ValueError):
            name = None
        if name != NAME:
            raise ScaleNASError(f"{out}: folder is not empty and holds no {NAME} dataset; choose a new folder")
        for d in ("images", "masks", "instances"):
            shutil.rmtree(os.path.join(out, d), ignore_errors=True)
        for s in _SPLITS:
            p = os.path.join(out, f"instances_{s}.json")
            if os.path.exists(p):
                os.unlink(p)


def generate(out: str, train: int = 200, val: int = 50, test: int = 50, size: tuple[int, int] = (256, 256),
             seed: int = 0) -> str:
    """Write the dataset to ``out`` and return a one-line summary."""
    h, w = (int(v) for v in size)
    if h < 32 or w < 32:
        raise ScaleNASError(f"size {h}x{w}: images must be at least 32x32")
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    if any(v < 0 for v in counts.values()) or sum(counts.values()) == 0:
        raise ScaleNASError(f"image counts {counts}: need non-negative counts, at least one image")
    make_output_dir(out, "dataset folder")
    _prepare(out)
    diams, n_obj = [], 0
    for sid, split in enumerate(_SPLITS):
        if counts[split] == 0:
            continue
        dirs = [os.path.join(out, d, split) for d in ("images", "masks", "instances")]
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        records = []
        for i in range(counts[split]):
            image, label, inst, objs = make_sample(seed, sid, i, (h, w), len(CLASSES) - 1)
            stem = f"{i:05d}"
            for d, ext, arr in zip(dirs, (".jpg", ".png", ".png"), (image, label, inst)):
                _write(os.path.join(d, stem + ext), arr)
            records.append({"file": stem, "height": h, "width": w, "objects": objs})
            diams += [o["diameter"] for o in objs]
            n_obj += len(objs)
        atomic_write_json(os.path.join(out, f"instances_{split}.json"), {"images": records}, indent=None)
    info = {"name": NAME, "classes": list(CLASSES), "palette": [list(c) for c in PALETTE], "ignore_index": IGNORE,
            "img_dir": "images", "ann_dir": "masks", "inst_dir": "instances",
            "img_suffix": ".jpg", "ann_suffix": ".png", "inst_suffix": ".png",
            "meta": {"generator": "scalenas.data.synth_seg", "seed": int(seed), "size": [h, w], "counts": counts}}
    atomic_write_json(os.path.join(out, "dataset_info.json"), info)
    return (f"{NAME}: {counts['train']}/{counts['val']}/{counts['test']} train/val/test images {h}x{w}, "
            f"{len(CLASSES)} classes, {n_obj} objects, diameters {min(diams, default=0):.0f}-"
            f"{max(diams, default=0):.0f} px -> {out}")
