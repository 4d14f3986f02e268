"""Cityscapes: labelId -> trainId table (tasks.md §2.4) and the official folder layout."""
import os

import cv2
import numpy as np
import pytest

from scalenas.data import cityscapes as cs
from scalenas.errors import ScaleNASError

# tasks.md §2.4, written out independently of the module's table
EXPECTED = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
            27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
IGNORED = [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 255]  # 255: license plate (-1) as uint8


def test_label_ids_to_train_ids():
    ids = np.array(sorted(EXPECTED) + IGNORED, np.uint8).reshape(5, 7)
    train = cs.label_ids_to_train_ids(ids)
    for raw, t in zip(ids.ravel(), train.ravel()):
        assert t == EXPECTED.get(int(raw), 255), raw
    assert len(cs.CLASSES) == len(cs.PALETTE) == len(cs.CLASS_WEIGHTS) == 19
    assert cs.CLASSES[13] == "car" and cs.PALETTE[0] == (128, 64, 128)


def test_unknown_label_id_is_an_error():
    with pytest.raises(ScaleNASError, match=r"city\.png: label values 34, 40"):
        cs.label_ids_to_train_ids(np.array([[7, 34, 40]], np.uint8), "city.png")


def test_train_ids_round_trip_to_label_ids():
    train = np.arange(19, dtype=np.uint8)
    back = cs.train_ids_to_label_ids(train)
    np.testing.assert_array_equal(cs.label_ids_to_train_ids(back), train)
    assert cs.train_ids_to_label_ids(np.array([255], np.uint8))[0] == 0


def _write(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, arr)


def test_layout_with_label_ids_and_train_ids(tmp_path):
    """Two cities; one ships labelIds, the other only labelTrainIds (mmseg's preprocessing)."""
    from scalenas.tasks.segmentation import SegmentationTask

    root = str(tmp_path)
    img = np.zeros((64, 128, 3), np.uint8)
    label_ids = np.full((64, 128), 7, np.uint8)  # road
    label_ids[:, :10] = 26  # car
    label_ids[:4] = 0  # unlabeled -> ignore
    _write(f"{root}/leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png", img)
    _write(f"{root}/gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png", label_ids)
    _write(f"{root}/gtFine/val/aachen/aachen_000000_000019_gtFine_color.png", img)  # other gtFine files are skipped
    _write(f"{root}/leftImg8bit/val/bonn/bonn_000001_000019_leftImg8bit.png", img)
    _write(f"{root}/gtFine/val/bonn/bonn_000001_000019_gtFine_labelTrainIds.png", np.full((64, 128), 13, np.uint8))
    task = SegmentationTask.from_config({"name": "segmentation", "format": "cityscapes", "root": root,
                                         "crop_size": [32, 64], "class_weights": True, "ohem": True})
    assert task.head.num_classes == 19
    ds = task.build_dataset("val", train=False)
    assert [it.name for it in ds.items] == ["aachen/aachen_000000_000019", "bonn/bonn_000001_000019"]
    a, b = ds[0]["label"].numpy(), ds[1]["label"].numpy()
    assert (a[4:, :10] == 13).all() and (a[4:, 10:] == 0).all() and (a[:4] == 255).all()
    assert (b == 13).all()
    assert task.criterion.weight.tolist() == pytest.approx(list(cs.CLASS_WEIGHTS))
    os.unlink(f"{root}/gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png")
    with pytest.raises(ScaleNASError, match="aachen_000000_000019_leftImg8bit.png: image has no mask"):
        SegmentationTask.from_config({"format": "cityscapes", "root": root}).build_dataset("val", False)
