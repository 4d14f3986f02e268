"""Generic image + mask folder datasets: pairing, label maps, and every bad-data case naming the file."""
import json
import os

import cv2
import numpy as np
import pytest

from scalenas.data.seg_folder import LabelTable, SegDataset, SegInfo, read_mask, scan_folder
from scalenas.errors import ScaleNASError


def write(path, arr, ext=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(ext or os.path.splitext(path)[1], arr)
    assert ok
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def make_folder(root, n=3, size=(24, 32), classes=3, info_extra=None, img_ext=".jpg", split="train"):
    rng = np.random.default_rng(0)
    info = {"classes": [f"c{i}" for i in range(classes)]} | (info_extra or {})
    if img_ext != ".png":
        info["img_suffix"] = img_ext
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "dataset_info.json"), "w") as f:
        json.dump(info, f)
    for i in range(n):
        write(os.path.join(root, "images", split, f"sub/{i:03d}{img_ext}"),
              rng.integers(0, 255, (*size, 3)).astype(np.uint8))
        write(os.path.join(root, "masks", split, f"sub/{i:03d}.png"),
              rng.integers(0, classes, size).astype(np.uint8))
    return SegInfo.load(os.path.join(root, "dataset_info.json"))


def dataset(root, split="train"):
    info = SegInfo.load(os.path.join(root, "dataset_info.json"))
    return SegDataset(scan_folder(root, info, split, require_masks=True), info)


def test_good_folder_loads(tmp_path):
    make_folder(tmp_path)
    ds = dataset(tmp_path)
    assert [it.name for it in ds.items] == ["sub/000", "sub/001", "sub/002"]
    s = ds[1]
    assert s["image"].shape == (3, 24, 32) and s["label"].shape == (24, 32)
    assert int(s["label"].max()) < 3 and s["name"] == "sub/001"
    assert ds.verify() == 3
    assert len(ds.info.palette) == 3  # generated when the info file has none


def test_label_map_and_binary_masks(tmp_path):
    info = make_folder(tmp_path, n=1, classes=2, info_extra={"label_map": {"0": 0, "255": 1, "7": 255}})
    mask = np.zeros((24, 32), np.uint8)
    mask[:5] = 255
    mask[5:8] = 7
    write(os.path.join(tmp_path, "masks/train/sub/000.png"), mask)
    label = dataset(tmp_path)[0]["label"].numpy()
    assert (label[:5] == 1).all() and (label[5:8] == 255).all() and (label[8:] == 0).all()
    assert info.label_map == {0: 0, 255: 1, 7: 255}


def test_sixteen_bit_and_palette_masks(tmp_path):
    make_folder(tmp_path, n=1, classes=3)
    write(os.path.join(tmp_path, "masks/train/sub/000.png"), np.full((24, 32), 2, np.uint16))
    assert (dataset(tmp_path)[0]["label"] == 2).all()
    from PIL import Image

    im = Image.fromarray(np.full((24, 32), 1, np.uint8), mode="P")
    im.putpalette([0, 0, 0, 250, 10, 10, 10, 250, 10] + [0] * 759)
    im.save(os.path.join(tmp_path, "masks/train/sub/000.png"))
    assert (read_mask(os.path.join(tmp_path, "masks/train/sub/000.png")) == 1).all()  # indices, not colours


def test_image_without_mask(tmp_path):
    make_folder(tmp_path)
    os.unlink(os.path.join(tmp_path, "masks/train/sub/001.png"))
    with pytest.raises(ScaleNASError, match=r"images/train/sub/001\.jpg: image has no mask"):
        dataset(tmp_path)


