"""Top-down pose inference: flip test, heatmap → joint decoding, inverse affine, rescoring and OKS-NMS
(HRNet ``lib/core/inference.py``, ``lib/core/function.py validate``, ``lib/dataset/coco.py evaluate``,
``lib/nms/nms.py``; DARK from DarkPose ``taylor``/``gaussian_blur``).

One person crop per row: the network sees a (H, W) crop made by ``affine_matrix(center, scale, 0, (W, H))``
and returns K heatmaps at (h, w) = (H/4, W/4). The heatmap frame is the crop frame scaled by 1/4, i.e. the
affine ``affine_matrix(center, scale, 0, (w, h))`` (HRNet ``transform_preds``), so its inverse maps heatmap
pixels straight back to the image.

Joint location within the heatmap:
- argmax, then HRNet's quarter offset: a step of 0.25 px towards the larger neighbour in x and in y
  (``get_final_preds`` with ``POST_PROCESS``), only when the peak is at least 2 px from the left/top edge
  and 1 px from the right/bottom edge (HRNet's bounds, kept so results match it);
- or DARK (Zhang et al. 2020): blur the heatmap with the Gaussian kernel that modulates it back towards a
  Gaussian (peak height preserved), take the log, which is quadratic in the joint position for a Gaussian,
  and take one Newton step from the argmax: ``offset = -H⁻¹ ∇`` with central differences.
Numpy only; the loops of the references are vectorised over all (person, joint) pairs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

from scalenas.data.pose_transforms import affine_matrix, apply_affine, invert
from scalenas.errors import ScaleNASError
from scalenas.tasks.pose_decode import People, coco_results


@dataclass(frozen=True)
class TopDownDecodeConfig:
    """Test settings (HRNet / DarkPose TEST.* names in brackets)."""

    flip: bool = True                   # FLIP_TEST
    shift_heatmap: bool = True          # SHIFT_HEATMAP
    dark: bool = False                  # DarkPose's get_final_preds instead of POST_PROCESS
    dark_kernel: int = 11               # BLUR_KERNEL (11 at 1/4 of 256x192; cv2 picks sigma 2.0 for it)
    rescore_threshold: float = 0.2      # IN_VIS_THRE
    oks_nms_threshold: float = 0.9      # OKS_THRE

    def __post_init__(self):
        if self.dark_kernel < 3 or self.dark_kernel % 2 == 0:
            raise ScaleNASError(f"top-down decode: dark_kernel must be an odd integer >= 3, "
                                f"got {self.dark_kernel}")


# -- flip test ----------------------------------------------------------------------------------------

def flip_heatmaps_back(heatmaps: torch.Tensor, flip_index: Sequence[int], shift: bool = True) -> torch.Tensor:
    """Heatmaps (B, K, h, w) of the mirrored crop -> heatmaps in the original crop's frame.

    Mirror the columns and swap left/right channels (HRNet ``flip_back``), then, with ``shift``, move
    everything one heatmap pixel right (``out[..., 1:] = out[..., :-1]``; column 0 keeps its value).
    Why the shift: a joint at crop x is drawn at heatmap x/4 (target centre ``int(x/4 + 0.5)``). Mirrored,
    it sits at crop W-1-x, heatmap (W-1-x)/4 = w - 1/4 - x/4, and mirroring the heatmap back (index
    w-1-j) puts it at x/4 - 3/4: 3/4 px left of where the unflipped pass puts it. Shifting by one pixel
    leaves it 1/4 px right instead, the smaller error (``test_flip_shift_round_trip`` checks this).
    """
    out = heatmaps.flip(3)[:, list(flip_index)]
    if shift:
        out[..., 1:] = out[..., :-1].clone()
    return out


def _heatmaps_out(outs, k: int) -> torch.Tensor:
    """The forward's heatmaps as a CPU float tensor; a list (multi-stage or ONNX outputs) gives its last."""
    if isinstance(outs, (list, tuple)):
        outs = outs[-1]
    t = outs if isinstance(outs, torch.Tensor) else torch.as_tensor(np.asarray(outs))
    if t.dim() != 4 or t.shape[1] != k:
        raise ScaleNASError(f"top-down decoder: the model's output has shape {tuple(t.shape)}; a top-down head "
                            f"for {k} keypoints gives (B, {k}, H/4, W/4). Check that the model was built with "
                            f"this dataset's keypoint count")
    return t.detach().float().cpu()


@torch.no_grad()
def infer_heatmaps(forward: Callable, images: torch.Tensor, flip_index: Sequence[int],
                   cfg: TopDownDecodeConfig) -> np.ndarray:
    """Normalised crops (B, 3, H, W) -> heatmaps (B, K, H/4, W/4) float32: ``forward(images)``, averaged
    with the flipped-back heatmaps of ``forward(images.flip(3))`` when ``cfg.flip`` (HRNet ``validate``).
    ``forward`` is a torch module or any callable returning a tensor/array (e.g. an ONNX session wrapper)."""
    k = len(flip_index)
    hm = _heatmaps_out(forward(images), k)
    if cfg.flip:
        flipped = _heatmaps_out(forward(images.flip(3)), k)
        hm = (hm + flip_heatmaps_back(flipped, flip_index, cfg.shift_heatmap)) * 0.5
    return hm.numpy().astype(np.float32, copy=False)


