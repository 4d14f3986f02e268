"""The task contract shared by the training engine, the search evaluator and deployment.

A task is a small object built from plain config data. The engine calls ``build_dataset`` and
``loss``; the search evaluator calls ``build_dataset`` (calibration images) and ``evaluate``;
deployment calls ``evaluate``, ``predict`` and ``visualise``. Batches are dicts of tensors (and
lists for per-sample metadata) whose ``"image"`` entry is a float (B, 3, H, W) normalised tensor.
"""
from __future__ import annotations

import abc
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from scalenas.config import validate_section
from scalenas.errors import ScaleNASError
from scalenas.space.heads import HeadSpec
from scalenas.utils.registry import Registry


class Task(abc.ABC):
    """Subclasses define ``Config``, a :class:`scalenas.config.Strict` model of their ``task:`` config
    section, and are built with ``from_config(dict)`` so that an unknown key or a wrong type is rejected
    naming the key. A subclass registers with ``@TASKS.register`` under its ``name``."""

    Config: type = None  # a pydantic.BaseModel subclass
    #: registry name, e.g. "segmentation", "pose-bottomup"
    name: str = ""
    #: name of the primary metric in ``evaluate``'s result (higher is better), e.g. "mIoU" or "AP"
    metric_name: str = ""
    #: what one training sample is, for the run header's epoch arithmetic ("images"; top-down: person crops)
    sample_unit: str = "images"

    @classmethod
    def from_config(cls, cfg: dict | Any) -> "Task":
        return cls(validate_section(cls.Config, cfg, "task"))

    @property
    @abc.abstractmethod
    def head(self) -> HeadSpec:
        """The head this task trains (number of classes or keypoints taken from the dataset info)."""

    @property
    def input_hw(self) -> tuple[int, int]:
        """The (H, W) the network is fed in training; FLOPs and latency are counted at it. Tasks
        whose input size is in their config say it here."""
        raise ScaleNASError(f"search.input_hw: task {self.name!r} does not say its input size; set search.input_hw")

    @abc.abstractmethod
    def build_dataset(self, split: str, train: bool) -> Dataset:
        """The dataset of ``split`` ("train", "search", "val", "test"); ``train`` selects training augmentation.

        Samples are dicts; ``collate`` turns a list of them into a batch.
        """

    def collate(self, samples: list[dict]) -> dict:
        return torch.utils.data.default_collate(samples)

    @abc.abstractmethod
    def loss(self, outputs: Any, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss and its named components (floats, for logging)."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, split: str, device: torch.device | str = "cpu",
                 max_images: int | None = None, out_dir: str | None = None, *,
                 first_image: int = 0) -> dict[str, float]:
        """Run ``model`` (eval mode) over ``split`` and return metrics, including ``self.metric_name``:
        over the images ``eval_slice(max_images, first_image)`` of the split (all of them by default)."""

    def num_eval_images(self, split: str) -> int:
        """How many images ``evaluate`` scores on ``split`` (what its ``max_images`` counts): the
        dataset's length, unless a sample is not an image (a top-down task's samples are person crops)."""
        return len(self.build_dataset(split, train=False))

    def check_dependencies(self) -> None:
        """Raise :class:`ScaleNASError` (one line) if an optional package this config needs at evaluation
        time is missing. Called when training and search start, so a multi-day run cannot end in an
        import error; tasks whose evaluation needs only the base install keep this no-op."""

    def predict(self, forward: Callable[[torch.Tensor], Any], image_bgr, **kw) -> dict:
        """Decode one image (H, W, 3 uint8 BGR) into a JSON-able prediction. ``forward`` maps a
        normalised (1, 3, h, w) tensor to the head outputs, so it may be a torch module or an ONNX session."""
        raise NotImplementedError(f"task {self.name} has no predict()")

    def visualise(self, image_bgr, prediction: dict, path: str) -> None:
        """Write an overlay PNG of ``prediction`` on the image."""
        raise NotImplementedError(f"task {self.name} has no visualise()")


def eval_slice(max_images: int | None, first_image: int = 0) -> slice:
    """The images of a split that ``Task.evaluate`` scores: ``max_images`` of them from ``first_image``
    on (None: to the end). A nonzero ``first_image`` scores a later part of the split, e.g. the second
    of two disjoint halves (the study's split-half reliability)."""
    if first_image < 0:
        raise ScaleNASError(f"first_image: {first_image} is negative")
    return slice(first_image, None if max_images is None else first_image + max_images)


def holdout_indices(n: int, k: int, seed: int) -> list[int]:
    """The ``k`` of ``n`` training items held out as the architecture-search split: a sorted,
    deterministic draw (a pure function of n, k and seed), so every process and resume agrees."""
    if k == 0:
        return []
    if k >= n:
        raise ScaleNASError(f"task.search_holdout: {k} held-out images leave none of the {n} training images "
                            f"for training")
    import numpy as np

    return sorted(np.random.default_rng(seed).permutation(n)[:k].tolist())


#: tasks by ``Task.name``; each module of ``scalenas.tasks`` registers its own on the first lookup
TASKS = Registry("task", "task.name", package="scalenas.tasks")


def build_task(task_cfg: dict) -> Task:
    """The task of a ``task:`` config section, by its ``name``."""
    if not isinstance(task_cfg, dict) or "name" not in task_cfg:
        raise ScaleNASError("task.name: missing (e.g. segmentation, pose-bottomup)")
    return TASKS.get(task_cfg["name"]).from_config(task_cfg)
