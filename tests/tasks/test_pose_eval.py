import importlib.util
import sys

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


def test_crowdpose_without_xtcocotools_is_a_clear_error(monkeypatch):
    # a failed import, whether or not the extra is installed here (None in sys.modules makes import fail)
    monkeypatch.setitem(sys.modules, "xtcocotools", None)
    monkeypatch.setitem(sys.modules, "xtcocotools.coco", None)
    gt, anns = _gt(k=14)
    with pytest.raises(ScaleNASError, match="xtcocotools.*pip install.*--no-binary xtcocotools"):
        crowdpose_ap(gt.dataset, [], crowdpose().sigmas)
    with pytest.raises(ScaleNASError, match="xtcocotools"):
        evaluate_keypoints(gt, [], crowdpose().sigmas, "crowdpose")


def test_a_broken_xtcocotools_wheel_is_named_with_a_reinstall(monkeypatch):
    import builtins

    real = builtins.__import__

    def numpy1_wheel(name, *a, **kw):   # what the PyPI wheel does under numpy 2
        if name.startswith("xtcocotools"):
            raise ValueError("numpy.dtype size changed, may indicate binary incompatibility")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", numpy1_wheel)
    gt, _ = _gt(k=14)
    with pytest.raises(ScaleNASError, match="ValueError: numpy.dtype size changed.*--force-reinstall --no-deps "
                                            "--no-binary xtcocotools --no-build-isolation xtcocotools"):
        crowdpose_ap(gt.dataset, [], crowdpose().sigmas)


def _crowd_gt():
    """Four people over three images, one per CrowdPose crowding class (crowdIndex < 0.2 easy,
    < 0.8 medium, else hard): image 1 easy (1 person), 2 medium (2 people), 3 hard (1 person)."""
    rng = np.random.default_rng(1)
    images, anns = [], []
    for iid, crowd, people in ((1, 0.1, [(40, 60)]), (2, 0.5, [(40, 60), (160, 60)]), (3, 0.9, [(100, 100)])):
        images.append({"id": iid, "file_name": f"{iid}.jpg", "height": 300, "width": 300, "crowdIndex": crowd})
        for x0, y0 in people:
            kp = np.zeros((14, 3))
            kp[:, 0], kp[:, 1], kp[:, 2] = x0 + rng.uniform(0, 40, 14), y0 + rng.uniform(0, 80, 14), 2
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "iscrowd": 0, "num_keypoints": 14,
                         "area": 40 * 80 * 0.5, "bbox": [x0, y0, 40, 80], "keypoints": kp.reshape(-1).tolist()})
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def _as_result(ann, score, dx=0.0):
    kp = np.array(ann["keypoints"]).reshape(-1, 3)
    kp[:, 0] += dx
    return {"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score}


@pytest.mark.skipif(importlib.util.find_spec("xtcocotools") is None,
                    reason="optional extra not installed (make test builds it)")
def test_crowdpose_with_xtcocotools():
    data = _crowd_gt()
    anns = data["annotations"]
    perfect = crowdpose_ap(data, [_as_result(a, 0.9) for a in anns], crowdpose().sigmas)
    assert set(perfect) == {"AP", "AP50", "AP75", "AR", "AR50", "AR75", "APE", "APM", "APH"}
    assert all(v == pytest.approx(100.0) for v in perfect.values()), perfect
    # the second person of the medium image is missed and a detection 200 px away (OKS ~ 0 with every
    # person) is the lowest-scored: 3 of 4 people found with precision 1, so the interpolated precision is 1 at
    # the 76 recall thresholds 0.00..0.75 of 101 and 0 above; the medium image alone has 51 of 101 (recall 1/2)
    res = [_as_result(a, 0.9) for a in anns if a["id"] != 3] + [_as_result(anns[2], 0.1, dx=200.0)]
    m = crowdpose_ap(data, res, crowdpose().sigmas)
    assert m["AP"] == pytest.approx(100 * 76 / 101) and m["AP50"] == pytest.approx(100 * 76 / 101)
    assert m["AR"] == pytest.approx(75.0)
    # xtcocotools rounds the easy/medium/hard APs to 4 decimals of a fraction
    assert m["APE"] == pytest.approx(100.0) and m["APH"] == pytest.approx(100.0)
    assert m["APM"] == pytest.approx(100 * 51 / 101, abs=0.01)
    # only the evaluated images count, in the crowding split too: without image 2 every AP is 100 and there
    # is no medium image (undefined, not 0)
    sub = crowdpose_ap(data, res, crowdpose().sigmas, image_ids=[1, 3])
    assert sub["AP"] == pytest.approx(100.0) and sub["APE"] == pytest.approx(100.0) and np.isnan(sub["APM"])
    # through the dispatcher, with the COCO object a task holds
    ap = evaluate_keypoints(coco_from_dict(data), res, crowdpose().sigmas, "crowdpose")["AP"]
    assert ap == pytest.approx(m["AP"])


@pytest.mark.skipif(importlib.util.find_spec("xtcocotools") is None,
                    reason="optional extra not installed (make test builds it)")
def test_crowdpose_metric_needs_crowd_index():
    data = _crowd_gt()
    del data["images"][1]["crowdIndex"]
    with pytest.raises(ScaleNASError, match="image 2 has no 'crowdIndex'"):
        crowdpose_ap(data, [_as_result(data["annotations"][0], 0.9)], crowdpose().sigmas)
