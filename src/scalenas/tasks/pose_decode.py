"""Bottom-up pose inference (tasks.md §1.7): multi-scale/flip aggregation, peak NMS, top-k, tag grouping
with the Hungarian algorithm, adjust, refine, and the inverse affine back to image coordinates.

``forward`` is any callable mapping a normalised (1, 3, h, w) float tensor to the head outputs
``(y4, y2)`` (tensors or numpy arrays): a torch module, or a wrapper around an ONNX Runtime session.
Grouping follows pose-ae-train / HigherHRNet; where they differ from what is written here the reason is
given inline (integer person ids instead of float tag keys; one peak per exact plateau).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from scalenas.data.pose_transforms import multi_scale_size, normalize, resize_for_test, to_image_coords
from scalenas.errors import ScaleNASError
from scalenas.tasks.pose_targets import focal_heatmaps


@dataclass(frozen=True)
class DecodeConfig:
    """Test settings (HigherHRNet TEST.* names in brackets)."""

    input_size: int = 512                       # DATASET.INPUT_SIZE
    scales: tuple[float, ...] = (1.0,)          # SCALE_FACTOR
    flip: bool = True                           # FLIP_TEST
    project_to_image: bool = True               # PROJECT2IMAGE
    nms_kernel: int = 5                         # NMS_KERNEL (padding kernel // 2)
    max_people: int = 30                        # MAX_NUM_PEOPLE (top-k per joint)
    detection_threshold: float = 0.1            # DETECTION_THRESHOLD
    tag_threshold: float = 1.0                  # TAG_THRESHOLD
    use_detection_val: bool = True              # USE_DETECTION_VAL
    ignore_too_much: bool = False               # IGNORE_TOO_MUCH
    adjust: bool = True                         # ADJUST
    refine: bool = True                         # REFINE
    stride: int = 32                            # input sides must be multiples of this (our backbone)
    focal: bool = False                         # heatmap channels are focal logits (task.loss.heatmap "focal")


@dataclass
class Maps:
    """Aggregated maps in the parse frame plus the geometry to map them back to the image."""

    heatmaps: torch.Tensor                      # (K, H, W)
    tags: torch.Tensor                          # (K, H, W, L)
    center: np.ndarray
    scale_vec: np.ndarray
    size_wh: tuple[int, int]


@dataclass
class People:
    keypoints: np.ndarray                       # (P, K, 3): x, y, heatmap value (image coords)
    scores: np.ndarray                          # (P,)


def _as_tensor(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(device).float()


def _one_pass(forward: Callable, x: torch.Tensor, k: int, flip_index: Sequence[int] | None, focal: bool = False):
    """Heatmaps (1, K, h, w) averaged over the head's resolutions at the finest one, and 1/4-res tags
    upsampled to it; with ``flip_index`` the input is mirrored and the outputs mirrored back; with ``focal``
    each output's heatmap channels are probabilities of focal logits (averaged as probabilities)."""
    xin = x.flip(3) if flip_index is not None else x
    outs = forward(xin)
    if isinstance(outs, (torch.Tensor, np.ndarray)):
        outs = [outs]
    outs = [_as_tensor(o, x.device) for o in outs]
    if outs[0].dim() != 4 or outs[0].shape[1] < 2 * k:
        raise ScaleNASError(f"pose decoder: the model's first output has shape {tuple(outs[0].shape)}; a "
                            f"bottom-up head for {k} keypoints gives (1, {2 * k}, h/4, w/4) (heatmaps + tags). "
                            f"Check that the model was built with this dataset's keypoint count")
    size = outs[-1].shape[-2:]
    hm, tag = 0, None
    for i, o in enumerate(outs):
        if focal:  # probabilities before resizing: bilinear logits would not average as probabilities
            o = torch.cat([focal_heatmaps(o[:, :k]), o[:, k:]], 1)
        if o.shape[-2:] != size:
            o = F.interpolate(o, size=size, mode="bilinear", align_corners=False)
        if flip_index is not None:
            o = o.flip(3)
        hm = hm + o[:, :k]
        if i == 0:
            tag = o[:, k:2 * k]
    hm = hm / len(outs)
    if flip_index is not None:
        fi = list(flip_index)
        hm, tag = hm[:, fi], tag[:, fi]
    return hm, tag


