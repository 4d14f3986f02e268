"""Cityscapes in its official layout, with the 19 train classes of HRNet-Seg (tasks.md §2.4).

::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (read and remapped)
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (accepted as is)

The raw labelIds are remapped on the fly to train ids (everything else -> 255), as HRNet-Seg does;
``*_labelTrainIds.png`` (cityscapesscripts' ``createTrainIdLabelImgs``, what mmseg expects) is used
when a stem has no labelIds file. Ids outside the official table (0..33, and 255 for the license
plate's -1 written as uint8) are errors naming the file.
"""
from __future__ import annotations

import os

import numpy as np

from scalenas.data.seg_folder import LabelTable, SegInfo, SegItem, scan_split

CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
           "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
           "motorcycle", "bicycle")
# RGB colours of the official label table
PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
           (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
           (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))
# HRNet-Seg's per-class cross-entropy weights (also used by its OHEM loss)
CLASS_WEIGHTS = (0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023, 0.9539,
                 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507)
IGNORE = 255
# labelId -> trainId for the evaluated classes
_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
          26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
# every official labelId (0..33; -1 "license plate" is 255 in a uint8 PNG) -> trainId or ignore
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {i: _TRAIN.get(i, IGNORE) for i in range(34)} | {255: IGNORE}
TRAIN_ID_TO_LABEL_ID: dict[int, int] = {t: i for i, t in _TRAIN.items()}

IMG_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIXES = [("_gtFine_labelIds.png", "labelIds"), ("_gtFine_labelTrainIds.png", "labelTrainIds")]


def cityscapes_info() -> SegInfo:
    return SegInfo(name="cityscapes", classes=list(CLASSES), palette=list(PALETTE), ignore_index=IGNORE,
                   class_weights=list(CLASS_WEIGHTS), img_dir="leftImg8bit", ann_dir="gtFine",
                   img_suffix=IMG_SUFFIX, ann_suffix=LABEL_SUFFIXES[0][0])


def label_tables() -> dict[str, LabelTable]:
    """Decoders for the two accepted mask kinds."""
    n = len(CLASSES)
    return {"labelIds": LabelTable.build(n, IGNORE, LABEL_ID_TO_TRAIN_ID),
            "labelTrainIds": LabelTable.build(n, IGNORE)}


def label_ids_to_train_ids(label_ids: np.ndarray, path: str = "<array>") -> np.ndarray:
    """Remap a raw labelIds array to train ids (uint8, 255 = ignore); unknown ids raise naming ``path``."""
    return label_tables()["labelIds"].apply(np.asarray(label_ids), path)


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Inverse map for writing test-server predictions (ignore -> 0, 'unlabeled')."""
    lut = np.zeros(256, np.uint8)
    for t, i in TRAIN_ID_TO_LABEL_ID.items():
        lut[t] = i
    return lut[np.asarray(train_ids, np.uint8)]


def scan_cityscapes(root: str, split_folder: str, require_masks: bool) -> list[SegItem]:
    """Items of ``split_folder`` (train / val / test), paired by ``<city>/<city>_<seq>_<frame>`` stem."""
    return scan_split(os.path.join(root, "leftImg8bit", split_folder), IMG_SUFFIX,
                      os.path.join(root, "gtFine", split_folder), LABEL_SUFFIXES, require_masks)
