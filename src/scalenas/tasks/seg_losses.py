"""Segmentation losses of HRNet-Seg (tasks.md §2.3): cross-entropy and OHEM cross-entropy.

The network's logits are at 1/4 resolution; both losses upsample them bilinearly to the label size
first, so the loss is taken on every labelled pixel.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def upsample_to(logits: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=align_corners)


class SegCrossEntropy(nn.Module):
    """Cross-entropy with an ignore index and optional per-class weights (weighted mean, as
    ``nn.CrossEntropyLoss``). Returns 0 (still attached to the graph) when no pixel is labelled."""

    def __init__(self, ignore_index: int = 255, weight: Sequence[float] | torch.Tensor | None = None,
                 align_corners: bool = False):
        super().__init__()
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.device, non_blocking=True).long()
        logits = upsample_to(logits, target.shape[-2:], self.align_corners)
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        w = None if self.weight is None else self.weight.to(logits.dtype)
        return F.cross_entropy(logits, target, weight=w, ignore_index=self.ignore_index)


class OhemCrossEntropy(nn.Module):
    """Online hard example mining CE, as HRNet-Seg:

    1. per-pixel (weighted) CE and the softmax probability of the GT class, on the labelled pixels;
    2. sort the probabilities ascending; threshold = max(``thresh``, prob at index min(min_kept, n - 1));
    3. the loss is the plain mean of the per-pixel CE over the pixels whose GT probability is below it.

    So at least ``min_kept`` of the hardest pixels are kept (when that many exist) and every pixel
    the model is less than ``thresh`` sure of. ``last_kept`` holds the kept fraction of the last call.
    """

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7, min_kept: int = 100000,
                 weight: Sequence[float] | torch.Tensor | None = None, align_corners: bool = False):
        super().__init__()
        self.ignore_index = ignore_index
        self.thresh = float(thresh)
        self.min_kept = max(1, int(min_kept))
        self.align_corners = align_corners
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.last_kept = 0.0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.device, non_blocking=True).long()
        logits = upsample_to(logits, target.shape[-2:], self.align_corners)
        w = None if self.weight is None else self.weight.to(logits.dtype)
        pixel_loss = F.cross_entropy(logits, target, weight=w, ignore_index=self.ignore_index,
                                     reduction="none").reshape(-1)
        valid = (target != self.ignore_index).reshape(-1)
        n = int(valid.sum())
        if n == 0:
            self.last_kept = 0.0
            return logits.sum() * 0.0
        with torch.no_grad():
            # GT-class probability; ignored pixels are looked up at class 0 and then dropped
            safe = target.masked_fill(target == self.ignore_index, 0).unsqueeze(1)
            prob = logits.detach().float().softmax(1).gather(1, safe).reshape(-1)[valid]
            # the k-th smallest probability (0-based k) without a full sort
            kth = torch.kthvalue(prob, min(self.min_kept, n - 1) + 1).values
            threshold = max(self.thresh, float(kth))
            keep = prob < threshold
        losses = pixel_loss[valid][keep]
        self.last_kept = float(keep.sum()) / n
        if losses.numel() == 0:  # every pixel already at or above the threshold: nothing to learn
            return logits.sum() * 0.0
        return losses.mean()