# -- heatmap -> joints ----------------------------------------------------------------------------------

def max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HRNet ``get_max_preds``: argmax (x, y) per map (B, K, 2) float32 and the max (B, K); a map whose
    max is not positive gets (0, 0)."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    coords *= (maxvals > 0)[..., None]
    return coords, maxvals


def _at(hm: np.ndarray, bk: tuple[np.ndarray, np.ndarray], y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return hm[bk[0], bk[1], y, x]


def quarter_offset(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """HRNet's ``POST_PROCESS``: +-0.25 px towards the higher neighbour, where ``1 < px < w-1`` and
    ``1 < py < h-1`` (HRNet's bounds)."""
    _, _, h, w = heatmaps.shape
    out = coords.copy()
    p = np.floor(coords + 0.5).astype(np.int64)
    ok = (p[..., 0] > 1) & (p[..., 0] < w - 1) & (p[..., 1] > 1) & (p[..., 1] < h - 1)
    bk = np.nonzero(ok)
    px, py = p[bk][:, 0], p[bk][:, 1]
    diff = np.stack([_at(heatmaps, bk, py, px + 1) - _at(heatmaps, bk, py, px - 1),
                     _at(heatmaps, bk, py + 1, px) - _at(heatmaps, bk, py - 1, px)], axis=-1)
    out[bk] += np.sign(diff) * 0.25
    return out


def gaussian_blur(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """DarkPose ``gaussian_blur``: each map blurred with a (kernel x kernel) Gaussian (cv2's default sigma)
    over a zero border, then rescaled to keep its original maximum. Returns a new array."""
    b, k, h, w = heatmaps.shape
    border = (kernel - 1) // 2
    maps = heatmaps.reshape(b * k, h, w).astype(np.float64)
    out = np.empty_like(maps)
    for s in range(0, b * k, 128):                   # OpenCV 5 borders at most 128 channels per image
        chunk = np.ascontiguousarray(maps[s:s + 128].transpose(1, 2, 0))
        padded = cv2.copyMakeBorder(chunk, border, border, border, border, cv2.BORDER_CONSTANT, value=0)
        blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0).reshape(h + 2 * border, w + 2 * border, -1)
        out[s:s + 128] = blurred[border:-border, border:-border].transpose(2, 0, 1)
    orig_max = maps.max(axis=(1, 2))
    new_max = out.max(axis=(1, 2))
    # an all-zero (or negative) map has nothing to rescale; DarkPose would divide by zero there
    ratio = np.divide(orig_max, new_max, out=np.ones_like(orig_max), where=new_max > 0)
    return (out * ratio[:, None, None]).reshape(b, k, h, w)


def dark_offset(heatmaps: np.ndarray, coords: np.ndarray, kernel: int) -> np.ndarray:
    """DarkPose's refinement: blur, log, and one Newton step ``-H⁻¹∇`` at the argmax where
    ``1 < px < w-2`` and ``1 < py < h-2`` (room for the 2-px second differences) and H is invertible."""
    _, _, h, w = heatmaps.shape
    lg = np.log(np.maximum(gaussian_blur(heatmaps, kernel), 1e-10))
    out = coords.astype(np.float64)
    p = coords.astype(np.int64)
    ok = (p[..., 0] > 1) & (p[..., 0] < w - 2) & (p[..., 1] > 1) & (p[..., 1] < h - 2)
    bk = np.nonzero(ok)
    x, y = p[bk][:, 0], p[bk][:, 1]

    def v(dy, dx):
        return _at(lg, bk, y + dy, x + dx)

    dx = 0.5 * (v(0, 1) - v(0, -1))
    dy = 0.5 * (v(1, 0) - v(-1, 0))
    dxx = 0.25 * (v(0, 2) - 2 * v(0, 0) + v(0, -2))
    dxy = 0.25 * (v(1, 1) - v(-1, 1) - v(1, -1) + v(-1, -1))
    dyy = 0.25 * (v(2, 0) - 2 * v(0, 0) + v(-2, 0))
    det = dxx * dyy - dxy ** 2
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=det != 0)   # singular H: no step (DarkPose)
    off = np.stack([-(dyy * dx - dxy * dy) * inv, -(dxx * dy - dxy * dx) * inv], axis=-1)
    out[bk] += off
    return out.astype(np.float32)


def decode_heatmaps(heatmaps: np.ndarray, centers, scales,
                    cfg: TopDownDecodeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (B, K, h, w) of crops made at ``centers``/``scales`` (B, 2) -> joint coordinates in the
    image (B, K, 2) and confidences (B, K): the heatmap maxima (before any blur)."""
    heatmaps = np.asarray(heatmaps, np.float32)
    _, _, h, w = heatmaps.shape
    coords, maxvals = max_preds(heatmaps)
    coords = dark_offset(heatmaps, coords, cfg.dark_kernel) if cfg.dark else quarter_offset(heatmaps, coords)
    centers, scales = np.asarray(centers, np.float64), np.asarray(scales, np.float64)
    out = np.empty(coords.shape, np.float64)
    for i in range(coords.shape[0]):
        out[i] = apply_affine(coords[i], invert(affine_matrix(centers[i], scales[i], 0.0, (w, h))))
    return out, maxvals


# -- scoring and NMS ---------------------------------------------------------------------------------------

def rescore(maxvals: np.ndarray, box_scores: np.ndarray, threshold: float) -> np.ndarray:
    """HRNet ``evaluate``: box score x the mean of the joint confidences above ``threshold``; a person with
    no joint above it scores 0."""
    maxvals = np.asarray(maxvals, np.float64)
    above = maxvals > threshold
    n = above.sum(axis=1)
    mean = np.divide((maxvals * above).sum(axis=1), n, out=np.zeros(len(maxvals)), where=n > 0)
    return np.asarray(box_scores, np.float64) * mean


def oks_iou(g: np.ndarray, d: np.ndarray, area_g: float, areas_d: np.ndarray, sigmas,
            vis_threshold: float | None = None) -> np.ndarray:
    """HRNet ``oks_iou``: OKS of one person ``g`` (K, 3) against each of ``d`` (M, K, 3), with the mean of
    the two areas as the object scale. With ``vis_threshold`` only joints above it in both people count
    (what HRNet intended: its ``list(a) and list(b)`` keeps just the second mask; it never passes one)."""
    var = (np.asarray(sigmas, np.float64) * 2) ** 2
    d2 = ((d[..., :2] - g[None, :, :2]) ** 2).sum(-1)                     # (M, K)
    s = (area_g + np.asarray(areas_d, np.float64))[:, None] / 2 + np.spacing(1)
    e = np.exp(-d2 / var / s / 2)
    if vis_threshold is None:
        return e.mean(axis=1)
    m = (g[None, :, 2] > vis_threshold) & (d[..., 2] > vis_threshold)
    n = m.sum(axis=1)
    return np.divide((e * m).sum(axis=1), n, out=np.zeros(len(d)), where=n > 0)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas, threshold: float = 0.9,
            vis_threshold: float | None = None) -> list[int]:
    """Greedy OKS-NMS (HRNet ``oks_nms``): keep the best-scoring person, drop every other with OKS above
    ``threshold`` against it, repeat. Returns kept indices, best first; equal scores keep index order."""
    keypoints = np.asarray(keypoints, np.float64)
    areas = np.asarray(areas, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        ovr = oks_iou(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas, vis_threshold)
        order = rest[ovr <= threshold]
    return keep


def _meta_column(meta, name: str) -> np.ndarray | None:
    """One field of the per-instance metadata: a mapping of arrays, or a sequence of objects / dicts."""
    if isinstance(meta, Mapping):
        return None if name not in meta else np.asarray(meta[name])
    vals = [m[name] if isinstance(m, Mapping) else getattr(m, name, None) for m in meta]
    return None if any(v is None for v in vals) else np.asarray(vals)


def topdown_results(instances_meta, coords: np.ndarray, maxvals: np.ndarray, cfg: TopDownDecodeConfig,
                    sigmas, category_id: int = 1) -> list[dict[str, Any]]:
    """COCO keypoint results from decoded instances, HRNet's ``evaluate``: per image, rescore, OKS-NMS at
    ``cfg.oks_nms_threshold``, then ``{image_id, category_id, keypoints [x, y, conf]*K, score}``.

    ``instances_meta`` gives per instance ``image_id``, ``score`` (box score) and ``scale`` (or ``area``):
    a mapping of (N,) / (N, 2) arrays, or a sequence of objects/dicts such as ``PersonInstance``. The NMS
    area is HRNet's: the padded crop's ``prod(scale * 200)``; ``area`` is used only when there is no scale.
    """
    image_ids = _meta_column(instances_meta, "image_id")
    box_scores = _meta_column(instances_meta, "score")
    scale = _meta_column(instances_meta, "scale")
    areas = (np.prod(scale.reshape(len(scale), 2) * 200.0, axis=1) if scale is not None
             else _meta_column(instances_meta, "area"))
    if image_ids is None or box_scores is None or areas is None:
        raise ScaleNASError("top-down results: instances_meta needs image_id, score and scale (or area) "
                            "per instance")
    kps = np.concatenate([np.asarray(coords, np.float64), np.asarray(maxvals, np.float64)[..., None]], axis=-1)
    scores = rescore(maxvals, box_scores, cfg.rescore_threshold)
    out: list[dict[str, Any]] = []
    for iid in dict.fromkeys(image_ids.tolist()):          # images in first-seen order
        idx = np.nonzero(image_ids == iid)[0]
        keep = idx[oks_nms(kps[idx], scores[idx], areas[idx], sigmas, cfg.oks_nms_threshold)]
        out.extend(coco_results(People(kps[keep], scores[keep]), int(iid), category_id))
    return out
