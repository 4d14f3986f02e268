"""Segmentation augmentation with OpenCV + numpy (HRNet-Seg ``gen_sample``, tasks.md §2.4).

Images are (H, W, 3) uint8 BGR, labels (H, W) uint8 train ids. The training pipeline is random scale
(long side = base_size * s, or the native size * s when there is no base size) -> pad to the crop size
(image 0, label ignore) -> random crop -> horizontal flip; ``normalize`` then gives the float CHW RGB
tensor the network sees.

Labels resize with ``INTER_NEAREST_EXACT``: plain ``INTER_NEAREST`` samples source pixel
floor(x * scale), half a pixel away from the pixel-centre convention ``INTER_LINEAR`` uses for the
image, which shifts the labels against the image by up to one source pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from scalenas.errors import ScaleNASError

# ImageNet statistics in RGB order, as the HRNet backbones were pre-trained with.
MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
# x * _SCALE - _OFFSET == (x / 255 - mean) / std, one fused multiply-add per element.
_SCALE = (1.0 / (255.0 * STD_RGB)).astype(np.float32)
_OFFSET = (MEAN_RGB / STD_RGB).astype(np.float32)


def normalize(image_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32 RGB, ImageNet mean/std normalised."""
    x = image_bgr[..., ::-1].astype(np.float32)
    x *= _SCALE
    x -= _OFFSET
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def denormalize(chw: np.ndarray) -> np.ndarray:
    """Inverse of ``normalize`` (rounded to uint8 BGR), for drawing overlays of network inputs."""
    x = (chw.transpose(1, 2, 0) + _OFFSET) / _SCALE
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)[..., ::-1].copy()


def scaled_size(h: int, w: int, scale: float, base_size: int | None = None) -> tuple[int, int]:
    """Size after scaling: long side = ``base_size * scale`` (HRNet), or native size * scale."""
    if base_size:
        long = base_size * scale
        f = long / max(h, w)
    else:
        f = scale
    return max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))


def resize(image: np.ndarray, label: np.ndarray | None, size_hw: tuple[int, int]):
    """Image bilinear, label nearest (centre-aligned); a no-op when the size is unchanged."""
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image, label
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return image, label


def scale_choices(lo: float, hi: float, step: float = 0.1) -> np.ndarray:
    """The discrete scales lo, lo+step, ..., hi (HRNet draws 0.5 + randint(0, 16) / 10)."""
    if not 0 < lo <= hi:
        raise ScaleNASError(f"scale range ({lo}, {hi}): need 0 < min <= max")
    n = int(math.floor((hi - lo) / step + 1e-6)) + 1 if step > 0 else 1
    return np.round(lo + step * np.arange(n), 6)


def pad_to(image: np.ndarray, label: np.ndarray, min_hw: tuple[int, int], ignore_index: int = 255):
    """Pad bottom/right up to ``min_hw``: image with 0 (black), label with the ignore value."""
    h, w = image.shape[:2]
    ph, pw = max(min_hw[0] - h, 0), max(min_hw[1] - w, 0)
    if ph == 0 and pw == 0:
        return image, label
    image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=int(ignore_index))
    return image, label


def random_crop(image: np.ndarray, label: np.ndarray, crop_hw: tuple[int, int], rng: np.random.Generator):
    """A ``crop_hw`` window at a uniform random offset (the arrays must be at least that large)."""
    h, w = image.shape[:2]
    ch, cw = crop_hw
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def random_hflip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 0.5):
    if rng.random() < p:
        return image[:, ::-1], label[:, ::-1]
    return image, label


@dataclass(frozen=True)
class TrainAugment:
    """Random scale -> pad -> crop -> flip on uint8 arrays (normalisation is separate, see ``normalize``)."""

    crop_size: tuple[int, int]
    scales: tuple[float, ...] = (1.0,)
    base_size: int | None = None
    flip: bool = True
    ignore_index: int = 255

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        s = float(self.scales[int(rng.integers(0, len(self.scales)))])
        image, label = resize(image, label, scaled_size(*image.shape[:2], s, self.base_size))
        image, label = pad_to(image, label, self.crop_size, self.ignore_index)
        image, label = random_crop(image, label, self.crop_size, rng)
        if self.flip:
            image, label = random_hflip(image, label, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)

