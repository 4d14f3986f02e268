"""Image + mask folder datasets for segmentation (the mmseg-style path for custom data).

Layout (all names configurable)::

    <root>/dataset_info.json
    <root>/<img_dir>/<split>/**/<stem><img_suffix>      e.g. images/train/a/0001.jpg
    <root>/<ann_dir>/<split>/**/<stem><ann_suffix>      e.g. masks/train/a/0001.png
    <root>/<inst_dir>/<split>/**/<stem><inst_suffix>    optional instance-id maps (0 = no instance)

Masks hold one class id per pixel (8- or 16-bit PNG, or a palette PNG whose indices are the ids).
``label_map`` maps raw values to train ids (unlisted raw values are errors; map a value to the ignore
value to drop it). Every file problem raises ``ScaleNASError`` naming the file.

``dataset_info.json``::

    {"name": "roads", "classes": ["background", "road"], "palette": [[0, 0, 0], [128, 64, 128]],
     "ignore_index": 255, "label_map": {"0": 0, "255": 1}, "img_suffix": ".jpg", "ann_suffix": ".png"}
"""
from __future__ import annotations

import colorsys
import io
import json
import os
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator
from torch.utils.data import Dataset

from scalenas.config import Strict
from scalenas.data.seg_transforms import normalize
from scalenas.errors import ScaleNASError

INFO_FILE = "dataset_info.json"


