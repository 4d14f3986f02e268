import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from scalenas.data.synth_pose import generate
from scalenas.errors import ScaleNASError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_pose")
    summary = generate(str(out), train=30, val=4, test=2, size=(256, 256), seed=3)
    return out, summary


def _load(out, split):
    with open(out / "annotations" / f"{split}.json") as f:
        return json.load(f)


def test_layout_and_summary(synth):
    out, summary = synth
    assert summary.startswith("synth-pose: wrote 30/4/2") and "\n" not in summary
    for split, n in (("train", 30), ("val", 4), ("test", 2)):
        files = sorted(os.listdir(out / "images" / split))
        assert len(files) == n
        doc = _load(out, split)
        assert len(doc["images"]) == n
        assert cv2.imread(str(out / "images" / split / files[0])).shape == (256, 256, 3)
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO(str(out / "annotations" / "train.json"))   # loads with the reference tools
    assert c.loadCats(1)[0]["keypoints"][0] == "nose" and len(c.loadCats(1)[0]["skeleton"]) == 19


def test_annotations_are_honest_coco(synth):
    out, _ = synth
    doc = _load(out, "train")
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    assert all(str(i) not in n for i, n in names.items())     # ids are not derivable from file names
    vis_counts = {0: 0, 1: 0, 2: 0}
    for a in doc["annotations"]:
        kp = np.array(a["keypoints"]).reshape(17, 3)
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert a["area"] > 0 and len(a["bbox"]) == 4 and a["segmentation"]
        for x, y, v in kp:
            vis_counts[int(v)] += 1
            if v == 0:
                assert x == 0 and y == 0
            else:
                assert 0 <= x <= 255 and 0 <= y <= 255
    # occluded (v=1), visible (v=2) and missing (v=0) joints all occur
    assert min(vis_counts.values()) > 0, vis_counts


def test_heights_span_ten_to_one_and_people_per_image(synth):
    out, _ = synth
    for split in ("train", "val", "test"):
        doc = _load(out, split)
        hs = [a["bbox"][3] for a in doc["annotations"] if a["num_keypoints"] > 0]
        assert max(hs) / min(hs) >= 10, (split, min(hs), max(hs))
    doc = _load(out, "train")
    per_image = {}
    for a in doc["annotations"]:
        if a["num_keypoints"] > 0:
            per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert max(per_image.values()) <= 6 and len(per_image) == 30
    assert len(set(per_image.values())) >= 3                 # varied crowding


def test_crowd_regions_and_unlabelled_people_occur(synth):
    out, _ = synth
    doc = _load(out, "train")
    crowd = [a for a in doc["annotations"] if a["iscrowd"] == 1]
    assert crowd, "no crowd region in 30 images"
    a = crowd[0]
    assert isinstance(a["segmentation"], dict) and a["num_keypoints"] == 0       # RLE
    unlabelled = [a for a in doc["annotations"] if a["iscrowd"] == 0 and a["num_keypoints"] == 0]
    assert unlabelled and isinstance(unlabelled[0]["segmentation"], list)        # polygons


def test_deterministic_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(str(a), train=3, val=1, test=0, size=(128, 160), seed=11)
    generate(str(b), train=3, val=1, test=0, size=(128, 160), seed=11)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 6
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = tmp_path / "c"
    generate(str(c), train=3, val=0, test=0, size=(128, 160), seed=12)
    assert (c / "annotations/train.json").read_bytes() != (a / "annotations/train.json").read_bytes()
    assert cv2.imread(str(a / "images/train/train_00000.jpg")).shape == (128, 160, 3)


def test_bad_arguments(tmp_path):
    with pytest.raises(ScaleNASError, match="too small"):
        generate(str(tmp_path), train=1, val=0, test=0, size=(32, 32))
    with pytest.raises(ScaleNASError, match="--val must be >= 0"):
        generate(str(tmp_path), train=1, val=-1, test=0)
    for bad in ((0.5, 0.3), (0.0, 0.9), (0.1, 1.5)):
        with pytest.raises(ScaleNASError, match=r"heights must be fractions .* got \("):
            generate(str(tmp_path), train=1, val=0, test=0, heights=bad)


@pytest.fixture(scope="module")
def synth60(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_pose60")
    generate(str(out), train=60, val=0, test=0, size=(256, 256), seed=0)
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(out / "annotations" / "train.json"))


def test_heights_are_log_uniform_with_a_wide_middle(synth60):
    """Scale must matter: the 5th-95th percentile span of person (box) heights is at least 1:8 at
    256x256, with every COCO size class well represented (medium and large still the majority)."""
    anns = [a for a in synth60.dataset["annotations"] if a["num_keypoints"] > 0]
    hs = np.array([a["bbox"][3] for a in anns])
    p5, p95 = np.percentile(hs, [5, 95])
    assert p95 / p5 >= 8, (p5, p95)                                # measured 10.8 (17 to 186 px)
    lo, mid, hi = np.mean(hs < 32), np.mean((hs >= 32) & (hs < 96)), np.mean(hs >= 96)
    assert 0.1 <= lo <= 0.4 and mid >= 0.3 and hi >= 0.15, (lo, mid, hi)   # measured 0.25 / 0.54 / 0.21
    # log-uniform: each third of [p5, p95] in log height holds a comparable share of the people
    edges = np.exp(np.linspace(np.log(p5), np.log(p95), 4))
    share = np.histogram(hs, edges)[0] / len(hs)
    assert share.min() >= 0.2, share


def test_every_labelled_person_has_a_tight_box_area_and_count(synth60):
    for a in synth60.dataset["annotations"]:
        if a["num_keypoints"] == 0:
            continue
        kp = np.array(a["keypoints"]).reshape(17, 3)
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum()) and a["area"] > 0
        pts = np.concatenate([np.reshape(poly, (-1, 2)) for poly in a["segmentation"]])
        x, y, w, h = a["bbox"]
        # the box hugs the visible figure: its outline's extreme pixels are the box's first and last
        assert (pts.min(0) == [x, y]).all() and (pts.max(0) == [x + w - 1, y + h - 1]).all(), (pts, a["bbox"])
        assert a["area"] <= w * h                     # area: the visible pixels, all inside the box
