"""Synthetic pose data (bottom-up and top-down): articulated stick figures with the 17 COCO keypoints.

Each image holds 1-4 front-facing figures (so a figure's left side is on the screen's right when it
stands upright, which keeps left/right learnable) with a filled torso, thick limbs of per-person
colours and a head disc with eyes and nose, in varied poses and orientations, over a textured
background with distractor shapes.

Person heights are log-uniform (a camera at a random distance per image), so scale matters: at
256x256 the 5th-95th percentile of person box heights spans about 1:10 (17 to 186 px over 60 images),
with about a quarter of the people small (under 32 px: at 256x256 input even a perfect bottom-up
network localises those only to a couple of pixels; a top-down crop enlarges them). Every split of two
or more images spans more than 1:10 (image 0 holds one figure near the largest height, image 1 one
near the smallest). Figures drawn later occlude earlier ones, as do occasional
foreground bars; the labels are honest: an occluded joint has v=1, a joint outside the image v=0
(x = y = 0). Some images get a crowd region (iscrowd=1, RLE of a cluster of tiny unlabelled figures)
or an unlabelled tiny person (num_keypoints=0, polygon), which training must ignore.

Output: ``images/<split>/<split>_NNNNN.jpg`` and ``annotations/<split>.json`` in COCO keypoint format.
Image ids are not derived from file names (a test that parses names would fail). The output is a pure
function of the arguments: image and JSON bytes are identical for the same seed.
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from scalenas.data.keypoint_info import coco
from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_text, dumps_json, make_output_dir

SPLITS = ("train", "val", "test")
SHIFT = 4                      # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
_ONE = 1 << SHIFT
# Person heights relative to the image's short side (ratio 14.6): log-uniform over this range gives a
# 5th-95th percentile box-height span of 9.3-12.8 over 60 images at 256x256 (seeds 0-6; a minimum of
# 0.08 with up to 6 people per image gave 7.4-8.6, seeds 0-3).
MIN_FRAC, MAX_FRAC = 0.065, 0.95

# COCO joint ids
NOSE, LEYE, REYE, LEAR, REAR, LSHO, RSHO, LELB, RELB, LWRI, RWRI, LHIP, RHIP, LKNE, RKNE, LANK, RANK = range(17)


def _rot(v, deg):
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _pose(rng: np.random.Generator, standing: bool = False) -> np.ndarray:
    """(17, 2) joints of a unit-height upright figure, pelvis at the origin, y down, facing the viewer
    (COCO 'left' joints at +x). Angles are in screen degrees, positive = clockwise (y down).
    ``standing`` keeps legs nearly straight and arms low, so the figure's box height is its stature."""
    j = np.zeros((17, 2))
    down = np.array([0.0, 1.0])
    up = -down
    lean = rng.uniform(-15, 15)
    axis_up = _rot(up, lean)
    side = _rot(np.array([1.0, 0.0]), lean)            # towards the figure's left (screen right)
    mid_sho = axis_up * 0.30
    j[LHIP], j[RHIP] = side * 0.085, -side * 0.085
    j[LSHO], j[RSHO] = mid_sho + side * 0.12, mid_sho - side * 0.12
    tilt = lean + rng.uniform(-15, 15)
    head_up = _rot(up, tilt)
    head_side = _rot(np.array([1.0, 0.0]), tilt)
    head = mid_sho + axis_up * 0.055 + head_up * 0.075
    yaw = rng.uniform(-0.5, 0.5)                        # head turn: face features slide sideways
    j[NOSE] = head + head_side * (0.03 * yaw) - head_up * 0.01
    j[LEYE] = head + head_side * (0.022 + 0.025 * yaw) + head_up * 0.012
    j[REYE] = head + head_side * (-0.022 + 0.025 * yaw) + head_up * 0.012
    j[LEAR] = head + head_side * (0.055 - 0.01 * yaw)
    j[REAR] = head + head_side * (-0.055 - 0.01 * yaw)
    for sho, elb, wri, sgn in ((LSHO, LELB, LWRI, 1), (RSHO, RELB, RWRI, -1)):
        out = rng.uniform(5, 60 if standing else 175)   # 0 = hanging down, 90 = horizontal, 175 = raised
        d = _rot(_rot(down, lean), -sgn * out)
        j[elb] = j[sho] + d * 0.17
        j[wri] = j[elb] + _rot(d, rng.choice([-1, 1]) * rng.uniform(0, 140)) * 0.15
    for hip, kne, ank, sgn in ((LHIP, LKNE, LANK, 1), (RHIP, RKNE, RANK, -1)):
        out = rng.uniform(-5, 10) if standing else rng.uniform(-10, 45)
        d = _rot(down, -sgn * out)
        j[kne] = j[hip] + d * 0.24
        j[ank] = j[kne] + _rot(d, rng.choice([-1, 1]) * rng.uniform(0, 15 if standing else 100)) * 0.23
    return j


