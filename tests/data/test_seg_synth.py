"""Synthetic segmentation data: deterministic, multi-scale (>= 1:20), all classes, consistent records."""
import json
import os

import cv2
import numpy as np
import pytest

from scalenas.data.seg_folder import SegInfo
from scalenas.data.synth_seg import CLASSES, generate
from scalenas.errors import ScaleNASError

COUNTS = dict(train=10, val=2, test=2)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth") / "a")
    summary = generate(out, size=(256, 256), seed=3, **COUNTS)
    return out, summary


def _files(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def test_deterministic(synth, tmp_path):
    out, summary = synth
    again = str(tmp_path / "b")
    assert generate(again, size=(256, 256), seed=3, **COUNTS) == summary.replace(out, again)
    a, b = _files(out), _files(again)
    assert sorted(a) == sorted(b) and len(a) == 3 * 14 + 4
    assert all(a[k] == b[k] for k in a)
    other = str(tmp_path / "c")
    generate(other, size=(256, 256), seed=4, **COUNTS)
    assert _files(other)["images/train/00000.jpg"] != a["images/train/00000.jpg"]


def test_sizes_span_and_classes_present(synth):
    out, _ = synth
    recs = json.load(open(os.path.join(out, "instances_train.json")))["images"]
    objs = [o for r in recs for o in r["objects"]]
    diam = np.array([o["diameter"] for o in objs])
    side = np.sqrt([o["area"] for o in objs])  # visible size after occlusion
    assert diam.max() / diam.min() >= 20
    assert side.max() / side.min() >= 20
    assert {o["class"] for o in objs} == set(range(1, len(CLASSES)))
    present = np.zeros(256, bool)
    for r in recs:
        mask = cv2.imread(os.path.join(out, "masks/train", r["file"] + ".png"), cv2.IMREAD_UNCHANGED)
        present[np.unique(mask)] = True
    assert present[: len(CLASSES)].all()  # background and every object class
    assert not present[len(CLASSES):255].any()


def test_records_match_instance_maps(synth):
    out, _ = synth
    for r in json.load(open(os.path.join(out, "instances_val.json")))["images"]:
        inst = cv2.imread(os.path.join(out, "instances/val", r["file"] + ".png"), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(os.path.join(out, "masks/val", r["file"] + ".png"), cv2.IMREAD_UNCHANGED)
        area = np.bincount(inst.ravel(), minlength=256)
        for o in r["objects"]:
            m = inst == o["id"]
            assert area[o["id"]] == o["area"] > 0 and o["area"] <= o["full_area"]
            assert (label[m] == o["class"]).all()
            x, y, w, h = o["bbox"]
            assert m[y:y + h, x:x + w].sum() == o["area"]
        assert set(np.flatnonzero(area[1:]) + 1) == {o["id"] for o in r["objects"]}
        assert (label[inst == 0] != np.arange(1, len(CLASSES))[:, None, None]).all()  # objects are instances


def test_info_file_and_refusal_to_overwrite(synth, tmp_path):
    out, _ = synth
    info = SegInfo.load(os.path.join(out, "dataset_info.json"))
    assert info.classes == list(CLASSES) and info.inst_dir == "instances" and info.ignore_index == 255
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ScaleNASError, match="foreign: folder is not empty"):
        generate(str(foreign), 1, 0, 0, (64, 64), 0)
    small = str(tmp_path / "small")
    generate(small, 3, 1, 0, (64, 64), 0)
    generate(small, 1, 0, 0, (64, 64), 0)
    assert sorted(os.listdir(os.path.join(small, "images/train"))) == ["00000.jpg"]
    assert not os.path.exists(os.path.join(small, "images/val"))
