"""Semantic segmentation task (HRNet-Seg pipeline, tasks.md §2): data, loss, evaluation, prediction.

Splits: "train", "val", "test" map to folders via ``task.splits``; "search" is a deterministic
hold-out of ``task.search_holdout`` training images that ``build_dataset("train", ...)`` never
returns, so architecture search is not scored on images the supernet trained on.

Metrics are in percent (0-100): mIoU (the primary metric), pixel_acc, mean_acc, ``IoU.<class>``
and per-size-bucket IoU ``iou_small`` / ``iou_medium`` / ``iou_large`` (see ``seg_metrics``).
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch.utils.data import DataLoader, Dataset, Subset

from scalenas.config import Strict
from scalenas.data import cityscapes
from scalenas.data.seg_folder import INFO_FILE, SegDataset, SegInfo, SegItem, scan_folder
from scalenas.data.seg_transforms import TrainAugment, normalize, scale_choices
from scalenas.errors import ScaleNASError
from scalenas.space.heads import HeadSpec
from scalenas.tasks.base import TASKS, Task, eval_slice, holdout_indices
from scalenas.tasks.seg_inference import infer_probs
from scalenas.tasks.seg_losses import OhemCrossEntropy, SegCrossEntropy
from scalenas.tasks.seg_metrics import DEFAULT_BUCKETS, SegConfusion, size_bucket_map
from scalenas.utils.runtime import loader_workers, rank_and_world
from scalenas.viz.seg_overlay import save_overlay

SPLITS = ("train", "val", "test")


class SegConfig(Strict):
    """The ``task:`` section for segmentation."""

    name: Literal["segmentation"] = "segmentation"
    # data
    format: Literal["folder", "cityscapes"] = "folder"
    root: str
    info_file: str = INFO_FILE  # folder format: class names / palette / layout, relative to root
    img_dir: str | None = None  # folder format: override dataset_info.json's layout
    ann_dir: str | None = None
    img_suffix: str | None = None
    ann_suffix: str | None = None
    splits: dict[str, str] = Field(default_factory=lambda: {s: s for s in SPLITS})  # split -> folder name
    ignore_index: int | None = Field(None, ge=0, le=255)  # None: the dataset's (255)
    search_holdout: int = Field(0, ge=0)  # train images held out as the "search" split
    holdout_seed: int = 0
    # training augmentation (HRNet-Seg): long side = base_size * s, s in scale_range by scale_step
    crop_size: tuple[int, int] = (512, 1024)  # H, W
    base_size: int | None = Field(None, gt=0)  # None: scale the native image size
    scale_range: tuple[float, float] = (0.5, 2.0)
    scale_step: float = Field(0.1, gt=0)
    flip: bool = True
    # loss
    ohem: bool = False
    ohem_thresh: float = Field(0.7, gt=0, le=1)
    ohem_min_kept: int = Field(100000, ge=1)
    class_weights: bool = False  # per-class CE weights from the dataset (Cityscapes: HRNet's)
    align_corners: bool = False  # bilinear upsampling of the head and of the logits
    # evaluation
    test_mode: Literal["single", "flip", "multiscale"] = "single"
    test_scales: list[float] = Field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], min_length=1)
    eval_batch_size: int = Field(1, ge=1)
    workers: int = Field(2, ge=0)  # DataLoader workers (training loaders and evaluation)
    vis_images: int = Field(4, ge=0)  # overlays written by evaluate() when given out_dir
    size_buckets: tuple[int, int] = DEFAULT_BUCKETS  # object area thresholds (px): small < t0 <= medium < t1

    @model_validator(mode="after")
    def _check(self):
        if any(v <= 0 or v % 32 for v in self.crop_size):
            raise ValueError(f"crop_size {list(self.crop_size)}: height and width must be positive multiples of 32")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range {list(self.scale_range)}: need 0 < min <= max")
        if not 0 < self.size_buckets[0] < self.size_buckets[1]:
            raise ValueError(f"size_buckets {list(self.size_buckets)}: need 0 < small/medium < medium/large")
        if any(s <= 0 for s in self.test_scales):
            raise ValueError("test_scales: scales must be positive")
        bad = set(self.splits) - set(SPLITS)
        if bad:
            raise ValueError(f"splits: unknown split(s) {sorted(bad)}; use {', '.join(SPLITS)} "
                             f"('search' is carved out of train by search_holdout)")
        return self


def _buckets_extra(label: np.ndarray, inst: np.ndarray | None, thresholds, ignore_index: int) -> dict:
    """Size-bucket map for evaluation, computed in the loader workers."""
    return {"bucket": size_bucket_map(label, inst, thresholds, ignore_index)}


def _single(samples: list) -> dict:
    return samples[0]


@TASKS.register
class SegmentationTask(Task):
    Config = SegConfig
    name = "segmentation"
    metric_name = "mIoU"

    def __init__(self, cfg: SegConfig):
        self.cfg = cfg
        if not os.path.isdir(cfg.root):
            raise ScaleNASError(f"task.root: dataset folder {cfg.root} not found")
        if cfg.format == "cityscapes":
            if cfg.ignore_index not in (None, cityscapes.IGNORE):
                raise ScaleNASError("task.ignore_index: Cityscapes uses 255")
            self.info = cityscapes.cityscapes_info()
            self._tables = cityscapes.label_tables()
        else:
            path = os.path.join(cfg.root, cfg.info_file)
            info = SegInfo.load(path)
            over = {k: getattr(cfg, k) for k in ("img_dir", "ann_dir", "img_suffix", "ann_suffix", "ignore_index")
                    if getattr(cfg, k) is not None}
            self.info = SegInfo.parse(info.model_dump() | over, f"{path} (with task overrides)") if over else info
            self._tables = None  # SegDataset builds the table from the info
        if cfg.class_weights and self.info.class_weights is None:
            raise ScaleNASError(f"task.class_weights: dataset {self.info.name} defines no class_weights "
                                f"(add them to {cfg.info_file})")
        self._items: dict[str, list[SegItem]] = {}
        self._criterion = None

    # ---------------------------------------------------------------------------------- dataset info
    @property
    def head(self) -> HeadSpec:
        return HeadSpec(kind="seg", num_classes=self.info.num_classes, align_corners=self.cfg.align_corners)

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.cfg.crop_size[0]), int(self.cfg.crop_size[1])

    @property
    def class_names(self) -> list[str]:
        return list(self.info.classes)

    @property
    def ignore_index(self) -> int:
        return self.info.ignore_index

    # -------------------------------------------------------------------------------------- datasets
    def _scan(self, split: str) -> list[SegItem]:
        folder = self.cfg.splits.get(split)
        if folder is None:
            raise ScaleNASError(f"task.splits: no folder configured for split {split!r}")
        require = split != "test"  # a test split may come without masks (prediction only)
        if self.cfg.format == "cityscapes":
            return cityscapes.scan_cityscapes(self.cfg.root, folder, require)
        return scan_folder(self.cfg.root, self.info, folder, require)

    def items(self, split: str) -> list[SegItem]:
        """The samples of ``split`` ("train", "search", "val", "test"), cached after the first scan."""
        if split not in self._items:
            if split in ("train", "search"):
                full = self._scan("train")
                held = set(holdout_indices(len(full), self.cfg.search_holdout, self.cfg.holdout_seed))
                self._items["train"] = [it for i, it in enumerate(full) if i not in held]
                self._items["search"] = [full[i] for i in sorted(held)]
            elif split in SPLITS:
                self._items[split] = self._scan(split)
            else:
                raise ScaleNASError(f"split {split!r}: unknown; use train, search, val or test")
        if split == "search" and not self._items["search"]:
            raise ScaleNASError("split 'search' is empty: set task.search_holdout to the number of training "
                                "images to hold out for architecture search")
        return self._items[split]

    def _dataset(self, split: str, train: bool, buckets: bool = False) -> SegDataset:
        cfg = self.cfg
        transform = None
        if train:
            transform = TrainAugment(tuple(cfg.crop_size), tuple(scale_choices(*cfg.scale_range, cfg.scale_step)),
                                     cfg.base_size, cfg.flip, self.ignore_index)
        extra = functools.partial(_buckets_extra, thresholds=tuple(cfg.size_buckets),
                                  ignore_index=self.ignore_index) if buckets else None
        return SegDataset(self.items(split), self.info, self._tables, transform, extra)

    def build_dataset(self, split: str, train: bool) -> Dataset:
        return self._dataset(split, train)

    def collate(self, samples: list[dict]) -> dict:
        shapes = {tuple(s["image"].shape) for s in samples}
        if len(shapes) > 1:
            raise ScaleNASError(f"collate: images of different sizes {sorted(shapes)} in one batch "
                                f"({', '.join(s['name'] for s in samples[:4])}); use train=True crops or batch size 1")
        return torch.utils.data.default_collate(samples)

    # ------------------------------------------------------------------------------------------ loss
    @property
    def criterion(self) -> torch.nn.Module:
        if self._criterion is None:
            cfg = self.cfg
            w = self.info.class_weights if cfg.class_weights else None
            if cfg.ohem:
                self._criterion = OhemCrossEntropy(self.ignore_index, cfg.ohem_thresh, cfg.ohem_min_kept, w,
                                                   cfg.align_corners)
            else:
                self._criterion = SegCrossEntropy(self.ignore_index, w, cfg.align_corners)
        return self._criterion

    def loss(self, outputs: Any, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if not isinstance(outputs, torch.Tensor) or outputs.dim() != 4:
            raise ScaleNASError(f"segmentation loss: expected logits (B, {self.info.num_classes}, h, w), "
                                f"got {type(outputs).__name__} {tuple(getattr(outputs, 'shape', ()))}")
        loss = self.criterion(outputs, batch["label"])
        logs = {"ce": float(loss.detach())}
        if self.cfg.ohem:
            logs["ohem_kept"] = self.criterion.last_kept
        return loss, logs

    # ------------------------------------------------------------------------------------ inference
    def infer(self, forward: Callable, x: torch.Tensor, out_size=None, mode: str | None = None) -> torch.Tensor:
        """Summed class probabilities of a normalised batch under the configured test mode."""
        cfg = self.cfg
        return infer_probs(forward, x, mode or cfg.test_mode, cfg.test_scales, tuple(cfg.crop_size),
                           cfg.base_size, out_size, cfg.align_corners)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str, device: torch.device | str = "cpu",
                 max_images: int | None = None, out_dir: str | None = None, *,
                 first_image: int = 0) -> dict[str, float]:
        """Confusion-matrix metrics over ``split`` (sharded over DDP ranks, reduced on all of them)."""
        ds = self._dataset(split, train=False, buckets=True)
        if not ds.has_labels:
            raise ScaleNASError(f"split {split!r} has no masks ({self.cfg.splits.get(split, split)}); "
                                f"it can be predicted, not evaluated")
        rank, world = rank_and_world()
        mine = list(range(len(ds))[eval_slice(max_images, first_image)][rank::world])
        device = torch.device(device)
        channels_last = any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
                            and not p.is_contiguous() for p in model.parameters())
        was_training = model.training
        model.eval()
        conf = SegConfusion(self.info.num_classes, self.ignore_index, device)
        workers = loader_workers(self.cfg.workers) if len(mine) >= 8 else 0
        loader = DataLoader(Subset(ds, mine), batch_size=1, shuffle=False, num_workers=workers,
                            collate_fn=_single)
        pending: list[dict] = []

        def flush():
            x = torch.stack([s["image"] for s in pending]).to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            labels = torch.stack([s["label"] for s in pending]).to(device)
            pred = self.infer(model, x, out_size=tuple(labels.shape[-2:])).argmax(1)
            conf.update(pred, labels, torch.stack([s["bucket"] for s in pending]).to(device))
            if out_dir:
                for s, p in zip(pending, pred):
                    if s["index"] < self.cfg.vis_images:
                        self._write_vis(ds, s, p, out_dir, split)
            pending.clear()

        try:
            for s in loader:
                # batch consecutive images of one size; a size change or a full batch flushes
                if pending and (len(pending) >= self.cfg.eval_batch_size
                                or s["image"].shape != pending[0]["image"].shape
                                or s["label"].shape != pending[0]["label"].shape):
                    flush()
                pending.append(s)
            if pending:
                flush()
        finally:
            model.train(was_training)
        return conf.compute(self.class_names)

    def _write_vis(self, ds: SegDataset, sample: dict, pred: torch.Tensor, out_dir: str, split: str) -> None:
        image, label, _ = ds.read(sample["index"])
        name = sample["name"].replace("/", "__")
        save_overlay(os.path.join(out_dir, f"{split}_{name}.png"), image, pred.to(torch.uint8).cpu().numpy(),
                     self.info.palette, label, self.class_names, ignore_index=self.ignore_index)

    def predict(self, forward: Callable[[torch.Tensor], Any], image_bgr, mode: str | None = None, **kw) -> dict:
        """``{"mask": (H, W) uint8 numpy array of class ids, "class_pixels": {class: count}, "size": [H, W]}``.

        The mask is a numpy array (write it with OpenCV, or ``.tolist()`` it for JSON); the rest is JSON-able.
        """
        image = np.asarray(image_bgr)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ScaleNASError(f"predict: expected an (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}")
        x = torch.from_numpy(normalize(image))[None]
        if isinstance(forward, torch.nn.Module):
            p = next(forward.parameters(), None)
            if p is not None:
                x = x.to(p.device)
        with torch.no_grad():
            mask = self.infer(forward, x, mode=mode).argmax(1)[0].to(torch.uint8).cpu().numpy()
        counts = np.bincount(mask.ravel(), minlength=self.info.num_classes)
        return {"mask": mask, "size": [int(image.shape[0]), int(image.shape[1])],
                "class_pixels": {self.class_names[c]: int(counts[c]) for c in np.flatnonzero(counts)}}

    def visualise(self, image_bgr, prediction: dict, path: str) -> None:
        save_overlay(path, np.asarray(image_bgr), prediction["mask"], self.info.palette,
                     class_names=self.class_names, ignore_index=self.ignore_index)