def aggregate(forward: Callable, image_bgr: np.ndarray, num_joints: int, flip_index: Sequence[int],
              cfg: DecodeConfig, device: torch.device | str = "cpu") -> Maps:
    """Run every (scale, flip) pass and combine: heatmaps averaged over flips then over scales in the
    parse frame (the scale-1.0 input size with ``project_to_image``, else the largest scale's finest
    output); tags stacked as embedding dimensions from the scale-1.0 passes (all passes when 1.0 is not
    among the scales), as HigherHRNet's aggregate_results."""
    scales = sorted(cfg.scales, reverse=True)
    min_s = min(scales)
    hw = image_bgr.shape[:2]
    base_wh, center, scale_vec = multi_scale_size(hw, cfg.input_size, 1.0, min_s, cfg.stride)
    tag_scales = [s for s in scales if s == 1.0] or scales
    final, tags, target = None, [], None
    for s in scales:
        resized, _, _, _ = resize_for_test(image_bgr, cfg.input_size, s, min_s, cfg.stride)
        x = torch.from_numpy(normalize(resized))[None].to(device)
        passes = [_one_pass(forward, x, num_joints, None, cfg.focal)]
        if cfg.flip:
            passes.append(_one_pass(forward, x, num_joints, flip_index, cfg.focal))
        if target is None:
            target = (base_wh[1], base_wh[0]) if cfg.project_to_image else tuple(passes[0][0].shape[-2:])
        hm = 0
        for h, t in passes:
            h = h if tuple(h.shape[-2:]) == target else F.interpolate(h, size=target, mode="bilinear",
                                                                      align_corners=False)
            hm = hm + h
            if s in tag_scales:
                t = t if tuple(t.shape[-2:]) == target else F.interpolate(t, size=target, mode="bilinear",
                                                                          align_corners=False)
                tags.append(t)
        hm = hm / len(passes)
        final = hm if final is None else final + hm
    final = final / len(scales)
    tag = torch.stack(tags, dim=-1)[0]               # (K, H, W, L)
    size_wh = (target[1], target[0])
    return Maps(final[0], tag, center, scale_vec, size_wh)


def _max_filter_np(a: np.ndarray, kernel: int) -> np.ndarray:
    """Max over a kernel x kernel window (padding = -inf) of each plane of (C, H, W), with OpenCV's
    dilate: torch's CPU max_pool2d at stride 1 is ~50x slower on our machines."""
    ker = np.ones((kernel, kernel), np.uint8)
    return np.stack([cv2.dilate(p, ker, borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf) for p in a])


def peak_nms(hm: torch.Tensor, kernel: int) -> torch.Tensor:
    """(K, H, W) -> heatmap with non-peaks zeroed. A pixel is a peak when it equals its window's max;
    of several equal pixels in one window only the first in raster order survives, so an exactly flat
    top (e.g. a symmetric peak upsampled x2) yields one candidate instead of duplicate people."""
    if hm.device.type != "cpu":
        return _peak_nms_torch(hm, kernel)
    k, h, w = hm.shape
    a = hm.detach().float().numpy()
    keep = a == _max_filter_np(a, kernel)
    # float32 holds integers exactly up to 2**24, i.e. maps up to 16M pixels
    order = -np.arange(h * w, dtype=np.float32).reshape(1, h, w)
    cand = np.where(keep, order, np.float32(-np.inf))
    keep &= cand == _max_filter_np(cand, kernel)
    return torch.from_numpy(a * keep)


def _peak_nms_torch(hm: torch.Tensor, kernel: int) -> torch.Tensor:
    """``peak_nms`` with max_pool2d, for maps on an accelerator."""
    k, h, w = hm.shape
    pad = kernel // 2
    hm = hm.float()
    keep = hm == F.max_pool2d(hm[None], kernel, 1, pad)[0]
    order = -torch.arange(h * w, device=hm.device, dtype=torch.float32).view(1, h, w).expand(k, h, w)
    cand = torch.where(keep, order, torch.full_like(order, -float("inf")))
    keep = keep & (cand == F.max_pool2d(cand[None], kernel, 1, pad)[0])
    return hm * keep


