"""Top-down pose data (HRNet's ``JointsDataset``/``COCODataset``; method §5.4): one sample per person.

A person is a :class:`PersonInstance`: a box (from the ground truth or a detector) turned into a crop
``center``/``scale`` (200-px units, grown to the network's aspect ratio and padded by 1.25, HRNet's
``_box2cs``). A sample is that crop warped to the input (W, H), with a Gaussian heatmap per joint at
1/4 of the input and a per-joint target weight (0 for unlabelled joints and for joints whose Gaussian
falls entirely off the heatmap).

Training augmentation, drawn per sample from torch's RNG (so DataLoader workers differ and a seeded
run repeats): half-body crop (p = ``half_body_prob``, needs more than ``half_body_min_joints``
labelled joints and the keypoint info's upper/lower sets), scale ×clip(1+N(0,sf²), 1-sf, 1+sf),
rotation clip(N(0,rf²), -2rf, 2rf) with p = ``rotation_prob``, horizontal flip (p = ``flip_prob``:
joints swap by the flip index, the centre mirrors to x' = W - x - 1). Evaluation: none of these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from scalenas.config import Strict
from scalenas.data.coco_keypoints import CocoKeypoints
from scalenas.data.keypoint_info import KeypointInfo
from scalenas.data.pose_transforms import (affine_matrix, box_to_center_scale, compose, flip_matrix, normalize,
                                           transform_joints, warp_image)
from scalenas.errors import ScaleNASError
from scalenas.utils.io import read_json

#: heatmaps are at 1/4 of the input (the top-down head sits on branch 0)
STRIDE = 4
#: HRNet's half-body box padding
HALF_BODY_PADDING = 1.5


class TopDownAugment(Strict):
    """HRNet's training augmentation (method §5.4 defaults) and the box padding of every crop."""

    flip_prob: float = Field(0.5, ge=0, le=1)
    scale_factor: float = Field(0.35, ge=0, lt=1)
    rotation_factor: float = Field(45.0, ge=0)
    rotation_prob: float = Field(0.6, ge=0, le=1)
    half_body_prob: float = Field(0.3, ge=0, le=1)
    half_body_min_joints: int = Field(8, ge=0)
    box_padding: float = Field(1.25, gt=0)


@dataclass(frozen=True)
class PersonInstance:
    """One person crop: ``center``/``scale`` in 200-px units (padded, at the network's aspect ratio),
    ``box`` xywh in image pixels, ``joints`` (K, 3) x, y, v (None for detections), ``ann_id`` -1 for
    detections."""

    image_id: int
    center: tuple[float, float]
    scale: tuple[float, float]
    box: tuple[float, float, float, float]
    score: float = 1.0
    joints: np.ndarray | None = None
    area: float = 0.0
    ann_id: int = -1


def _instance(image_id: int, box, aspect_ratio: float, padding: float, **kw) -> PersonInstance:
    c, s = box_to_center_scale(box, aspect_ratio, padding)
    return PersonInstance(image_id=int(image_id), center=(float(c[0]), float(c[1])),
                          scale=(float(s[0]), float(s[1])), box=tuple(float(v) for v in box), **kw)


