"""Segmentation test-time inference (HRNet-Seg ``inference`` / ``multi_scale_inference``, tasks.md §2.5).

Modes:
  * ``single``: one forward at scale 1;
  * ``flip``: scale 1, plus the horizontally flipped image;
  * ``multiscale``: every scale of ``scales``, each with flip; scales <= 1 run on the whole resized
    image, larger ones with a sliding window of the training crop size and a stride of 2/3 of it
    (HRNet-Seg's base class), averaging overlapping windows.

Aggregation: the **softmax probabilities** of every forward (upsampled bilinearly to the input size,
then to the output size) are summed, and the argmax of the sum is the prediction. HRNet-Seg sums
exp(logits) instead; summing probabilities keeps each forward's vote bounded.

Inputs are normalised (B, 3, H, W) tensors. Each forward input is padded bottom/right to a multiple of
32 (the 1/32 branch) with the normalised value of a black pixel -- the value the training pad uses --
and its output is cropped back.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from scalenas.data.seg_transforms import MEAN_RGB, STD_RGB, scaled_size
from scalenas.errors import ScaleNASError

TEST_MODES = ("single", "flip", "multiscale")
_BLACK = torch.from_numpy(-MEAN_RGB / STD_RGB).view(1, 3, 1, 1)  # a 0-valued pixel after normalisation


def _as_logits(out: Any) -> torch.Tensor:
    """Head outputs -> a float logits tensor (accepts a tensor, a numpy array, or a sequence whose
    first entry is the logits, e.g. an ONNX session's output list)."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise ScaleNASError(f"segmentation forward: expected logits of shape (B, classes, h, w), "
                            f"got {type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
    return out.float()


def pad_to_multiple(x: torch.Tensor, multiple: int = 32, min_hw: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Pad bottom/right with normalised black up to a multiple of ``multiple`` (and at least ``min_hw``)."""
    h, w = x.shape[-2:]
    ph = max(math.ceil(h / multiple) * multiple, min_hw[0]) - h
    pw = max(math.ceil(w / multiple) * multiple, min_hw[1]) - w
    if ph == 0 and pw == 0:
        return x
    out = _BLACK.to(x.device, x.dtype).expand(x.shape[0], 3, h + ph, w + pw).clone()
    out[..., :h, :w] = x
    return out


def _probs(forward: Callable, x: torch.Tensor, flip: bool, align_corners: bool) -> torch.Tensor:
    """Softmax probabilities (B, C, h, w) of one padded forward (plus its flip: the sum of both)."""
    h, w = x.shape[-2:]
    total = None
    for flipped in ((False, True) if flip else (False,)):
        xi = x.flip(-1) if flipped else x
        xp = pad_to_multiple(xi)
        logits = _as_logits(forward(xp)).to(x.device)
        logits = F.interpolate(logits, size=xp.shape[-2:], mode="bilinear", align_corners=align_corners) \
            if logits.shape[-2:] != xp.shape[-2:] else logits
        p = logits[..., :h, :w].softmax(1)
        p = p.flip(-1) if flipped else p
        total = p if total is None else total + p
    return total


def _sliding(forward: Callable, x: torch.Tensor, crop: tuple[int, int], flip: bool,
             align_corners: bool) -> torch.Tensor:
    """Average of window probabilities over a grid of ``crop`` windows at stride 2/3 of the crop."""
    h, w = x.shape[-2:]
    ch, cw = crop
    xp = pad_to_multiple(x, 1, (ch, cw))  # at least one full window
    H, W = xp.shape[-2:]
    sh, sw = max(1, math.ceil(ch * 2 / 3)), max(1, math.ceil(cw * 2 / 3))
    ys = sorted({min(r * sh, H - ch) for r in range(math.ceil(max(H - ch, 0) / sh) + 1)})
    xs = sorted({min(c * sw, W - cw) for c in range(math.ceil(max(W - cw, 0) / sw) + 1)})
    acc = cnt = None
    for y0 in ys:
        for x0 in xs:
            p = _probs(forward, xp[..., y0:y0 + ch, x0:x0 + cw], flip, align_corners)
            if acc is None:
                acc = p.new_zeros(p.shape[0], p.shape[1], H, W)
                cnt = p.new_zeros(1, 1, H, W)
            acc[..., y0:y0 + ch, x0:x0 + cw] += p
            cnt[..., y0:y0 + ch, x0:x0 + cw] += 1
    return (acc / cnt)[..., :h, :w]


def infer_probs(forward: Callable, x: torch.Tensor, mode: str = "single",
                scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
                crop_size: tuple[int, int] = (512, 1024), base_size: int | None = None,
                out_size: tuple[int, int] | None = None, align_corners: bool = False) -> torch.Tensor:
    """Summed class probabilities (B, C, *out_size) of the normalised batch ``x``.

    Scale s resizes the input to long side ``base_size * s`` (or its own size * s without a base size).
    ``out_size`` defaults to the input size (the label's resolution).
    """
    if mode not in TEST_MODES:
        raise ScaleNASError(f"task.test_mode: unknown mode {mode!r}; choose one of {', '.join(TEST_MODES)}")
    h, w = x.shape[-2:]
    out_size = tuple(out_size or (h, w))
    flip = mode != "single"
    total = None
    for s in (scales if mode == "multiscale" else (1.0,)):
        size = scaled_size(h, w, float(s), base_size)
        xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if mode == "multiscale" and s > 1.0:
            p = _sliding(forward, xs, crop_size, flip, align_corners)
        else:
            p = _probs(forward, xs, flip, align_corners)
        if tuple(p.shape[-2:]) != out_size:
            p = F.interpolate(p, size=out_size, mode="bilinear", align_corners=False)
        total = p if total is None else total + p
    return total
