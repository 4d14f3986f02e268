"""Segmentation metrics, HRNet-Seg / Cityscapes convention (tasks.md §2.6). All values in percent.

A C x C confusion matrix ``bincount(gt * C + pred)`` over the valid (non-ignore) pixels is summed over
the dataset, and all-reduced across ranks when torch.distributed is initialised. Then per class
IoU_c = TP_c / max(1, GT_c + Pred_c - TP_c); mIoU is the plain mean over **all** classes (a class
absent from both GT and prediction counts as 0, unlike torchmetrics' macro average, which skips it);
pixel accuracy = sum TP / sum GT; mean accuracy = mean_c TP_c / max(1, GT_c).

Per-size-bucket IoU (``iou_small`` / ``iou_medium`` / ``iou_large``): every labelled pixel belongs
to a GT region whose area in pixels (at the label's resolution) puts it in a bucket: small < t0 <= medium
< t1 <= large, with (t0, t1) = (32^2, 96^2) by default as in COCO. Regions are
  * the **instances** of an instance-id map when the dataset has one (the synthetic data records one;
    pixels outside every instance, i.e. background, belong to no bucket), otherwise
  * the **8-connected components of each GT class** (every class, "stuff" included).
A bucket keeps its own confusion matrix over its pixels only; its IoU is the mean, over the classes
with GT pixels in that bucket, of TP / (GT + Pred - TP) restricted to those pixels. Predictions
outside the bucket's pixels do not count, so it measures how well objects of that size are
recovered, not false alarms elsewhere. A bucket with no pixels gives NaN.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

BUCKETS = ("small", "medium", "large")
DEFAULT_BUCKETS = (32 * 32, 96 * 96)


def size_bucket_map(label: np.ndarray, instances: np.ndarray | None = None,
                    thresholds: tuple[int, int] = DEFAULT_BUCKETS, ignore_index: int = 255) -> np.ndarray:
    """(H, W) int8: 0 small, 1 medium, 2 large, -1 no bucket (ignore, or outside every instance)."""
    t = np.asarray(thresholds, np.int64)
    out = np.full(label.shape, -1, np.int8)
    if instances is not None:
        ids = instances.astype(np.intp, copy=False)
        area = np.bincount(ids.ravel())
        bucket_of = np.searchsorted(t, area, side="right").astype(np.int8)
        bucket_of[0] = -1  # id 0: no instance
        out = bucket_of[ids]
    else:
        counts = np.bincount(label.ravel(), minlength=256)
        for c in np.flatnonzero(counts):
            if c == ignore_index:
                continue
            n, comp, stats, _ = cv2.connectedComponentsWithStats((label == c).view(np.uint8), connectivity=8)
            bucket_of = np.searchsorted(t, stats[:, cv2.CC_STAT_AREA], side="right").astype(np.int8)
            bucket_of[0] = -1  # component 0 is everything outside class c
            b = bucket_of[comp]
            np.copyto(out, b, where=b >= 0)
    out[label == ignore_index] = -1
    return out


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int = 255,
                     weight_groups: torch.Tensor | None = None, num_groups: int = 1) -> torch.Tensor:
    """int64 (C, C) confusion [gt, pred] over valid pixels; with ``weight_groups`` (same shape, -1 =
    skip) a (num_groups, C, C) stack, one matrix per group (used for size buckets)."""
    C = num_classes
    pred = pred.reshape(-1).long()
    label = label.reshape(-1).long()
    valid = label != ignore_index
    idx = label * C + pred
    if weight_groups is None:
        return torch.bincount(idx[valid], minlength=C * C).reshape(C, C)
    g = weight_groups.reshape(-1).long()
    valid &= g >= 0
    return torch.bincount(g[valid] * (C * C) + idx[valid], minlength=num_groups * C * C).reshape(num_groups, C, C)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """HRNet-Seg IoU: TP / max(1, GT + Pred - TP), as fractions."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    return tp / np.maximum(1.0, cm.sum(1) + cm.sum(0) - tp)


def metrics_from_confusion(cm: np.ndarray, class_names: list[str] | None = None) -> dict[str, float]:
    """mIoU, pixel_acc, mean_acc and ``IoU.<class>``, in percent."""
    cm = np.asarray(cm, np.float64)
    tp, gt = np.diag(cm), cm.sum(1)
    iou = iou_per_class(cm)
    out = {"mIoU": 100 * float(iou.mean()),
           "pixel_acc": 100 * float(tp.sum() / max(1.0, gt.sum())),
           "mean_acc": 100 * float((tp / np.maximum(1.0, gt)).mean())}
    names = class_names or [str(i) for i in range(len(iou))]
    out.update({f"IoU.{n}": 100 * float(v) for n, v in zip(names, iou)})
    return out


def bucket_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes with GT pixels in this bucket's confusion matrix (NaN if none)."""
    cm = np.asarray(cm, np.float64)
    present = cm.sum(1) > 0
    if not present.any():
        return float("nan")
    return 100 * float(iou_per_class(cm)[present].mean())


class SegConfusion:
    """Dataset-level accumulator: ``update`` per batch, ``compute`` at the end (all-reduces under DDP)."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu"):
        self.C = num_classes
        self.ignore_index = ignore_index
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.bucket_cm = torch.zeros(len(BUCKETS), num_classes, num_classes, dtype=torch.int64, device=device)
        self.images = torch.zeros((), dtype=torch.int64, device=device)
        self._reduced = False

    def update(self, pred: torch.Tensor, label: torch.Tensor, buckets: torch.Tensor | None = None) -> None:
        """``pred`` and ``label``: (B, H, W) or (H, W) class ids; ``buckets`` the matching size-bucket map."""
        dev = self.cm.device
        pred, label = pred.to(dev), label.to(dev)
        self.cm += confusion_matrix(pred, label, self.C, self.ignore_index)
        if buckets is not None:
            self.bucket_cm += confusion_matrix(pred, label, self.C, self.ignore_index, buckets.to(dev), len(BUCKETS))
        self.images += pred.shape[0] if pred.dim() == 3 else 1

    def all_reduce(self) -> None:
        """Sum the counts of all ranks (once; every rank must call it)."""
        if self._reduced:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for t in (self.cm, self.bucket_cm, self.images):
                torch.distributed.all_reduce(t)
        self._reduced = True

    def compute(self, class_names: list[str] | None = None, reduce: bool = True) -> dict[str, float]:
        if reduce:
            self.all_reduce()
        out = metrics_from_confusion(self.cm.cpu().numpy(), class_names)
        bcm = self.bucket_cm.cpu().numpy()
        for b, name in enumerate(BUCKETS):
            out[f"iou_{name}"] = bucket_iou(bcm[b])
        out["images"] = float(self.images.item())
        return out


def majority_class_miou(dataset, num_classes: int, ignore_index: int = 255) -> float:
    """mIoU (%) of the chance baseline that predicts the most frequent class everywhere: its IoU is
    that class's pixel share, every other class scores 0. Reference point for short training runs."""
    counts = np.zeros(num_classes)
    for i in range(len(dataset)):
        lab = np.asarray(dataset[i]["label"]).ravel()
        lab = lab[lab != ignore_index]
        counts += np.bincount(lab, minlength=num_classes)[:num_classes]
    return 100.0 * counts.max() / max(counts.sum(), 1) / num_classes