def _clean_box(ann: dict, hw: tuple[int, int]):
    """HRNet's box clean-up: clip to the image; None when nothing is left."""
    bb = ann.get("bbox")
    if not bb or len(bb) != 4:
        return None
    x, y, w, h = (float(v) for v in bb)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(hw[1] - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(hw[0] - 1.0, y1 + max(0.0, h - 1.0))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2 - x1, y2 - y1


def gt_instances(index: CocoKeypoints, image_ids, aspect_ratio: float, padding: float = 1.25,
                 require_keypoints: bool = True) -> list[PersonInstance]:
    """The ground-truth people of ``image_ids`` (HRNet ``_load_coco_keypoint_annotation_kernal``):
    non-crowd annotations whose box, clipped to the image, has w, h > 0 and whose area is > 0; with
    ``require_keypoints`` only people with at least one labelled joint."""
    k = index.info.num_joints
    out = []
    for iid in image_ids:
        hw = index.image_size(iid)
        for ann in index.annotations(iid):
            if ann.get("iscrowd", 0) or not ann.get("area", 0) > 0:
                continue
            joints = np.asarray(ann["keypoints"], np.float32).reshape(k, 3)
            if require_keypoints and not (joints[:, 2] > 0).any():
                continue
            box = _clean_box(ann, hw)
            if box is None:
                continue
            out.append(_instance(iid, box, aspect_ratio, padding, score=1.0, joints=joints,
                                 area=float(ann["area"]), ann_id=int(ann["id"])))
    return out


def detection_box(d, path: str, i: int, file_name_ok: bool = False,
                  default_score: float | None = None) -> tuple[list[float], float]:
    """``([x, y, w, h], score)`` of entry ``i`` of the COCO results-format detections file ``path``; a
    missing key, a non-number or a degenerate box is one line naming the file and the entry.
    ``file_name_ok``: an entry may name its image by ``file_name`` instead of ``image_id`` (predict's
    ``--boxes``); ``default_score``: the score of an entry without one (None: the score is required)."""
    if not isinstance(d, dict):
        raise ScaleNASError(f"{path}: detection {i} is not a mapping (expected image_id, category_id, bbox, score)")
    where = f"{path}: detection {i}" + (f" (image {d['image_id']})" if "image_id" in d else "")
    if "image_id" not in d and not (file_name_ok and "file_name" in d):
        raise ScaleNASError(f"{where} has no 'image_id'" + (" (or 'file_name')" if file_name_ok else ""))
    for key in ("bbox",) + (("score",) if default_score is None else ()):
        if key not in d:
            raise ScaleNASError(f"{where} has no {key!r}")
    bb, score = d["bbox"], d.get("score", default_score)
    ok = isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, (int, float)) for v in bb)
    if not ok or not all(math.isfinite(v) for v in bb) or bb[2] <= 0 or bb[3] <= 0:
        raise ScaleNASError(f"{where} has a degenerate box {bb!r}; expected [x, y, w, h] with finite values "
                            f"and w, h > 0")
    if not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ScaleNASError(f"{where} has a non-numeric score {score!r}")
    return [float(v) for v in bb], float(score)


def detection_instances(path: str, index: CocoKeypoints, aspect_ratio: float, score_threshold: float = 0.0,
                        padding: float = 1.25, image_ids=None) -> list[PersonInstance]:
    """Person boxes from a COCO results-format detections file (``[{"image_id", "category_id", "bbox":
    [x, y, w, h], "score"}]``), keeping scores >= ``score_threshold`` (HRNet's ``image_thre``) and, when
    given, only ``image_ids``. Entries of another category than the index's keypoint category are
    skipped. Every entry is validated: a bad one is one line naming the file and the entry."""
    data = read_json(path, "detections file")
    if not isinstance(data, list):
        raise ScaleNASError(f"{path}: a detections file is a list of {{image_id, category_id, bbox, score}}; "
                            f"got a {type(data).__name__}")
    keep = None if image_ids is None else set(image_ids)
    out, other = [], 0
    for i, d in enumerate(data):
        bb, score = detection_box(d, path, i)
        iid = d["image_id"]
        if iid not in index.coco.imgs:
            raise ScaleNASError(f"{path}: detection {i} refers to image id {iid!r}, which is not in "
                                f"{index.ann_file}")
        if d.get("category_id", index.category_id) != index.category_id:
            other += 1
            continue
        if score < score_threshold or (keep is not None and iid not in keep):
            continue
        out.append(_instance(iid, bb, aspect_ratio, padding, score=score, area=bb[2] * bb[3]))
    if data and other == len(data):
        raise ScaleNASError(f"{path}: no detection has the keypoint category id {index.category_id} "
                            f"({index.ann_file})")
    return out