def test_mask_without_image(tmp_path):
    make_folder(tmp_path)
    write(os.path.join(tmp_path, "masks/train/extra.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(ScaleNASError, match=r"masks/train/extra\.png: mask has no image"):
        dataset(tmp_path)


def test_size_mismatch(tmp_path):
    make_folder(tmp_path)
    write(os.path.join(tmp_path, "masks/train/sub/002.png"), np.zeros((20, 32), np.uint8))
    ds = dataset(tmp_path)
    with pytest.raises(ScaleNASError,
                       match=r"masks/train/sub/002\.png: mask is 20x32 but its image .*002\.jpg is 24x32"):
        ds[2]


def test_bad_label_values(tmp_path):
    make_folder(tmp_path, classes=3)
    mask = np.zeros((24, 32), np.uint8)
    mask[0, 0], mask[1, 1] = 3, 200
    write(os.path.join(tmp_path, "masks/train/sub/000.png"), mask)
    with pytest.raises(ScaleNASError,
                       match=r"masks/train/sub/000\.png: label values 3, 200 are not a class id 0\.\.2"):
        dataset(tmp_path).verify()


def test_colour_mask_rejected(tmp_path):
    make_folder(tmp_path)
    write(os.path.join(tmp_path, "masks/train/sub/000.png"), np.dstack([np.zeros((24, 32), np.uint8)] * 2
                                                                       + [np.ones((24, 32), np.uint8)]))
    with pytest.raises(ScaleNASError, match=r"sub/000\.png: mask is a colour image"):
        dataset(tmp_path)[0]


@pytest.mark.parametrize("which", ["image", "mask"])
def test_unreadable_and_truncated_files(tmp_path, which):
    make_folder(tmp_path)
    path = os.path.join(tmp_path, "images/train/sub/000.jpg" if which == "image" else "masks/train/sub/000.png")
    data = open(path, "rb").read()
    ds = dataset(tmp_path)
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated
    with pytest.raises(ScaleNASError, match=rf"{os.path.basename(path)}: truncated"):
        ds[0]
    with open(path, "wb") as f:
        f.write(b"this is not an image at all")
    with pytest.raises(ScaleNASError, match=rf"{os.path.basename(path)}: cannot decode"):
        ds[0]
    with open(path, "wb"):
        pass
    with pytest.raises(ScaleNASError, match=rf"{os.path.basename(path)}: empty file"):
        ds[0]
    os.unlink(path)
    with pytest.raises(ScaleNASError, match=rf"{os.path.basename(path)}: cannot read"):
        ds[0]


def test_empty_and_missing_split(tmp_path):
    info = make_folder(tmp_path)
    os.makedirs(os.path.join(tmp_path, "images/val"))
    with pytest.raises(ScaleNASError, match=r"images/val: empty split"):
        scan_folder(tmp_path, info, "val", require_masks=True)
    with pytest.raises(ScaleNASError, match=r"images/test: split folder not found"):
        scan_folder(tmp_path, info, "test", require_masks=False)
    make_folder(tmp_path, n=1, split="test")
    os.rename(os.path.join(tmp_path, "masks/test"), os.path.join(tmp_path, "masks/hidden"))
    items = scan_folder(tmp_path, info, "test", require_masks=False)  # unlabelled test split is fine
    assert items[0].mask is None
    with pytest.raises(ScaleNASError, match=r"masks/test: mask folder not found"):
        scan_folder(tmp_path, info, "test", require_masks=True)


def test_bad_dataset_info(tmp_path):
    path = os.path.join(tmp_path, "dataset_info.json")
    with pytest.raises(ScaleNASError, match="dataset_info.json: dataset info not found"):
        SegInfo.load(path)
    for bad, msg in (({"classes": ["a"], "colours": []}, "colours: unknown key"),
                     ({"classes": ["a", "b"], "palette": [[0, 0, 0]]}, "palette has 1 colours for 2 classes"),
                     ({"classes": ["a", "b"], "ignore_index": 1}, "ignore_index 1 is a class id"),
                     ({"classes": ["a"], "label_map": {"3": 5}}, "label_map 3 -> 5")):
        with open(path, "w") as f:
            json.dump(bad, f)
        with pytest.raises(ScaleNASError, match=f"dataset_info.json: .*{msg}"):
            SegInfo.load(path)
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(ScaleNASError, match="dataset_info.json: cannot read dataset info"):
        SegInfo.load(path)


def test_label_table_lookup():
    t = LabelTable.build(3, 255)
    raw = np.array([[0, 1, 2, 255]], np.uint8)
    np.testing.assert_array_equal(t.apply(raw, "x"), raw)
    with pytest.raises(ScaleNASError, match="x: label values 3"):
        t.apply(np.array([[3]], np.uint16), "x")
