"""Pose geometry: affine crops, flips, the test-time resize, person boxes, and normalisation (tasks.md §1.5, §1.7).

Conventions (HigherHRNet's): a "scale" is the source region's size in units of 200 pixels, an affine
maps ``center`` to the middle of the output and ``scale * 200`` source pixels onto the output width,
and pixel centres sit at integer coordinates (OpenCV ``warpAffine``). One random affine per sample is
applied to the image at the input size and, separately, to the joints and ignore mask at every output
size; a horizontal flip is folded into each of those matrices as ``x' = size - 1 - x``.
OpenCV + numpy only: torchvision cannot be imported on our machines (environment.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def affine_matrix(center, scale, rot_deg: float, output_size) -> np.ndarray:
    """2x3 matrix sending ``center`` to the output centre, rotating by ``rot_deg`` (counter-clockwise on
    screen) and scaling ``scale[0] * 200`` source pixels to the output width ``output_size[0]``."""
    cx, cy = float(center[0]), float(center[1])
    sw = float(np.atleast_1d(scale)[0]) * 200.0
    ow, oh = float(output_size[0]), float(output_size[1])
    s = ow / sw
    r = math.radians(rot_deg)
    c, si = math.cos(r) * s, math.sin(r) * s
    # y points down, so a screen-counter-clockwise rotation is [[c, s], [-s, c]] in pixel coordinates.
    m = np.array([[c, si, 0.0], [-si, c, 0.0]])
    m[:, 2] = np.array([ow / 2.0, oh / 2.0]) - m[:, :2] @ np.array([cx, cy])
    return m


def box_to_center_scale(box_xywh, aspect_ratio: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's top-down person crop (``_box2cs``): the box centre, and the box grown to the network's
    aspect ratio (``aspect_ratio`` = input width / height) then padded by ``padding``, in 200-px units.
    Feeding ``center``/``scale`` and the input (W, H) to :func:`affine_matrix` gives the crop."""
    x, y, w, h = (float(v) for v in box_xywh[:4])
    center = np.array([x + w * 0.5, y + h * 0.5])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w, h]) / 200.0 * padding


def flip_matrix(width: int) -> np.ndarray:
    """x' = width - 1 - x: the index mirror of an array of ``width`` columns."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine of ``a`` applied after ``b``."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Transform (..., 2) points."""
    p = np.asarray(points, np.float64)
    return p @ m[:, :2].T + m[:, 2]


def transform_joints(joints: np.ndarray, m: np.ndarray, flip_index=None) -> np.ndarray:
    """(N, K, 3) joints through ``m``; with ``flip_index`` the joint order is swapped left/right
    (pass it whenever ``m`` contains a mirror). Visibility is kept; range checks happen in the targets."""
    out = joints.astype(np.float32).copy()
    out[..., :2] = apply_affine(joints[..., :2], m)
    if flip_index is not None:
        out = out[:, list(flip_index)]
    return out


def warp_image(image: np.ndarray, m: np.ndarray, size_wh, border=cv2.BORDER_CONSTANT) -> np.ndarray:
    return cv2.warpAffine(image, m, (int(size_wh[0]), int(size_wh[1])), flags=cv2.INTER_LINEAR, borderMode=border)