# -- targets --------------------------------------------------------------------------------------

def gaussian_targets(joints: np.ndarray, heatmap_wh: tuple[int, int], sigma: float,
                     stride: float = STRIDE, unbiased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's ``generate_target`` (gaussian): joints (K, 3) in input pixels -> target (K, h, w) and
    target_weight (K, 1). The peak sits at the integer heatmap pixel ``int(x / stride + 0.5)`` and the
    Gaussian is cut to a (2r+1)² window, r = round(3σ); weight 0 for joints with v == 0 and for those
    whose window lies entirely off the heatmap.

    ``unbiased``: DARK's unbiased encoding (Zhang et al. 2020; mmpose ``unbiased_encoding``): the Gaussian
    is centred on the sub-pixel position ``x / stride`` over the whole heatmap, so the targets no longer
    round every joint to its heatmap pixel (half a pixel is 2 input pixels at stride 4, which caps the AP
    of a perfect network at 128x96 near 90). Pair it with the DARK decoder."""
    w, h = int(heatmap_wh[0]), int(heatmap_wh[1])
    k = joints.shape[0]
    target = np.zeros((k, h, w), np.float32)
    weight = (joints[:, 2] > 0).astype(np.float32)[:, None]
    r = int(round(3 * sigma))
    g1 = np.arange(-r, r + 1, dtype=np.float32)
    g = np.exp(-(g1[None] ** 2 + g1[:, None] ** 2) / (2 * sigma ** 2))
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    for j in range(k):
        if weight[j, 0] == 0:
            continue
        if unbiased:
            mx, my = joints[j, 0] / stride, joints[j, 1] / stride
        else:
            mx, my = int(joints[j, 0] / stride + 0.5), int(joints[j, 1] / stride + 0.5)
        x0, y0, x1, y1 = mx - r, my - r, mx + r + 1, my + r + 1
        if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
            weight[j, 0] = 0
            continue
        if unbiased:
            target[j] = np.exp(-((xs[None] - mx) ** 2 + (ys[:, None] - my) ** 2) / (2 * sigma ** 2))
            continue
        target[j, max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = \
            g[max(0, -y0):min(h, y1) - y0, max(0, -x0):min(w, x1) - x0]
    return target, weight


# -- augmentation ---------------------------------------------------------------------------------

def half_body(joints: np.ndarray, info: KeypointInfo, aspect_ratio: float, rng: np.random.Generator):
    """HRNet's ``half_body_transform``: the labelled joints of the upper or the lower body (the other set
    when the chosen one has fewer than 3), their box fixed to the aspect ratio and padded ×1.5. Returns
    ``(center, scale)`` or None (fewer than 2 joints, or no upper/lower sets in ``info``).

    The choice is HRNet's ``randn() < 0.5``, which takes the upper body 69% of the time rather than half:
    kept, because it is the augmentation the released models were trained with."""
    if not info.has_half_body:
        return None
    vis = joints[:, 2] > 0
    upper = joints[[i for i in info.upper_body_ids if vis[i]], :2]
    lower = joints[[i for i in info.lower_body_ids if vis[i]], :2]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        sel = upper
    else:
        sel = lower if len(lower) > 2 else upper
    if len(sel) < 2:
        return None
    center = sel.mean(axis=0)
    w, h = sel.max(axis=0) - sel.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center.astype(np.float64), np.array([w, h], np.float64) / 200.0 * HALF_BODY_PADDING


@dataclass(frozen=True)
class CropParams:
    """One sample's crop: ``center``/``scale`` (200-px units) in the (possibly mirrored) image, rotation
    in degrees, whether the image is mirrored first (about its width ``image_width``)."""

    center: tuple[float, float]
    scale: tuple[float, float]
    rot: float = 0.0
    flip: bool = False
    image_width: int = 0

    def matrix(self, input_wh: tuple[int, int]) -> np.ndarray:
        """Image pixels -> input pixels (the mirror folded in, so one warp does both)."""
        m = affine_matrix(self.center, self.scale, self.rot, input_wh)
        return compose(m, flip_matrix(self.image_width)) if self.flip else m


def sample_crop(rng: np.random.Generator, inst: PersonInstance, aug: TopDownAugment, info: KeypointInfo,
                aspect_ratio: float, image_width: int) -> CropParams:
    """HRNet's per-sample draws, in its order: half-body, scale, rotation, flip."""
    c, s = np.array(inst.center, np.float64), np.array(inst.scale, np.float64)
    j = inst.joints
    if j is not None and (j[:, 2] > 0).sum() > aug.half_body_min_joints and rng.random() < aug.half_body_prob:
        hb = half_body(j, info, aspect_ratio, rng)
        if hb is not None:
            c, s = hb
    sf, rf = aug.scale_factor, aug.rotation_factor
    s = s * float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
    rot = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf)) if rng.random() < aug.rotation_prob else 0.0
    flip = bool(rng.random() < aug.flip_prob)
    if flip:
        c = np.array([image_width - c[0] - 1, c[1]])
    return CropParams((float(c[0]), float(c[1])), (float(s[0]), float(s[1])), rot, flip, image_width)