def _place(base: np.ndarray, height: float, angle: float, center) -> np.ndarray:
    """Scale a unit figure to ``height`` px, rotate by ``angle`` about its bbox centre, move to ``center``."""
    lo, hi = base.min(0), base.max(0)
    mid = (lo + hi) / 2.0
    p = (base - mid) * height
    a = math.radians(angle)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return p @ r.T + np.asarray(center, np.float64)


def _fx(p) -> tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


class _Figure:
    """One person's geometry (image pixels) and drawing."""

    def __init__(self, joints: np.ndarray, height: float, palette):
        self.j = joints
        self.h = height
        self.pal = palette
        self.head_c = (joints[LEAR] + joints[REAR]) / 2.0      # the ears sit level with the head centre
        self.head_r = max(0.068 * height, 1.0)

    def draw(self, canvas: np.ndarray, mask_only: bool = False, aa: bool = True) -> None:
        j, h = self.j, self.h
        line = cv2.LINE_AA if (aa and not mask_only) else cv2.LINE_8
        col = (lambda c: 255) if mask_only else (lambda c: tuple(int(v) for v in c))
        shirt, pants, skin, dark = self.pal
        arm_t = max(1, int(round(0.065 * h)))
        leg_t = max(1, int(round(0.085 * h)))
        torso = np.array([_fx(j[LSHO]), _fx(j[RSHO]), _fx(j[RHIP]), _fx(j[LHIP])], np.int32)
        cv2.fillConvexPoly(canvas, torso, col(shirt), line, SHIFT)
        for a, b, t, c in ((LHIP, LKNE, leg_t, pants), (LKNE, LANK, leg_t, pants),
                           (RHIP, RKNE, leg_t, pants), (RKNE, RANK, leg_t, pants),
                           (LSHO, RSHO, arm_t, shirt), (LHIP, RHIP, leg_t, pants),
                           (LSHO, LELB, arm_t, shirt), (LELB, LWRI, arm_t, skin),
                           (RSHO, RELB, arm_t, shirt), (RELB, RWRI, arm_t, skin)):
            cv2.line(canvas, _fx(j[a]), _fx(j[b]), col(c), t, line, SHIFT)
        neck_base = (j[LSHO] + j[RSHO]) / 2.0
        cv2.line(canvas, _fx(neck_base), _fx(self.head_c), col(skin), max(1, int(round(0.05 * h))), line, SHIFT)
        cv2.circle(canvas, _fx(self.head_c), int(round(self.head_r * _ONE)), col(skin), -1, line, SHIFT)
        if not mask_only and self.head_r >= 3:
            # face details: they tell the viewer (and the network) which way the figure faces
            er = max(1, int(round(0.012 * h * _ONE)))
            for e in (LEYE, REYE):
                cv2.circle(canvas, _fx(j[e]), er, col(dark), -1, line, SHIFT)
            cv2.circle(canvas, _fx(j[NOSE]), er, col((40, 40, 200)), -1, line, SHIFT)
            cv2.circle(canvas, _fx(self.head_c), int(round(self.head_r * _ONE)), col(dark),
                       max(1, int(round(0.008 * h))), line, SHIFT)


def _palette(rng):
    skin = np.array([[60, 90, 150], [90, 140, 200], [130, 180, 230], [40, 60, 100]])[rng.integers(4)]
    skin = np.clip(skin + rng.integers(-15, 16, 3), 0, 255)
    shirt = rng.integers(0, 256, 3)
    pants = rng.integers(0, 256, 3)
    dark = rng.integers(0, 50, 3)
    return shirt, pants, skin, dark