def warp_mask(mask: np.ndarray, m: np.ndarray, size_wh) -> np.ndarray:
    """Warp a {0,1} mask and threshold at 0.5 (HigherHRNet); outside the image counts as 0 (ignored)."""
    w = cv2.warpAffine((mask * 255).astype(np.uint8), m, (int(size_wh[0]), int(size_wh[1])),
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return (w.astype(np.float32) / 255.0 > 0.5).astype(np.float32)


def normalize(image_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32 RGB, ImageNet mean/std (HigherHRNet's ToTensor + Normalize)."""
    rgb = image_bgr[..., ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))


@dataclass(frozen=True)
class AffineParams:
    """One sample's random geometry: ``center``/``scale`` (200-px units) of the square source crop,
    rotation in degrees, and whether to mirror."""

    center: tuple[float, float]
    scale: float
    rot: float
    flip: bool

    def matrix(self, size: int) -> np.ndarray:
        m = affine_matrix(self.center, self.scale, self.rot, (size, size))
        return compose(flip_matrix(size), m) if self.flip else m


def sample_affine(rng: np.random.Generator, hw: tuple[int, int], max_rotation: float = 30.0,
                  min_scale: float = 0.75, max_scale: float = 1.5, max_translate: float = 40.0,
                  flip_prob: float = 0.5, scale_type: str = "short") -> AffineParams:
    """HigherHRNet's RandomAffineTransform + RandomHorizontalFlip draws: a square crop about the image
    centre of side (short or long side) x U[min_scale, max_scale], rotation U[-max_rotation, max_rotation],
    centre shifted by an integer in [-max_translate*scale, max_translate*scale)."""
    h, w = hw
    side = min(h, w) if scale_type == "short" else max(h, w)
    scale = side / 200.0 * rng.uniform(min_scale, max_scale)
    rot = rng.uniform(-max_rotation, max_rotation)
    cx, cy = w / 2.0, h / 2.0
    t = int(max_translate * scale)
    if t > 0:
        cx += int(rng.integers(-t, t))
        cy += int(rng.integers(-t, t))
    flip = bool(rng.random() < flip_prob)
    return AffineParams((cx, cy), float(scale), float(rot), flip)


def center_affine(hw: tuple[int, int], scale_type: str = "short") -> AffineParams:
    """The deterministic (evaluation / calibration) crop: centred, no rotation, no flip."""
    h, w = hw
    side = min(h, w) if scale_type == "short" else max(h, w)
    return AffineParams((w / 2.0, h / 2.0), side / 200.0, 0.0, False)


def apply_sample_affine(params: AffineParams, image: np.ndarray, joints: np.ndarray, mask: np.ndarray,
                        input_size: int, output_sizes, flip_index):
    """Warp one sample: image at ``input_size``; joints and mask at every output size.

    Returns ``(image (S, S, 3) uint8, [joints (N, K, 3) per output size], [mask (s, s) per output size])``.
    """
    fi = flip_index if params.flip else None
    img = warp_image(image, params.matrix(input_size), (input_size, input_size))
    js, ms = [], []
    for s in output_sizes:
        m = params.matrix(s)
        js.append(transform_joints(joints, m, fi))
        ms.append(warp_mask(mask, m, (s, s)))
    return img, js, ms


# -- test-time resize (HigherHRNet get_multi_scale_size / resize_align_multi_scale) -----------------

def _ceil_to(v: float, m: int) -> int:
    return int(math.ceil(v / m) * m)


def multi_scale_size(hw: tuple[int, int], input_size: int, scale: float, min_scale: float, stride: int = 32):
    """Network input size for one test scale: the short side goes to ``input_size * scale`` and the long
    side keeps the aspect ratio rounded up to a multiple of 64 (computed at ``min_scale`` so every scale
    shares one aspect); both sides are finally rounded up to ``stride`` because our backbone's lowest
    branch runs at 1/32 (HigherHRNet only needed /64 at the smallest scale).

    Returns ``(size_wh, center, scale_vec)`` where ``scale_vec`` (200-px units) makes the resize isotropic.
    """
    h, w = hw
    center = np.array([int(w / 2.0 + 0.5), int(h / 2.0 + 0.5)], np.float64)
    min_in = _ceil_to(min_scale * input_size, 64)
    ratio = scale / min_scale
    if w < h:
        w_res = _ceil_to(int(min_in * ratio), stride)
        h_res = _ceil_to(int(_ceil_to(min_in / w * h, 64) * ratio), stride)
        scale_vec = np.array([w / 200.0, h_res / w_res * w / 200.0])
    else:
        h_res = _ceil_to(int(min_in * ratio), stride)
        w_res = _ceil_to(int(_ceil_to(min_in / h * w, 64) * ratio), stride)
        scale_vec = np.array([w_res / h_res * h / 200.0, h / 200.0])
    return (w_res, h_res), center, scale_vec


def resize_for_test(image: np.ndarray, input_size: int, scale: float, min_scale: float, stride: int = 32):
    """Warp ``image`` to the network size for ``scale``; returns ``(resized, center, scale_vec, size_wh)``."""
    size, center, scale_vec = multi_scale_size(image.shape[:2], input_size, scale, min_scale, stride)
    m = affine_matrix(center, scale_vec, 0.0, size)
    return warp_image(image, m, size), center, scale_vec, size


def to_image_coords(coords: np.ndarray, center, scale_vec, size_wh) -> np.ndarray:
    """Map (..., 2) coordinates in a ``size_wh`` frame (the test resize at ``center``/``scale_vec``) back to
    the original image (HigherHRNet transform_preds)."""
    inv = invert(affine_matrix(center, scale_vec, 0.0, size_wh))
    return apply_affine(coords, inv)