def crop_joints(joints: np.ndarray, crop: CropParams, input_wh, flip_index) -> np.ndarray:
    """(K, 3) image joints -> input-pixel joints of ``crop`` (left/right swapped when it mirrors)."""
    return transform_joints(joints[None], crop.matrix(input_wh), flip_index if crop.flip else None)[0]


class TopDownDataset(Dataset):
    """Person crops of ``instances``. ``cfg`` is the top-down task config (reads ``input_hw``, ``sigma``,
    ``augment`` and ``loss.joint_weights``). Samples: ``image`` (3, H, W) float32, ``target`` (K, H/4, W/4),
    ``target_weight`` (K, 1), ``center``/``scale`` (2,) of the crop, ``score``, ``image_id``, ``area``.
    Instances without joints (detections) give zero targets and weights."""

    def __init__(self, index: CocoKeypoints, instances: list[PersonInstance], cfg, info: KeypointInfo,
                 train: bool):
        self.index, self.instances, self.cfg, self.info, self.train = index, list(instances), cfg, info, train
        h, w = cfg.input_hw
        self.input_wh = (int(w), int(h))
        self.heatmap_wh = (int(w) // STRIDE, int(h) // STRIDE)
        self.aspect_ratio = w / h
        jw = cfg.loss.joint_weights
        self.joint_weights = None if jw is None else np.asarray(jw, np.float32)[:, None]

    def __len__(self) -> int:
        return len(self.instances)

    def crop(self, i: int, image_width: int) -> CropParams:
        inst = self.instances[i]
        if not self.train:
            return CropParams(inst.center, inst.scale, image_width=image_width)
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,))))
        return sample_crop(rng, inst, self.cfg.augment, self.info, self.aspect_ratio, image_width)

    def __getitem__(self, i: int) -> dict:
        inst = self.instances[i]
        img = self.index.load_image(inst.image_id)
        crop = self.crop(i, img.shape[1])
        image = warp_image(img, crop.matrix(self.input_wh), self.input_wh)
        k = self.info.num_joints
        joints = np.zeros((k, 3), np.float32) if inst.joints is None else \
            crop_joints(inst.joints, crop, self.input_wh, self.info.flip_index)
        target, weight = gaussian_targets(joints, self.heatmap_wh, self.cfg.sigma,
                                           unbiased=self.cfg.unbiased_encoding)
        if self.joint_weights is not None:
            weight = weight * self.joint_weights
        return {"image": normalize(image), "target": target, "target_weight": weight.astype(np.float32),
                "center": np.asarray(crop.center, np.float32), "scale": np.asarray(crop.scale, np.float32),
                "score": np.float32(inst.score), "image_id": np.int64(inst.image_id),
                "area": np.float32(inst.area)}