def _background(rng, h: int, w: int) -> np.ndarray:
    """Smooth colour field + a pattern + distractor shapes (some limb-like bars)."""
    g = int(rng.integers(3, 9))
    tint = rng.integers(40, 216, 3)  # one scene colour with local variation, not a rainbow
    low = np.clip(tint + rng.integers(-70, 71, (g, g, 3)), 0, 255).astype(np.uint8)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:  # stripes at a random angle
        a = rng.uniform(0, math.pi)
        period = rng.uniform(6, 40)
        s = np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
        img += (s[..., None] * rng.uniform(10, 40) * rng.uniform(-1, 1, 3)).astype(np.float32)
    elif kind == 1:  # checkerboard
        cell = int(rng.integers(8, 40))
        chk = (((xx // cell) + (yy // cell)) % 2)[..., None]
        img += (chk - 0.5) * rng.uniform(10, 50) * rng.uniform(-1, 1, 3)
    img += rng.normal(0, rng.uniform(2, 8), (h, w, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 9))):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        t = int(rng.integers(3))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if t == 0:
            axes = (int(rng.integers(4, w // 4)), int(rng.integers(4, h // 4)))
            cv2.ellipse(img, p, axes, float(rng.uniform(0, 180)), 0, 360, c, -1, cv2.LINE_AA)
        elif t == 1:
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.rectangle(img, p, q, c, -1)
        else:
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p, q, c, int(rng.integers(2, 10)), cv2.LINE_AA)
    return img


def _mask_of(fig: _Figure, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    fig.draw(m, mask_only=True)
    return m > 0


def _polygons(mask: np.ndarray) -> list[list[float]]:
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in cs:
        if len(c) >= 3:
            out.append([float(v) for v in c.reshape(-1)])
    return out


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _image(rng: np.random.Generator, h: int, w: int, index: int, heights_frac: tuple[float, float]):
    """Render one image; returns (bgr, person records, ignore records). The stages draw from ``rng``
    in this order, so an image is a pure function of (seed, split, index)."""
    s = min(h, w)
    img = _background(rng, h, w)
    ignore = []
    if index > 1 and rng.random() < 0.2:
        ignore.append(_crowd(rng, img, s))
    heights, pinned = _heights(rng, index, s, heights_frac)
    figs, masks = _place_figures(rng, heights, pinned, h, w)
    if index > 1 and rng.random() < 0.15:
        ignore += _unlabelled_person(rng, img, masks, s)
    for f in figs:
        f.draw(img)
    front = _foreground_bar(rng, img, s)
    return img, _people(figs, masks, front), ignore


def _crowd(rng: np.random.Generator, img: np.ndarray, s: int) -> dict:
    """A crowd region: a cluster of tiny unlabelled figures, annotated once as iscrowd=1 (RLE)."""
    h, w = img.shape[:2]
    cm = np.zeros((h, w), np.uint8)
    cw, ch = int(s * rng.uniform(0.2, 0.35)), int(s * rng.uniform(0.12, 0.22))
    x0, y0 = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
    for _ in range(int(rng.integers(6, 14))):
        th = rng.uniform(0.03, 0.06) * s
        ctr = (x0 + rng.uniform(0, cw), y0 + rng.uniform(0, ch))
        f = _Figure(_place(_pose(rng), th, rng.normal(0, 10), ctr), th, _palette(rng))
        f.draw(img)
        f.draw(cm, mask_only=True)
    cm = cv2.dilate(cm, np.ones((5, 5), np.uint8)) > 0
    return {"iscrowd": 1, "mask": cm}


def _heights(rng: np.random.Generator, index: int, s: int,
             heights_frac: tuple[float, float]) -> tuple[list[float], int | None]:
    """The main figures' heights, and which one is pinned (placed whole, or None).

    Each image draws a base height log-uniformly in ``heights_frac`` x the short side (a camera at a
    random distance), and 1-4 people around it (1-2 when they are tall, so they fit). Up to 6 small
    ones, as before, would tilt the people towards small (22-36% under 32 px, against 18-34%) and
    narrow the percentile span (8.1-9.8 against 8.4-10.0; both at MIN_FRAC 0.07, 60 images, seeds 0-4).
    Image 0 pins the top of the range (one tall standing figure), image 1 the bottom (one tiny standing
    figure among ordinary ones), so every split of two or more images spans >= 1:10."""
    hmin, hmax = heights_frac[0] * s, heights_frac[1] * s
    if index == 0:
        return [hmax * rng.uniform(0.97, 1.0)], 0
    base = math.exp(rng.uniform(math.log(hmin), math.log(hmax)))
    n = int(rng.integers(1, 3 if base > 0.6 * s else 5))
    heights = [float(np.clip(base * math.exp(rng.normal(0, 0.2)), hmin, hmax)) for _ in range(n)]
    if index == 1:
        heights = heights[:3] + [hmin * rng.uniform(1.0, 1.03)]  # drawn last: nothing occludes it
        return heights, len(heights) - 1
    return heights, None


def _place_figures(rng: np.random.Generator, heights: list[float], pinned: int | None, h: int, w: int):
    """(figures, their masks): each figure tries a few random placements and keeps the first that
    leaves the earlier figures mostly visible (a figure with no such placement is dropped)."""
    figs, masks = [], []
    for p, ht in enumerate(heights):
        fixed = p == pinned
        upright = fixed or rng.random() < 0.8
        angle = float(np.clip(rng.normal(0, 8), -3, 3)) if fixed else \
            rng.normal(0, 8) if upright else rng.uniform(-180, 180)
        for _ in range(40 if fixed else 12):
            margin = 0.5 * ht if fixed else 0.25 * ht
            lo_x, hi_x = min(margin, w / 2), max(w - margin, w / 2)
            lo_y, hi_y = min(margin, h / 2), max(h - margin, h / 2)
            ctr = (rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
            j = _place(_pose(rng, standing=fixed), ht, angle, ctr)
            f = _Figure(j, ht, _palette(rng))
            m = _mask_of(f, h, w)
            # keep earlier figures mostly visible so every label stays meaningful
            worst = max([(m & mk).sum() / max(mk.sum(), 1) for mk in masks] + [0.0])
            if fixed and any((m & mk).any() for mk in masks):
                continue  # the pinned tiny figure stays whole
            if m.sum() > 0 and worst < 0.4:
                figs.append(f)
                masks.append(m)
                break
    return figs, masks


def _unlabelled_person(rng: np.random.Generator, img: np.ndarray, masks: list[np.ndarray], s: int) -> list[dict]:
    """An unlabelled tiny person (COCO has many: iscrowd=0, num_keypoints=0), drawn only where it
    hides no labelled figure."""
    h, w = img.shape[:2]
    th = rng.uniform(0.04, 0.07) * s
    ctr = (rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h))
    f = _Figure(_place(_pose(rng), th, rng.normal(0, 10), ctr), th, _palette(rng))
    m = _mask_of(f, h, w)
    if any((m & mk).any() for mk in masks):
        return []
    f.draw(img)
    return [{"iscrowd": 0, "mask": m}]


def _foreground_bar(rng: np.random.Generator, img: np.ndarray, s: int) -> np.ndarray:
    """Sometimes a foreground bar (pole, sign) occluding whatever is behind it; returns its mask."""
    h, w = img.shape[:2]
    front = np.zeros((h, w), bool)
    if rng.random() < 0.2:
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        bw = int(max(3, s * rng.uniform(0.03, 0.08)))
        x = int(rng.integers(0, w - bw))
        cv2.rectangle(img, (x, 0), (x + bw - 1, h - 1), c, -1)
        front[:, x:x + bw] = True
    return front


def _people(figs: list, masks: list[np.ndarray], front: np.ndarray) -> list[dict]:
    """The person records: visible mask and keypoints (v=1 occluded, 2 visible, 0 outside the image)
    of every figure with at least one keypoint inside the image and some pixels in view."""
    h, w = front.shape
    people = []
    for i, (f, m) in enumerate(zip(figs, masks)):
        cover = front.copy()
        for mk in masks[i + 1:]:
            cover |= mk
        vis_mask = m & ~cover
        if vis_mask.sum() == 0:
            continue
        kps = np.zeros((17, 3))
        for k, (x, y) in enumerate(f.j):
            xi, yi = int(round(x)), int(round(y))
            if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                continue  # outside the image: v = 0, x = y = 0 (COCO)
            kps[k] = (x, y, 1 if cover[min(yi, h - 1), min(xi, w - 1)] else 2)
        if (kps[:, 2] > 0).sum() == 0:
            continue
        people.append({"keypoints": kps, "mask": vis_mask, "height": f.h})
    return people


def _annotation(aid: int, iid: int, mask: np.ndarray, kps: np.ndarray | None, crowd: bool) -> dict:
    h, w = mask.shape
    if crowd:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        seg = {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")}
    else:
        seg = _polygons(mask)
    k = np.zeros((17, 3)) if kps is None else kps
    flat = []
    for x, y, v in k:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {"id": aid, "image_id": iid, "category_id": 1, "iscrowd": int(crowd), "segmentation": seg,
            "area": float(mask.sum()), "bbox": _bbox(mask), "num_keypoints": int((k[:, 2] > 0).sum()),
            "keypoints": flat}


def generate(out: str, train: int = 200, val: int = 50, test: int = 50, size=(256, 256), seed: int = 0,
             heights=(MIN_FRAC, MAX_FRAC)) -> str:
    """Write the dataset under ``out``; returns a one-line summary. ``heights``: the (min, max) person
    height as fractions of the image's short side (a narrower range, e.g. (0.3, 0.95), gives data
    where bottom-up at low input resolution is not limited by tiny people)."""
    h, w = int(size[0]), int(size[1])
    if h < 64 or w < 64:
        raise ScaleNASError(f"synth-pose: image size {h}x{w} is too small (need at least 64x64)")
    lo, hi = (float(v) for v in heights)
    if not 0 < lo < hi <= 1:
        raise ScaleNASError(f"synth-pose: heights must be fractions of the short side with 0 < min < max <= 1, "
                            f"got {tuple(heights)}")
    counts = {"train": train, "val": val, "test": test}
    for name, n in counts.items():
        if n < 0:
            raise ScaleNASError(f"synth-pose: --{name} must be >= 0, got {n}")
    make_output_dir(out, "dataset folder")
    info = coco()
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(info.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in info.skeleton]}
    tot_people = tot_crowd = 0
    heights = []
    for si, split in enumerate(SPLITS):
        n = counts[split]
        if n == 0:
            continue
        img_dir = os.path.join(out, "images", split)
        os.makedirs(img_dir, exist_ok=True)
        images, anns = [], []
        aid = (si + 1) * 1_000_000
        for i in range(n):
            rng = np.random.default_rng([seed, si, i])
            img, people, ignore = _image(rng, h, w, i, (lo, hi))
            iid = (si + 1) * 100_000 + 7 * i + 3   # deliberately unrelated to the file name
            fname = f"{split}_{i:05d}.jpg"
            # JPEG: the camera-like noise in the textures makes PNGs ~5x larger and slower to write
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            with open(os.path.join(img_dir, fname), "wb") as f:
                f.write(buf.tobytes())
            images.append({"id": iid, "file_name": fname, "height": h, "width": w})
            for p in people:
                aid += 1
                anns.append(_annotation(aid, iid, p["mask"], p["keypoints"], False))
                heights.append(p["height"])
            for g in ignore:
                aid += 1
                anns.append(_annotation(aid, iid, g["mask"], None, bool(g["iscrowd"])))
                tot_crowd += g["iscrowd"]
            tot_people += len(people)
        doc = {"info": {"description": "scalenas synthetic bottom-up pose", "seed": seed, "split": split},
               "images": images, "annotations": anns, "categories": [category]}
        os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
        atomic_write_text(os.path.join(out, "annotations", f"{split}.json"),
                          dumps_json(doc, indent=None, separators=(",", ":")))
    span = f"{min(heights):.0f}-{max(heights):.0f} px" if heights else "none"
    return (f"synth-pose: wrote {train}/{val}/{test} train/val/test images of {h}x{w} to {out} "
            f"({tot_people} people, heights {span}, {tot_crowd} crowd regions)")
