"""Colourised segmentation overlays written as PNG with OpenCV.

Palettes are RGB (the dataset_info.json / Cityscapes convention); images are BGR (OpenCV's).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_bytes


def _lut(palette_rgb: Sequence[Sequence[int]], ignore_index: int, ignore_bgr=(0, 0, 0)) -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    pal = np.asarray(palette_rgb, np.uint8).reshape(-1, 3)[:, ::-1]
    lut[:len(pal)] = pal[:256]
    if 0 <= ignore_index < 256:
        lut[ignore_index] = ignore_bgr
    return lut


def colorize(mask: np.ndarray, palette_rgb: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 BGR; ignore pixels black."""
    return _lut(palette_rgb, ignore_index)[np.asarray(mask, np.uint8)]


def overlay(image_bgr: np.ndarray, mask: np.ndarray, palette_rgb: Sequence[Sequence[int]], alpha: float = 0.5,
            ignore_index: int = 255) -> np.ndarray:
    """Alpha-blend the colourised mask on the image; ignore pixels keep the image."""
    if image_bgr.shape[:2] != mask.shape[:2]:
        raise ScaleNASError(f"overlay: image {image_bgr.shape[:2]} and mask {mask.shape[:2]} differ in size")
    col = colorize(mask, palette_rgb, ignore_index)
    out = cv2.addWeighted(image_bgr, 1.0 - alpha, col, alpha, 0.0)
    keep = np.asarray(mask) == ignore_index
    out[keep] = image_bgr[keep]
    return out


def legend(class_ids: Sequence[int], class_names: Sequence[str], palette_rgb: Sequence[Sequence[int]],
           width: int) -> np.ndarray:
    """A strip of colour swatches with class names, wrapped to ``width`` pixels."""
    lut = _lut(palette_rgb, -1)
    row_h, pad, items = 18, 6, []
    for c in class_ids:
        text = class_names[c] if c < len(class_names) else str(c)
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        items.append((c, text, 14 + 4 + tw + pad))
    rows, x = [[]], 0
    for it in items:
        if x + it[2] > width and rows[-1]:
            rows.append([])
            x = 0
        rows[-1].append(it)
        x += it[2]
    strip = np.full((row_h * len(rows) + 2, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        x, y = 2, r * row_h + 2
        for c, text, iw in row:
            cv2.rectangle(strip, (x, y + 2), (x + 12, y + 14), lut[c].tolist(), -1)
            cv2.putText(strip, text, (x + 16, y + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            x += iw
    return strip


def render(image_bgr: np.ndarray, pred: np.ndarray, palette_rgb: Sequence[Sequence[int]],
           gt: np.ndarray | None = None, class_names: Sequence[str] | None = None, alpha: float = 0.5,
           ignore_index: int = 255) -> np.ndarray:
    """Prediction overlay, side by side with the GT overlay when ``gt`` is given, and a legend of
    the classes present when ``class_names`` is given."""
    panels = [overlay(image_bgr, pred, palette_rgb, alpha, ignore_index)]
    if gt is not None:
        panels.append(np.full((image_bgr.shape[0], 4, 3), 255, np.uint8))
        panels.append(overlay(image_bgr, gt, palette_rgb, alpha, ignore_index))
    out = np.concatenate(panels, 1)
    if class_names:
        present = set(np.unique(pred).tolist()) | (set(np.unique(gt).tolist()) if gt is not None else set())
        present.discard(ignore_index)
        if present:
            out = np.concatenate([out, legend(sorted(present), class_names, palette_rgb, out.shape[1])], 0)
    return out


def write_png(path: str, image_bgr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ScaleNASError(f"{path}: PNG encoding failed")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as e:
        raise ScaleNASError(f"{path}: cannot write ({e.strerror})") from None


def save_overlay(path: str, image_bgr: np.ndarray, pred: np.ndarray, palette_rgb: Sequence[Sequence[int]],
                 gt: np.ndarray | None = None, class_names: Sequence[str] | None = None, alpha: float = 0.5,
                 ignore_index: int = 255) -> None:
    write_png(path, render(image_bgr, pred, palette_rgb, gt, class_names, alpha, ignore_index))
