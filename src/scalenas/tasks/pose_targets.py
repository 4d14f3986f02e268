"""Bottom-up pose targets (tasks.md §1.3): Gaussian heatmaps per output resolution, joint index arrays
for the associative-embedding loss, and — for proving the decoder — "oracle" network outputs.

Joint coordinates here are already in the output resolution's pixel frame (see ``pose_transforms``).
As in HigherHRNet, a joint's Gaussian is centred on the integer-truncated location (the decoder's
``+0.5`` compensates), the kernel is 6σ+3 wide, people overlap by element-wise max, and joints outside
the map are skipped.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from scalenas.data.pose_transforms import affine_matrix, compose, flip_matrix, multi_scale_size, transform_joints

MAX_NUM_PEOPLE = 30
#: the focal heatmap head's prior (CenterNet, Zhou et al. 2019: bias -2.19, a 0.1 probability everywhere at
#: the start), carried by the activation instead of the head's initial bias, so the model needs no change
FOCAL_PRIOR_LOGIT = float(np.log(0.1 / 0.9))


def focal_heatmaps(logits: torch.Tensor) -> torch.Tensor:
    """A focal-trained head's heatmap channels -> joint probabilities in (0, 1)."""
    return torch.sigmoid(logits + FOCAL_PRIOR_LOGIT)


