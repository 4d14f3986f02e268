import importlib.util

import numpy as np
import pytest

from scalenas.data.coco_keypoints import coco_from_dict
from scalenas.data.keypoint_info import coco, crowdpose
from scalenas.errors import ScaleNASError
from scalenas.tasks.pose_eval import coco_keypoint_ap, crowdpose_ap, evaluate_keypoints


def _gt(k=17, people=((40, 60), (120, 150))):
    anns = []
    rng = np.random.default_rng(0)
    for i, (x0, y0) in enumerate(people):
        kp = np.zeros((k, 3))
        kp[:, 0] = x0 + rng.uniform(0, 40, k)
        kp[:, 1] = y0 + rng.uniform(0, 80, k)
        kp[:, 2] = 2
        anns.append({"id": i + 1, "image_id": 9, "category_id": 1, "iscrowd": 0, "num_keypoints": k,
                     "area": 40 * 80 * 0.5, "bbox": [x0, y0, 40, 80], "keypoints": kp.reshape(-1).tolist()})
    # crowdIndex: CrowdPose's per-image crowding, read by xtcocotools' keypoints_crowd
    data = {"images": [{"id": 9, "file_name": "x.jpg", "height": 300, "width": 300, "crowdIndex": 0.2},
                       {"id": 10, "file_name": "y.jpg", "height": 300, "width": 300, "crowdIndex": 0.0}],
            "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    return coco_from_dict(data), anns


def test_perfect_detections_give_100():
    gt, anns = _gt()
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9} for a in anns]
    m = coco_keypoint_ap(gt, res, coco().sigmas)
    assert m["AP"] == pytest.approx(100.0) and m["AR"] == pytest.approx(100.0)
    assert set(m) >= {"AP", "AP50", "AP75", "APM", "APL", "AR"}


def test_empty_detections_give_zero_not_a_crash():
    gt, _ = _gt()
    m = coco_keypoint_ap(gt, [], coco().sigmas)
    assert m["AP"] == 0.0 and m["AR"] == 0.0


def test_sigmas_matter_for_custom_k():
    gt, anns = _gt(k=7)
    res = []
    for a in anns:
        kp = np.array(a["keypoints"]).reshape(7, 3)
        kp[:, 0] += 2.5                                   # a small shift everywhere
        res.append({"image_id": 9, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": 1.0})
    tight = coco_keypoint_ap(gt, res, [0.01] * 7)["AP"]
    loose = coco_keypoint_ap(gt, res, [0.1] * 7)["AP"]
    assert loose > tight and loose == pytest.approx(100.0)
    with pytest.raises(ScaleNASError, match="expected 3\\*17"):
        coco_keypoint_ap(gt, res, coco().sigmas)


def test_restricting_to_evaluated_images():
    gt, anns = _gt()
    res = [{"image_id": 9, "category_id": 1, "keypoints": anns[0]["keypoints"], "score": 0.9}]
    assert coco_keypoint_ap(gt, res, coco().sigmas, image_ids=[9])["AR"] == pytest.approx(50.0)
    # an image without people: AP is undefined there (NaN), not zero
    m = coco_keypoint_ap(gt, res, coco().sigmas, image_ids=[10])
    assert np.isnan(m["AP"])


@pytest.mark.skipif(importlib.util.find_spec("xtcocotools") is not None, reason="xtcocotools is installed")
def test_crowdpose_without_xtcocotools_is_a_clear_error():
    gt, anns = _gt(k=14)
    with pytest.raises(ScaleNASError, match="xtcocotools.*pip install"):
        crowdpose_ap(gt.dataset, [], crowdpose().sigmas)
    with pytest.raises(ScaleNASError, match="xtcocotools"):
        evaluate_keypoints(gt, [], crowdpose().sigmas, "crowdpose")


@pytest.mark.skipif(importlib.util.find_spec("xtcocotools") is None, reason="optional extra not installed")
def test_crowdpose_with_xtcocotools():
    gt, anns = _gt(k=14)
    res = [{"image_id": 9, "category_id": 1, "keypoints": a["keypoints"], "score": 0.9} for a in anns]
    m = crowdpose_ap(gt.dataset, res, crowdpose().sigmas)
    assert m["AP"] == pytest.approx(100.0)