def top_k(hm: torch.Tensor, tags: torch.Tensor, cfg: DecodeConfig):
    """Candidates per joint: locations (K, k, 2) as (x, y), values (K, k), tags (K, k, L) (numpy)."""
    k, h, w = hm.shape
    det = peak_nms(hm, cfg.nms_kernel).reshape(k, -1)
    n = min(cfg.max_people, det.shape[1])
    val, ind = det.topk(n, dim=1)
    tag = tags.reshape(k, h * w, -1)
    tag_k = torch.gather(tag, 1, ind[..., None].expand(-1, -1, tag.shape[-1]))
    loc = torch.stack([ind % w, ind // w], dim=-1)
    return loc.cpu().numpy().astype(np.float64), val.cpu().numpy().astype(np.float64), \
        tag_k.cpu().numpy().astype(np.float64)


def match_by_tag(loc: np.ndarray, val: np.ndarray, tag: np.ndarray, joint_order: Sequence[int],
                 cfg: DecodeConfig) -> np.ndarray:
    """Greedy-by-joint grouping (pose-ae-train): visit joints in ``joint_order``; the first one present
    seeds one person per candidate; each later joint's candidates are matched to the existing people's
    mean tags by the Hungarian algorithm on cost round(dist) * 100 - score; a match is accepted when the
    raw tag distance is below ``tag_threshold``, otherwise the candidate starts a new person.

    Returns (P, K, 3 + L): x, y, value, tag per joint (zeros where absent). People are keyed by an
    integer id (HigherHRNet keys them by the first tag value, which merges people whose tags collide).
    """
    k, _, dim = tag.shape
    people: list[np.ndarray] = []
    person_tags: list[list[np.ndarray]] = []
    for j in joint_order:
        sel = val[j] > cfg.detection_threshold
        if not sel.any():
            continue
        cand = np.concatenate([loc[j][sel], val[j][sel, None], tag[j][sel]], axis=1)
        ctag = tag[j][sel]

        def new_person(row):
            p = np.zeros((k, 3 + dim))
            p[j] = cand[row]
            people.append(p)
            person_tags.append([ctag[row]])

        if not people:
            for r in range(len(cand)):
                new_person(r)
            continue
        active = list(range(min(len(people), cfg.max_people)))
        if cfg.ignore_too_much and len(active) == cfg.max_people:
            continue
        means = np.stack([np.mean(person_tags[p], axis=0) for p in active])
        dist = np.linalg.norm(ctag[:, None, :] - means[None], axis=2)
        cost = np.round(dist) * 100 - cand[:, 2:3] if cfg.use_detection_val else dist.copy()
        n_add, n_grp = cost.shape
        if n_add > n_grp:  # more candidates than people: extra columns mean "start a new person"
            cost = np.concatenate([cost, np.full((n_add, n_add - n_grp), 1e10)], axis=1)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            if c < n_grp and dist[r, c] < cfg.tag_threshold:
                pid = active[c]
                people[pid][j] = cand[r]
                person_tags[pid].append(ctag[r])
            else:
                new_person(r)
    if not people:
        return np.zeros((0, k, 3 + dim))
    return np.stack(people)


def adjust(people: np.ndarray, hm: np.ndarray) -> np.ndarray:
    """Move each found joint a quarter pixel towards its higher neighbour in x and in y, then +0.5
    (the targets are centred on truncated coordinates, so the true position is on average half a pixel on)."""
    if len(people) == 0:
        return people
    out = people.copy()
    k, h, w = hm.shape
    pi, ji = np.nonzero(out[:, :, 2] > 0)
    xs = out[pi, ji, 0].astype(np.int64)
    ys = out[pi, ji, 1].astype(np.int64)
    right = hm[ji, ys, np.minimum(xs + 1, w - 1)] > hm[ji, ys, np.maximum(xs - 1, 0)]
    down = hm[ji, np.minimum(ys + 1, h - 1), xs] > hm[ji, np.maximum(ys - 1, 0), xs]
    out[pi, ji, 0] = out[pi, ji, 0] + np.where(right, 0.25, -0.25) + 0.5
    out[pi, ji, 1] = out[pi, ji, 1] + np.where(down, 0.25, -0.25) + 0.5
    return out


def refine(people: np.ndarray, hm: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Fill each person's missing joints: the argmax over the map of heatmap - round(tag distance to the
    person's mean tag), with the quarter-pixel adjust; kept when the heatmap value there is > 0.

    ``hm`` (K, H, W) and ``tags`` (K, H, W, L) as numpy. Computed per person for its missing joints only,
    with the tag dimension first so each distance term is one contiguous pass."""
    if len(people) == 0:
        return people
    out = people.copy()
    k, h, w = hm.shape
    tl = np.ascontiguousarray(np.moveaxis(tags, -1, 0), dtype=np.float32)     # (L, K, H, W)
    for p in range(len(out)):
        have = np.nonzero(out[p, :, 2] > 0)[0]
        miss = np.nonzero(out[p, :, 2] == 0)[0]
        if len(have) == 0 or len(miss) == 0:
            continue
        # mean tag of the joints the person has, read from the tag map at their integer cells
        xs = out[p, have, 0].astype(np.int64).clip(0, w - 1)
        ys = out[p, have, 1].astype(np.int64).clip(0, h - 1)
        mean = tl[:, have, ys, xs].mean(axis=1)                                # (L,)
        d2 = np.zeros((len(miss), h, w), np.float32)
        for li in range(tl.shape[0]):
            d2 += (tl[li, miss] - mean[li]) ** 2
        sub = hm[miss]
        arg = (sub - np.round(np.sqrt(d2))).reshape(len(miss), -1).argmax(axis=1)
        yy, xx = arg // w, arg % w
        r = np.arange(len(miss))
        val = sub[r, yy, xx].astype(np.float64)
        right = sub[r, yy, np.minimum(xx + 1, w - 1)] > sub[r, yy, np.maximum(xx - 1, 0)]
        down = sub[r, np.minimum(yy + 1, h - 1), xx] > sub[r, np.maximum(yy - 1, 0), xx]
        ok = val > 0
        out[p, miss[ok], 0] = (xx + 0.5 + np.where(right, 0.25, -0.25))[ok]
        out[p, miss[ok], 1] = (yy + 0.5 + np.where(down, 0.25, -0.25))[ok]
        out[p, miss[ok], 2] = val[ok]
    return out


def parse(maps: Maps, joint_order: Sequence[int], cfg: DecodeConfig) -> People:
    """Group the aggregated maps into people and map them to image coordinates."""
    loc, val, tag = top_k(maps.heatmaps, maps.tags, cfg)
    people = match_by_tag(loc, val, tag, joint_order, cfg)
    hm_np = maps.heatmaps.cpu().numpy()
    if cfg.adjust:
        people = adjust(people, hm_np)
    # person score: mean joint value over all K joints (missing count as 0), before refine
    scores = people[:, :, 2].mean(axis=1) if len(people) else np.zeros(0)
    if cfg.refine:
        people = refine(people, hm_np, maps.tags.cpu().numpy())
    kps = people[:, :, :3].copy() if len(people) else np.zeros((0, maps.heatmaps.shape[0], 3))
    if len(kps):
        kps[..., :2] = to_image_coords(kps[..., :2], maps.center, maps.scale_vec, maps.size_wh)
    return People(kps.astype(np.float64), scores.astype(np.float64))


@torch.no_grad()
def decode_image(forward: Callable, image_bgr: np.ndarray, num_joints: int, flip_index: Sequence[int],
                 joint_order: Sequence[int], cfg: DecodeConfig, device: torch.device | str = "cpu") -> People:
    """One image (H, W, 3 uint8 BGR) -> people in image coordinates."""
    maps = aggregate(forward, image_bgr, num_joints, flip_index, cfg, device)
    return parse(maps, joint_order, cfg)


def coco_results(people: People, image_id: int, category_id: int = 1) -> list[dict[str, Any]]:
    """COCO keypoint results entries; the third value per joint is its heatmap score, as HigherHRNet."""
    out = []
    for kp, s in zip(people.keypoints, people.scores):
        out.append({"image_id": int(image_id), "category_id": int(category_id),
                    "keypoints": [round(float(v), 3) for v in kp.reshape(-1)], "score": float(s)})
    return out
