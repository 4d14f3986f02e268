"""What the bottom-up and top-down pose tasks share: the dataset part of their configs
(:class:`PoseDataConfig`), COCO keypoint splits and the stacking collate.

``train``, ``val``, ``test`` come from the task config; ``search`` is ``search_holdout`` training images
held out (a deterministic draw, :func:`holdout_indices`) so the architecture search ranks subnets on
images the supernet never trained on, with their annotations, so AP can be computed on them.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from scalenas.config import Strict
from scalenas.data.coco_keypoints import CocoKeypoints
from scalenas.errors import ScaleNASError
from scalenas.tasks.base import holdout_indices

_WARNED: dict = {}  # once per process: the registry ``warnings`` keeps for the data_root deprecation


class SplitData(Strict):
    """One split: an image folder and its COCO keypoint annotation file (relative to ``root``)."""

    images: str
    annotations: str


class PoseDataConfig(Strict):
    """The dataset fields of a pose task config (bottom-up and top-down derive from it)."""

    #: the task's registered name; each task config narrows it to its own literal
    name: str
    #: folder the split paths (and a relative keypoints or detections file) are relative to (absolute
    #: paths ignore it); ``data_root`` before
    root: str = ""
    train: SplitData | None = None
    val: SplitData | None = None
    test: SplitData | None = None
    #: "coco", "crowdpose", a JSON/YAML dataset-info file (relative to root if not found as given),
    #: or an inline mapping (see scalenas.data.keypoint_info)
    keypoints: str | dict[str, Any] = "coco"
    #: which AP implementation: "coco" (pycocotools) or "crowdpose" (xtcocotools); default from keypoints
    metric: Literal["coco", "crowdpose"] | None = None
    #: training images held out as the architecture-search split (deterministic from search_seed)
    search_holdout: int = Field(0, ge=0)
    search_seed: int = 0
    #: image-reading processes for evaluate() (training loaders take their count from the train config)
    workers: int = Field(2, ge=0)
    #: overlays written by evaluate() when out_dir is given
    vis_images: int = Field(4, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _old_root_key(cls, data):
        # every task names its dataset folder ``root``; pose configs written before said ``data_root``
        if isinstance(data, dict) and "data_root" in data:
            if "root" in data:
                raise ValueError("data_root is the old name of root; give only root")
            # explicit location: the caller is pydantic's validator, whose file and source line say nothing
            warnings.warn_explicit("task.data_root is deprecated: rename it to task.root", FutureWarning,
                                   "scalenas", 0, registry=_WARNED)
            data = {("root" if k == "data_root" else k): v for k, v in data.items()}
        return data


def multiples_of_32(what: str, sizes: tuple[int, ...]) -> None:
    """Raise (inside a pydantic validator, which names the field) unless every size is a positive multiple
    of 32: the backbone's four branches run at strides 4, 8, 16 and 32, and a fusion adds maps of
    neighbouring branches, which only line up when the input divides by the coarsest stride."""
    if any(v <= 0 or v % 32 for v in sizes):
        must = "a positive multiple" if len(sizes) == 1 else "positive multiples"
        raise ValueError(f"{what} must be {must} of 32 (the backbone's coarsest branch is 1/32), "
                         f"got {sizes[0] if len(sizes) == 1 else list(sizes)}")


def collate(samples: list[dict]) -> dict:
    """Every field has a fixed shape per config, so the batch is a plain stack."""
    if not samples:
        raise ScaleNASError("collate: empty batch")
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}


class KeypointSplits:
    """Mixin for a pose task whose ``cfg`` has ``root``, ``train``/``val``/``test`` (:class:`SplitData`),
    ``search_holdout`` and ``search_seed``, and whose ``info`` is its ``KeypointInfo``. The task's
    ``__init__`` sets ``self._indexes = {}`` and ``self._holdout = None``."""

    def _path(self, p: str) -> str:
        return p if os.path.isabs(p) or not self.cfg.root else os.path.join(self.cfg.root, p)

    def index(self, split: str) -> CocoKeypoints:
        """The annotation index of ``split`` ("search" reads the train file)."""
        src = "train" if split == "search" else split
        if src not in ("train", "val", "test"):
            raise ScaleNASError(f"split {split!r}: expected one of train, search, val, test")
        if src not in self._indexes:
            sd = getattr(self.cfg, src)
            if sd is None:
                raise ScaleNASError(f"task.{src}: no {src} split configured (set task.{src}.images and "
                                    f"task.{src}.annotations)")
            self._indexes[src] = CocoKeypoints(self._path(sd.annotations), self._path(sd.images), self.info)
        return self._indexes[src]

    def search_ids(self) -> list[int]:
        """The held-out training images (sorted ids), a pure function of the train file and search_seed."""
        if self._holdout is None:
            n = self.cfg.search_holdout
            ids = self.index("train").ids_with_annotations() if n else []
            self._holdout = sorted(ids[i] for i in holdout_indices(len(ids), n, self.cfg.search_seed))
        return self._holdout

    def split_ids(self, split: str) -> list[int]:
        idx = self.index(split)
        if split == "search":
            ids = self.search_ids()
            if not ids:
                raise ScaleNASError("split 'search' is empty: set task.search_holdout to the number of "
                                    "training images to hold out")
            return ids
        if split == "train":
            held = set(self.search_ids())
            return [i for i in idx.ids_with_annotations() if i not in held]
        return list(idx.image_ids)