def focal_logits(heatmaps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The inverse of :func:`focal_heatmaps` (heatmaps clamped to [eps, 1 - eps]): what a perfect focal-trained
    head would output."""
    return torch.logit(heatmaps, eps) - FOCAL_PRIOR_LOGIT


@functools.lru_cache(maxsize=16)
def _kernel(sigma: float) -> np.ndarray:
    size = int(6 * sigma + 3)
    c = 3 * sigma + 1
    x = np.arange(size, dtype=np.float64)
    g = np.exp(-((x[None, :] - c) ** 2 + (x[:, None] - c) ** 2) / (2 * sigma ** 2))
    return g.astype(np.float32)


def _cell(pt) -> tuple[int, int] | None:
    """Integer cell of a labelled joint (floor, so that -0.5 is outside rather than truncated into 0)."""
    if pt[2] <= 0:
        return None
    return int(np.floor(pt[0])), int(np.floor(pt[1]))


def heatmaps(joints: np.ndarray, hw: tuple[int, int], sigma: float = 2.0) -> np.ndarray:
    """(N, K, 3) joints in this resolution's pixels -> (K, H, W) float32 heatmaps in [0, 1]."""
    h, w = hw
    k = joints.shape[1]
    out = np.zeros((k, h, w), np.float32)
    g = _kernel(float(sigma))
    rad = 3 * sigma + 1
    for person in joints:
        for j, pt in enumerate(person):
            c = _cell(pt)
            if c is None:
                continue
            x, y = c
            if not (0 <= x < w and 0 <= y < h):
                continue
            x0, y0 = int(round(x - rad)), int(round(y - rad))
            x1, y1 = x0 + g.shape[1], y0 + g.shape[0]
            gx0, gy0 = max(0, -x0), max(0, -y0)
            gx1, gy1 = g.shape[1] - max(0, x1 - w), g.shape[0] - max(0, y1 - h)
            region = out[j, max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
            np.maximum(region, g[gy0:gy1, gx0:gx1], out=region)
    return out


def joint_indices(joints: np.ndarray, hw: tuple[int, int], max_people: int = MAX_NUM_PEOPLE) -> np.ndarray:
    """(max_people, K, 2) int64: flat index ``j*H*W + y*W + x`` into the (K, H, W) tag tensor and a
    visible flag, for each labelled in-map joint. People past ``max_people`` are dropped (HigherHRNet
    would index out of range); slot ``j`` holds joint ``j``."""
    h, w = hw
    k = joints.shape[1]
    out = np.zeros((max_people, k, 2), np.int64)
    for p, person in enumerate(joints[:max_people]):
        for j, pt in enumerate(person):
            c = _cell(pt)
            if c is None:
                continue
            x, y = c
            if 0 <= x < w and 0 <= y < h:
                out[p, j] = (j * h * w + y * w + x, 1)
    return out


def build_targets(joints_per_res, masks_per_res, sizes, sigma: float = 2.0, max_people: int = MAX_NUM_PEOPLE,
                  tag_res: int = 0) -> dict:
    """All targets of one sample. ``joints_per_res``/``masks_per_res`` come from
    ``pose_transforms.apply_sample_affine``; ``sizes`` are the square output sizes (1/4 first).

    Keys: ``heatmaps_<i>`` (K, s, s), ``mask_<i>`` (s, s) for each resolution i, and ``joints``
    (max_people, K, 2) at resolution ``tag_res`` (the AE loss runs at 1/4 only)."""
    out = {}
    for i, (js, m, s) in enumerate(zip(joints_per_res, masks_per_res, sizes)):
        out[f"heatmaps_{i}"] = heatmaps(js, (s, s), sigma)
        out[f"mask_{i}"] = m.astype(np.float32)
    out["joints"] = joint_indices(joints_per_res[tag_res], (sizes[tag_res], sizes[tag_res]), max_people)
    return out


def oracle_outputs(joints_input: np.ndarray, input_hw: tuple[int, int], sigma: float = 2.0,
                   tag_step: float = 3.0, strides=(4, 2)) -> tuple[torch.Tensor, ...]:
    """What a perfect network would output for people at ``joints_input`` ((N, K, 3) in input pixels):
    ``(y4 (1, 2K, H/4, W/4), y2 (1, K, H/2, W/2))`` like the bottom-up head.

    Heatmaps are the training targets; each person p gets the tag value ``p * tag_step`` (distinct by more
    than the grouping threshold) over the pixels where its own Gaussian dominates that joint's map, so
    bilinear resizing in the decoder keeps each peak's tag. Used to prove the decoder before training.
    """
    h, w = input_hw
    n, k = joints_input.shape[:2]
    outs = []
    for r, stride in enumerate(strides):
        hr, wr = h // stride, w // stride
        js = joints_input.astype(np.float32).copy()
        js[..., :2] = js[..., :2] / stride
        hm = heatmaps(js, (hr, wr), sigma)
        if r == 0:
            per = np.stack([heatmaps(js[p:p + 1], (hr, wr), sigma) for p in range(n)]) if n \
                else np.zeros((1, k, hr, wr), np.float32)
            tags = np.argmax(per, axis=0).astype(np.float32) * tag_step
            hm = np.concatenate([hm, tags], 0)
        outs.append(torch.from_numpy(hm)[None])
    return tuple(outs)


class OracleForward:
    """A "perfect network" for one image, usable wherever the decoder takes a ``forward``: for each input
    it renders ``oracle_outputs`` from the image's ground truth mapped through the decoder's test resize.

    A call whose input is the horizontal mirror of the previous plain call is treated as the flip pass
    and gets the mirrored image's targets (x -> w - 1 - x, joints swapped by ``flip_index``). Decoding
    with it measures the decoder and the target representation alone: grouping mistakes or coordinate
    slips show up as lost AP, and what remains is the resolution limit of heatmaps at 1/2 of the input.
    """

    def __init__(self, joints_image: np.ndarray, image_hw: tuple[int, int], flip_index, input_size: int,
                 scales=(1.0,), sigma: float = 2.0, stride: int = 32, focal: bool = False):
        self.focal = focal  # heatmap channels as a focal-trained head's logits (see focal_logits)
        self.joints = np.asarray(joints_image, np.float32)
        self.hw = tuple(image_hw)
        self.flip_index = list(flip_index)
        self.input_size, self.scales, self.sigma, self.stride = input_size, tuple(scales), sigma, stride
        self._last = None

    def _matrix(self, h: int, w: int) -> np.ndarray:
        lo = min(self.scales)
        for s in self.scales:
            size, center, scale_vec = multi_scale_size(self.hw, self.input_size, s, lo, self.stride)
            if tuple(size) == (w, h):
                return affine_matrix(center, scale_vec, 0.0, size)
        raise ValueError(f"oracle: input {h}x{w} matches no test scale of {self.hw} at {self.input_size}")

    def __call__(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        m = self._matrix(h, w)
        flipped = self._last is not None and self._last.shape == x.shape and torch.equal(x, self._last.flip(3))
        if flipped:
            js = transform_joints(self.joints, compose(flip_matrix(w), m), self.flip_index)
        else:
            self._last = x
            js = transform_joints(self.joints, m)
        outs = oracle_outputs(js, (h, w), self.sigma)
        if not self.focal:
            return outs
        k = self.joints.shape[1]
        return tuple(torch.cat([focal_logits(o[:, :k]), o[:, k:]], 1) for o in outs)