class SegInfo(Strict):
    """Class names, colours and layout of a segmentation dataset (the contents of dataset_info.json)."""

    name: str = "custom"
    classes: list[str] = Field(min_length=1, max_length=255)
    palette: list[tuple[int, int, int]] | None = None  # RGB per class; generated when absent
    ignore_index: int = Field(255, ge=0, le=255)
    label_map: dict[int, int] | None = None  # raw mask value -> train id (or ignore_index)
    class_weights: list[float] | None = None  # per-class CE weights, used when task.class_weights is on
    img_dir: str = "images"
    ann_dir: str = "masks"
    inst_dir: str | None = None
    img_suffix: str = ".png"
    ann_suffix: str = ".png"
    inst_suffix: str = ".png"
    meta: dict = Field(default_factory=dict)  # free-form provenance (generator, seed, counts)

    @model_validator(mode="after")
    def _check(self):
        n = len(self.classes)
        if self.ignore_index < n:
            raise ValueError(f"ignore_index {self.ignore_index} is a class id (there are {n} classes); use 255")
        if self.palette is not None and len(self.palette) != n:
            raise ValueError(f"palette has {len(self.palette)} colours for {n} classes")
        if self.class_weights is not None and len(self.class_weights) != n:
            raise ValueError(f"class_weights has {len(self.class_weights)} values for {n} classes")
        for raw, tid in (self.label_map or {}).items():
            if raw < 0 or raw > 65535 or not (0 <= tid < n or tid == self.ignore_index):
                raise ValueError(f"label_map {raw} -> {tid}: raw values are 0..65535 and train ids "
                                 f"0..{n - 1} or {self.ignore_index}")
        if self.palette is None:
            self.palette = default_palette(n)
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @staticmethod
    def load(path: str) -> "SegInfo":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ScaleNASError(f"{path}: dataset info not found; a folder dataset needs a dataset_info.json "
                                f'with at least {{"classes": ["background", ...]}}') from None
        except (OSError, ValueError) as e:
            raise ScaleNASError(f"{path}: cannot read dataset info ({e})") from None
        return SegInfo.parse(data, path)

    @staticmethod
    def parse(data, where: str) -> "SegInfo":
        try:
            return SegInfo.model_validate(data)
        except ValidationError as e:
            msgs = []
            for err in e.errors():
                key = ".".join(str(x) for x in err["loc"]) or "(top level)"
                msgs.append(f"{key}: unknown key" if err["type"] == "extra_forbidden" else f"{key}: {err['msg']}")
            raise ScaleNASError(f"{where}: " + "; ".join(msgs)) from None


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours: golden-ratio hue steps, class 0 black (usually background)."""
    out = [(0, 0, 0)]
    for i in range(1, n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95 if i % 2 else 0.7)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out[:n]


# ----------------------------------------------------------------------------------------------- files
def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ScaleNASError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise ScaleNASError(f"{path}: empty file")
    return data


def _check_complete(path: str, data: bytes) -> None:
    """Reject truncated PNG/JPEG files even where the decoder would return a partly grey image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND", max(0, len(data) - 64)) < 0:
        raise ScaleNASError(f"{path}: truncated PNG (no IEND chunk at the end)")
    # 0xFFD9 cannot occur inside JPEG entropy-coded data (0xFF is byte-stuffed), so a missing end
    # marker near the end means the file was cut short.
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9", max(0, len(data) - 1024)) < 0:
        raise ScaleNASError(f"{path}: truncated JPEG (no end-of-image marker)")


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR; grey images are expanded, alpha dropped."""
    data = _read_bytes(path)
    _check_complete(path, data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ScaleNASError(f"{path}: cannot decode image (not an image file, or corrupt)")
    return img


def read_mask(path: str) -> np.ndarray:
    """(H, W) uint8 or uint16 raw mask values. Palette PNGs give their indices, not their colours."""
    data = _read_bytes(path)
    _check_complete(path, data)
    # OpenCV expands palette PNGs to BGR colours, losing the class indices; PIL keeps them.
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] == 3:
        try:
            from PIL import Image
        except ImportError:
            raise ScaleNASError(f"{path}: palette PNG masks need Pillow (pip install pillow), "
                                f"or save the mask as a single-channel PNG of class ids") from None
        try:
            m = np.asarray(Image.open(io.BytesIO(data)))
        except Exception as e:  # PIL raises many types for corrupt data
            raise ScaleNASError(f"{path}: cannot decode mask ({e})") from None
    else:
        m = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if m is None:
            raise ScaleNASError(f"{path}: cannot decode mask (not an image file, or corrupt)")
    if m.ndim == 3:
        # a grey mask saved as RGB is fine; real colours are not class ids
        if (m[..., :3] == m[..., :1]).all():
            m = m[..., 0]
        else:
            raise ScaleNASError(f"{path}: mask is a colour image; masks must hold one class id per pixel "
                                f"(convert colours to ids first)")
    if m.dtype not in (np.uint8, np.uint16):
        raise ScaleNASError(f"{path}: mask dtype {m.dtype} not supported; use an 8- or 16-bit PNG")
    return np.ascontiguousarray(m)


@dataclass(frozen=True)
class LabelTable:
    """Raw mask value -> train id lookup plus the set of raw values that are allowed at all."""

    lut: np.ndarray  # uint8[65536]
    valid: np.ndarray  # bool[65536]
    describe: str  # for error messages

    @staticmethod
    def build(num_classes: int, ignore_index: int, label_map: dict[int, int] | None = None) -> "LabelTable":
        lut = np.full(65536, ignore_index, np.uint8)
        valid = np.zeros(65536, bool)
        if label_map is None:
            lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
            valid[:num_classes] = True
            valid[ignore_index] = True
            desc = f"a class id 0..{num_classes - 1} or the ignore value {ignore_index}"
        else:
            for raw, tid in label_map.items():
                lut[raw] = tid
                valid[raw] = True
            desc = f"listed in label_map ({len(label_map)} raw values)"
        return LabelTable(lut, valid, desc)

    def apply(self, raw: np.ndarray, path: str) -> np.ndarray:
        counts = np.bincount(raw.ravel(), minlength=1)
        bad = np.flatnonzero((counts > 0) & ~self.valid[:counts.size])
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
            raise ScaleNASError(f"{path}: label values {shown} are not {self.describe}; "
                                f"fix the mask, the class list or the label_map")
        return self.lut[raw]


# --------------------------------------------------------------------------------------------- scanning
@dataclass(frozen=True)
class SegItem:
    """One sample: image path, mask path (None for unlabelled splits), optional instance map."""

    name: str  # stem relative to the split folder, e.g. "frankfurt/frankfurt_000000_000294"
    image: str
    mask: str | None = None
    instances: str | None = None
    label_kind: str = "default"  # which LabelTable of the dataset decodes the mask


def _walk(top: str, suffix: str) -> dict[str, str]:
    """stem (relative, '/'-separated, suffix removed) -> path, for files under ``top`` ending in ``suffix``."""
    out = {}
    for d, dirs, files in os.walk(top, followlinks=True):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(suffix) and not f.startswith("."):
                rel = os.path.relpath(os.path.join(d, f), top)[: -len(suffix)]
                out[rel.replace(os.sep, "/")] = os.path.join(d, f)
    return out


def scan_split(img_root: str, img_suffix: str, ann_root: str | None, ann_suffixes: list[tuple[str, str]],
               require_masks: bool, inst_root: str | None = None, inst_suffix: str = ".png") -> list[SegItem]:
    """Pair images with masks by stem. ``ann_suffixes`` is [(suffix, label_kind), ...]; the first
    suffix found for a stem wins. Errors name the image without a mask, or the mask without an image."""
    if not os.path.isdir(img_root):
        raise ScaleNASError(f"{img_root}: split folder not found")
    images = _walk(img_root, img_suffix)
    if not images:
        raise ScaleNASError(f"{img_root}: empty split (no *{img_suffix} images)")
    have_masks = ann_root is not None and os.path.isdir(ann_root)
    if not have_masks:
        if require_masks:
            raise ScaleNASError(f"{ann_root}: mask folder not found for the images in {img_root}")
        return [SegItem(stem, path) for stem, path in images.items()]
    masks: dict[str, tuple[str, str]] = {}
    for suffix, kind in ann_suffixes:
        for stem, path in _walk(ann_root, suffix).items():
            masks.setdefault(stem, (path, kind))
    for stem, path in images.items():
        if stem not in masks:
            want = os.path.join(ann_root, stem + ann_suffixes[0][0])
            raise ScaleNASError(f"{path}: image has no mask (expected {want})")
    for stem, (path, _) in masks.items():
        if stem not in images:
            raise ScaleNASError(f"{path}: mask has no image (expected {os.path.join(img_root, stem + img_suffix)})")
    insts = _walk(inst_root, inst_suffix) if inst_root and os.path.isdir(inst_root) else {}
    return [SegItem(stem, path, masks[stem][0], insts.get(stem), masks[stem][1]) for stem, path in images.items()]


def scan_folder(root: str, info: SegInfo, split_folder: str, require_masks: bool) -> list[SegItem]:
    inst_root = os.path.join(root, info.inst_dir, split_folder) if info.inst_dir else None
    return scan_split(os.path.join(root, info.img_dir, split_folder), info.img_suffix,
                      os.path.join(root, info.ann_dir, split_folder), [(info.ann_suffix, "default")],
                      require_masks, inst_root, info.inst_suffix)


# ---------------------------------------------------------------------------------------------- dataset
class SegDataset(Dataset):
    """Samples ``{"image": float (3,H,W), "label": uint8 (H,W), "index": int, "name": str}`` plus what
    ``extra(label, instances)`` returns (e.g. a size-bucket map for evaluation).

    ``transform(image, label, rng) -> (image, label)`` is the training augmentation (None: native size).
    Its RNG is seeded from torch's generator, so each DataLoader worker draws a different, reproducible
    stream under ``torch.manual_seed``.
    """

    def __init__(self, items: list[SegItem], info: SegInfo, tables: dict[str, LabelTable] | None = None,
                 transform: Callable | None = None,
                 extra: Callable[[np.ndarray, np.ndarray | None], dict] | None = None):
        self.items = list(items)
        self.info = info
        self.tables = tables or {"default": LabelTable.build(info.num_classes, info.ignore_index, info.label_map)}
        self.transform = transform
        self.extra = extra

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_labels(self) -> bool:
        return bool(self.items) and self.items[0].mask is not None

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Image (BGR uint8), train-id label (uint8) or None, instance map or None, all validated."""
        it = self.items[i]
        image = read_image(it.image)
        label = inst = None
        if it.mask is not None:
            raw = read_mask(it.mask)
            if raw.shape != image.shape[:2]:
                raise ScaleNASError(f"{it.mask}: mask is {raw.shape[0]}x{raw.shape[1]} but its image "
                                    f"{it.image} is {image.shape[0]}x{image.shape[1]}")
            label = self.tables[it.label_kind].apply(raw, it.mask)
        if it.instances is not None:
            inst = read_mask(it.instances)
            if inst.shape != image.shape[:2]:
                raise ScaleNASError(f"{it.instances}: instance map size {inst.shape} differs from "
                                    f"its image {it.image} {image.shape[:2]}")
        return image, label, inst

    def __getitem__(self, i: int) -> dict:
        # (no cv2.setNumThreads here: in a forked DataLoader worker it can deadlock on the parent's pool)
        image, label, inst = self.read(i)
        if self.transform is not None:
            if label is None:
                raise ScaleNASError(f"{self.items[i].image}: training needs masks")
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            image, label = self.transform(image, label, rng)
            inst = None  # instance maps are for evaluation at native resolution only
        sample = {"image": torch.from_numpy(normalize(image)), "index": i, "name": self.items[i].name}
        if label is not None:
            sample["label"] = torch.from_numpy(np.ascontiguousarray(label))
            if self.extra is not None:
                sample.update({k: torch.from_numpy(v) for k, v in self.extra(label, inst).items()})
        return sample

    def verify(self, limit: int | None = None) -> int:
        """Read every sample (or the first ``limit``) so a bad file fails now, not mid-training."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            self.read(i)
        return n
