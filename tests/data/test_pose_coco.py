import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from scalenas.data.coco_keypoints import CocoKeypoints
from scalenas.data.keypoint_info import coco, get_keypoint_info
from scalenas.errors import ScaleNASError


def _kps(points, k=17):
    out = [0.0] * (3 * k)
    for j, (x, y, v) in points.items():
        out[3 * j:3 * j + 3] = [x, y, v]
    return out


def _dataset(root, anns=None, images=None, write_images=True):
    os.makedirs(root / "img", exist_ok=True)
    images = images if images is not None else [{"id": 42, "file_name": "a.png", "height": 64, "width": 80},
                                                {"id": 7, "file_name": "b.png", "height": 64, "width": 80}]
    if write_images:
        for im in images:
            cv2.imwrite(str(root / "img" / im["file_name"]), np.full((64, 80, 3), 100, np.uint8))
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((10, 10), np.uint8), ((0, 54), (0, 70)))))
    anns = anns if anns is not None else [
        {"id": 1, "image_id": 42, "category_id": 1, "iscrowd": 0, "num_keypoints": 2, "area": 300,
         "bbox": [30, 20, 20, 30], "keypoints": _kps({0: (40, 25, 2), 5: (35, 35, 1)})},
        {"id": 2, "image_id": 42, "category_id": 1, "iscrowd": 1, "num_keypoints": 0, "area": 100,
         "bbox": [0, 0, 10, 10], "keypoints": _kps({}),
         "segmentation": {"size": [64, 80], "counts": crowd["counts"].decode()}},
        {"id": 3, "image_id": 42, "category_id": 1, "iscrowd": 0, "num_keypoints": 0, "area": 50,
         "bbox": [60, 40, 10, 10], "keypoints": _kps({}),
         "segmentation": [[60, 40, 70, 40, 70, 50, 60, 50]]},
    ]
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "person", "keypoints": list(coco().keypoints)}]}
    path = root / "ann.json"
    path.write_text(json.dumps(doc))
    return str(path), str(root / "img")


def test_people_mask_and_ids(tmp_path):
    ann, img = _dataset(tmp_path)
    ds = CocoKeypoints(ann, img, coco())
    assert ds.image_ids == [7, 42]                   # ids from the annotation file, not file names
    assert ds.ids_with_annotations() == [42]
    people = ds.people(42)
    assert people.shape == (1, 17, 3) and people[0, 5].tolist() == [35, 35, 1]
    assert ds.people(7).shape == (0, 17, 3)
    m = ds.ignore_mask(42)
    assert m.shape == (64, 80) and m.dtype == np.float32
    assert m[:10, :10].max() == 0                    # crowd RLE ignored
    assert m[42:49, 62:69].max() == 0                # 0-keypoint person polygon ignored
    assert m[30, 40] == 1 and m.mean() > 0.9
    assert ds.load_image(7).shape == (64, 80, 3)
    sub = ds.subset([42])
    assert sorted(sub.imgs) == [42] and len(sub.anns) == 3


def test_wrong_keypoint_length_names_file_and_annotation(tmp_path):
    anns = [{"id": 99, "image_id": 42, "category_id": 1, "iscrowd": 0, "num_keypoints": 1, "area": 10,
             "bbox": [0, 0, 5, 5], "keypoints": [1, 2, 2] * 16}]
    ann, img = _dataset(tmp_path, anns)
    with pytest.raises(ScaleNASError, match=r"ann\.json: annotation 99 \(image 42\) has keypoints of length 48.*51"):
        CocoKeypoints(ann, img, coco())


def test_k7_dataset_rejected_by_coco_info(tmp_path):
    anns = [{"id": 5, "image_id": 42, "category_id": 1, "keypoints": [1, 2, 2] * 7}]
    ann, img = _dataset(tmp_path, anns)
    with pytest.raises(ScaleNASError, match="annotation 5"):
        CocoKeypoints(ann, img, coco())


def test_category_keypoint_count_mismatch(tmp_path):
    ann, img = _dataset(tmp_path)
    info = get_keypoint_info({"keypoints": ["a", "b"]})
    with pytest.raises(ScaleNASError, match=r"ann\.json: category 1 .* lists 17 keypoints"):
        CocoKeypoints(ann, img, info)


def test_missing_image_names_file_and_id(tmp_path):
    ann, img = _dataset(tmp_path)
    os.remove(os.path.join(img, "b.png"))
    with pytest.raises(ScaleNASError, match=r"ann\.json: image 7 \('b\.png'\) is missing: .*b\.png"):
        CocoKeypoints(ann, img, coco())


def test_invalid_json_names_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"images": [1, 2,, ]}')
    with pytest.raises(ScaleNASError, match=r"broken\.json: invalid JSON at line 1"):
        CocoKeypoints(str(p), str(tmp_path), coco())
    p.write_text('{"images": []}')
    with pytest.raises(ScaleNASError, match=r"broken\.json: not a COCO annotation file"):
        CocoKeypoints(str(p), str(tmp_path), coco())
    with pytest.raises(ScaleNASError, match=r"nothere\.json: cannot read"):
        CocoKeypoints(str(tmp_path / "nothere.json"), str(tmp_path), coco())


def test_annotation_for_unlisted_image(tmp_path):
    anns = [{"id": 8, "image_id": 1234, "category_id": 1, "keypoints": [0] * 51}]
    ann, img = _dataset(tmp_path, anns)
    with pytest.raises(ScaleNASError, match="annotation 8 refers to image 1234"):
        CocoKeypoints(ann, img, coco())


def test_category_id_is_optional_and_annotation_id_is_required(tmp_path):
    anns = [{"id": 4, "image_id": 42, "keypoints": _kps({0: (40, 25, 2)})}]  # no category_id, as in the doc
    ann, img = _dataset(tmp_path, anns)
    ds = CocoKeypoints(ann, img, coco())
    assert ds.coco.anns[4]["category_id"] == 1 and len(ds.subset([42]).anns) == 1
    ann, img = _dataset(tmp_path, [{"image_id": 42, "keypoints": _kps({0: (40, 25, 2)})}])
    with pytest.raises(ScaleNASError, match=r"ann\.json: an annotation of image 42 has no 'id'"):
        CocoKeypoints(ann, img, coco())
