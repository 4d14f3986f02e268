"""What the bottom-up and top-down pose tasks share: COCO keypoint splits and the stacking collate.

``train``, ``val``, ``test`` come from the task config; ``search`` is ``search_holdout`` training images
held out (a deterministic draw, :func:`holdout_indices`) so the architecture search ranks subnets on
images the supernet never trained on, with their annotations, so AP can be computed on them.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from scalenas.config import Strict
from scalenas.data.coco_keypoints import CocoKeypoints
from scalenas.errors import ScaleNASError
from scalenas.tasks.base import holdout_indices


class SplitData(Strict):
    """One split: an image folder and its COCO keypoint annotation file (relative to ``root``)."""

    images: str
    annotations: str


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
