"""Top-down pose data: person instances from boxes and detections, HRNet's augmentation and targets."""
import json

import cv2
import numpy as np
import pytest
import torch

from scalenas.data.coco_keypoints import CocoKeypoints
from scalenas.data.keypoint_info import KeypointInfo, coco, crowdpose
from scalenas.data.pose_transforms import apply_affine
from scalenas.data.topdown import (CropParams, PersonInstance, TopDownAugment, TopDownDataset, crop_joints,
                                   detection_instances, gaussian_targets, gt_instances, half_body, sample_crop)
from scalenas.errors import ScaleNASError

K3 = {"name": "tri", "keypoints": ["a_left", "a_right", "b"], "flip_pairs": [["a_left", "a_right"]]}


def _index(tmp_path, anns, w=200, h=100, info=None):
    info = info or KeypointInfo.from_dict(K3)
    cv2.imwrite(str(tmp_path / "im.png"), np.zeros((h, w, 3), np.uint8))
    doc = {"images": [{"id": 7, "file_name": "im.png", "height": h, "width": w}], "annotations": anns,
           "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    return CocoKeypoints(str(tmp_path / "a.json"), str(tmp_path), info)


def _ann(aid, bbox, kps, **kw):
    return {"id": aid, "image_id": 7, "bbox": bbox, "keypoints": kps, "area": bbox[2] * bbox[3], **kw}


def test_gt_instances_box_to_center_scale_clip_and_filters(tmp_path):
    idx = _index(tmp_path, [
        _ann(1, [10, 20, 30, 60], [15, 30, 2, 25, 30, 1, 20, 50, 2]),        # tall: width grows to 45
        _ann(2, [150, -10, 80, 50], [160, 10, 2, 0, 0, 0, 0, 0, 0]),          # clipped to the image
        _ann(3, [10, 10, 20, 20], [0] * 9),                                   # no labelled joint
        _ann(4, [10, 10, 20, 20], [12, 12, 2] * 3, iscrowd=1),                # crowd
        _ann(5, [300, 10, 20, 20], [12, 12, 2] * 3),                          # entirely off the image
        {**_ann(6, [10, 10, 20, 20], [12, 12, 2] * 3), "area": 0},            # zero area
    ])
    insts = gt_instances(idx, [7], aspect_ratio=192 / 256)
    assert [i.ann_id for i in insts] == [1, 2]
    a = insts[0]
    # HRNet _load_coco_keypoint_annotation_kernal + _box2cs: clean box (w-1, h-1), aspect fix, x1.25
    assert a.box == (10.0, 20.0, 29.0, 59.0) and a.center == pytest.approx((24.5, 49.5))
    assert a.scale == pytest.approx((59 * 0.75 / 200 * 1.25, 59 / 200 * 1.25))
    assert a.score == 1.0 and a.area == 1800 and a.joints.shape == (3, 3)
    # HRNet clips the corner then keeps the width/height (x2 = x1 + w - 1), capped by the image
    assert insts[1].box == (150.0, 0.0, 49.0, 49.0)
    assert [i.ann_id for i in gt_instances(idx, [7], 0.75, require_keypoints=False)] == [1, 2, 3]


def _dets(tmp_path, entries):
    p = tmp_path / "dets.json"
    p.write_text(json.dumps(entries))
    return str(p)


def test_detection_instances_threshold_and_category(tmp_path):
    idx = _index(tmp_path, [])
    p = _dets(tmp_path, [{"image_id": 7, "category_id": 1, "bbox": [10, 10, 40, 80], "score": 0.9},
                         {"image_id": 7, "category_id": 1, "bbox": [50, 10, 40, 40], "score": 0.2},
                         {"image_id": 7, "category_id": 3, "bbox": [50, 10, 40, 40], "score": 0.9}])
    insts = detection_instances(p, idx, 0.75, score_threshold=0.5)
    assert len(insts) == 1 and insts[0].score == 0.9 and insts[0].joints is None and insts[0].ann_id == -1
    assert insts[0].center == (30.0, 50.0) and insts[0].scale == pytest.approx((0.375, 0.5))
    assert len(detection_instances(p, idx, 0.75)) == 2
    assert detection_instances(p, idx, 0.75, image_ids=[8]) == []


@pytest.mark.parametrize("entries, message", [
    ([{"image_id": 7, "bbox": [1, 1, 5, 5], "score": 1}, {"image_id": 99, "bbox": [1, 1, 5, 5], "score": 1}],
     r"dets\.json: detection 1 refers to image id 99, which is not in .*a\.json"),
    ([{"image_id": 7, "bbox": [1, 1, 0, 5], "score": 1}], r"dets\.json: detection 0 \(image 7\) has a degenerate box"),
    ([{"image_id": 7, "bbox": [1, 1, float("nan"), 5], "score": 1}], r"detection 0 \(image 7\) has a degenerate box"),
    ([{"image_id": 7, "bbox": [1, 1, 5], "score": 1}], r"detection 0 \(image 7\) has a degenerate box"),
    ([{"image_id": 7, "bbox": [1, 1, 5, 5]}], r"dets\.json: detection 0 \(image 7\) has no 'score'"),
    ({"image_id": 7}, r"dets\.json: a detections file is a list"),
    ([{"image_id": 7, "category_id": 2, "bbox": [1, 1, 5, 5], "score": 1}], r"no detection has the keypoint category"),
])
def test_detection_file_errors_are_one_line_naming_file_and_entry(tmp_path, entries, message):
    idx = _index(tmp_path, [])
    p = tmp_path / "dets.json"
    p.write_text(json.dumps(entries))
    with pytest.raises(ScaleNASError, match=message) as e:
        detection_instances(str(p), idx, 0.75)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_gaussian_targets_peak_window_and_weights():
    joints = np.array([[41.0, 22.0, 2],     # peak at int(41/4+.5)=10, int(22/4+.5)=6
                       [10.0, 10.0, 0],     # unlabelled
                       [-30.0, 20.0, 2],    # window x in [-14, -1]: off the map
                       [-10.0, 20.0, 1],    # peak x = int(-2.5 + .5) = -2: window partly on the map
                       [47.0, 63.0, 2]])    # bottom-right corner pixel
    t, w = gaussian_targets(joints, (12, 16), sigma=2.0)
    assert t.shape == (5, 16, 12) and w.shape == (5, 1)
    assert w[:, 0].tolist() == [1, 0, 0, 1, 1]
    assert np.unravel_index(t[0].argmax(), t[0].shape) == (6, 10) and t[0, 6, 10] == 1.0
    assert t[0, 6, 11] == pytest.approx(np.exp(-1 / 8)) and t[0, 6, 4] == pytest.approx(np.exp(-36 / 8))
    assert t[0, 6, 3] == 0 and t[0, 13, 10] == 0                        # the window is 13 px (6σ+1)
    assert t[1].max() == 0 and t[2].max() == 0
    assert t[3, 5, 0] == pytest.approx(np.exp(-4 / 8))                 # peak (-2, 5): (0 - (-2))²
    assert t[4, 15, 11] == pytest.approx(np.exp(-(1 + 1) / 8))          # peak (12, 16) is just off the map


def test_unbiased_targets_centre_the_gaussian_on_the_sub_pixel_joint():
    """DARK's unbiased encoding: the peak is at x / stride exactly (not rounded), over the whole heatmap;
    the same visibility rule as HRNet's window."""
    joints = np.array([[41.0, 22.0, 2],     # centre (10.25, 5.5)
                       [10.0, 10.0, 0],     # unlabelled
                       [-30.0, 20.0, 2]])   # window x in [-13.5, -0.5): off the map
    t, w = gaussian_targets(joints, (12, 16), sigma=2.0, unbiased=True)
    assert w[:, 0].tolist() == [1, 0, 0] and t[1].max() == 0 and t[2].max() == 0
    assert t[0, 5, 10] == pytest.approx(np.exp(-(0.25 ** 2 + 0.5 ** 2) / 8))
    assert t[0, 6, 10] == pytest.approx(t[0, 5, 10])                    # y = 5.5: 5 and 6 equally far
    assert t[0, 0, 0] == pytest.approx(np.exp(-(10.25 ** 2 + 5.5 ** 2) / 8))   # not cut to a window
    # the rounded target peaks at the same pixel but with the whole quarter/half-pixel offset lost
    rounded, _ = gaussian_targets(joints, (12, 16), sigma=2.0)
    assert rounded[0, 6, 10] == 1.0 and t[0].max() < 1.0


def _person(vis_ids, k=17):
    j = np.zeros((k, 3), np.float32)
    rng = np.random.default_rng(0)
    j[:, 0], j[:, 1] = rng.uniform(50, 150, k), np.linspace(20, 300, k)
    j[list(vis_ids), 2] = 2
    return j


def test_half_body_picks_upper_or_lower_joints():
    info = coco()
    j = _person(range(17))
    picks = {"upper": 0, "lower": 0}
    rng = np.random.default_rng(1)
    for _ in range(400):
        c, s = half_body(j, info, 0.75, rng)
        side = "upper" if np.allclose(c, j[:11, :2].mean(0)) else "lower"
        assert np.allclose(c, j[:11, :2].mean(0) if side == "upper" else j[11:, :2].mean(0))
        picks[side] += 1
        sel = j[:11] if side == "upper" else j[11:]
        w, h = sel[:, :2].max(0) - sel[:, :2].min(0)
        h = max(h, w / 0.75)
        assert s == pytest.approx(np.array([h * 0.75, h]) / 200 * 1.5)     # aspect fix then x1.5
    assert 0.62 < picks["upper"] / 400 < 0.76                                 # HRNet's randn() < 0.5: 69%
    # too few lower joints labelled: the upper set is taken; two joints are the minimum of either
    only_up = _person(range(11))
    assert all(np.allclose(half_body(only_up, info, 0.75, rng)[0], only_up[:11, :2].mean(0)) for _ in range(10))
    assert half_body(_person([0]), info, 0.75, rng) is None
    # a dataset without upper/lower sets has no half-body augmentation
    assert half_body(j, KeypointInfo.from_dict({**K3, "keypoints": [f"j{i}" for i in range(17)],
                                                "flip_pairs": []}), 0.75, rng) is None


def test_half_body_needs_more_than_min_joints():
    info = coco()
    aug = TopDownAugment(half_body_prob=1.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=0.0)
    inst = PersonInstance(7, (100.0, 160.0), (2.0, 2.0), (0, 0, 10, 10), joints=_person(range(8)))
    crop = sample_crop(np.random.default_rng(0), inst, aug, info, 0.75, 400)
    assert crop.center == (100.0, 160.0) and crop.scale == (2.0, 2.0)          # 8 labelled: not > 8
    inst = PersonInstance(7, (100.0, 160.0), (2.0, 2.0), (0, 0, 10, 10), joints=_person(range(9)))
    crop = sample_crop(np.random.default_rng(0), inst, aug, info, 0.75, 400)
    assert crop.center != (100.0, 160.0) and crop.scale[0] < 1.0


def test_scale_rotation_flip_draws_follow_hrnet_ranges():
    aug = TopDownAugment(half_body_prob=0.0)
    inst = PersonInstance(7, (100.0, 50.0), (1.0, 1.0), (0, 0, 10, 10))
    rng = np.random.default_rng(0)
    crops = [sample_crop(rng, inst, aug, coco(), 0.75, 300) for _ in range(3000)]
    s = np.array([c.scale[0] for c in crops])
    r = np.array([c.rot for c in crops])
    f = np.array([c.flip for c in crops])
    assert s.min() == pytest.approx(0.65) and s.max() == pytest.approx(1.35)
    assert abs(r).max() == pytest.approx(90.0) and 0.56 < (r != 0).mean() < 0.64 and 0.47 < f.mean() < 0.53
    assert {c.center for c in crops if c.flip} == {(199.0, 50.0)}            # x' = W - x - 1


def test_flipped_crop_mirrors_the_image_and_swaps_joints():
    """A marker under a left joint lands under the same joint, now named right, in the mirrored crop."""
    img = np.zeros((100, 200, 3), np.uint8)
    cv2.circle(img, (60, 40), 3, (255, 255, 255), -1)
    joints = np.array([[60.0, 40.0, 2], [90.0, 40.0, 2], [75.0, 60.0, 2]])
    crop = CropParams((199 - 75.0, 50.0), (0.6, 0.8), 0.0, True, 200)
    warped = cv2.warpAffine(img, crop.matrix((96, 128)), (96, 128))
    js = crop_joints(joints, crop, (96, 128), [1, 0, 2])
    ys, xs = np.nonzero(warped[..., 0] > 127)
    assert abs(js[1, 0] - xs.mean()) < 0.5 and abs(js[1, 1] - ys.mean()) < 0.5   # joint 0 is now joint 1
    assert js[1, 0] > js[0, 0]                                                # and on the right
    plain = CropParams((75.0, 50.0), (0.6, 0.8)).matrix((96, 128))
    # mirroring the image about (200-1)/2 with the centre mirrors the crop about its centre 96/2 (HRNet)
    px, py = apply_affine(joints[1, :2], plain)
    assert np.allclose(js[0, :2], [96 - px, py])


class _Cfg:
    input_hw = (128, 96)
    sigma = 2.0
    unbiased_encoding = False
    augment = TopDownAugment()

    class loss:
        joint_weights = [1.0, 2.0, 0.5]


def test_dataset_samples_repeat_under_torch_seed_and_weight_joints(tmp_path):
    idx = _index(tmp_path, [_ann(1, [60, 20, 50, 70], [70, 30, 2, 100, 30, 2, 85, 80, 2]),
                            _ann(2, [10, 10, 30, 60], [15, 20, 2, 30, 20, 0, 20, 60, 2])])
    insts = gt_instances(idx, [7], 0.75)
    ds = TopDownDataset(idx, insts, _Cfg, KeypointInfo.from_dict(K3), train=True)
    torch.manual_seed(3)
    a = ds[0]
    torch.manual_seed(3)
    b = ds[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["image"].shape == (3, 128, 96) and a["target"].shape == (3, 32, 24) and a["target_weight"].shape == (3, 1)
    ev = TopDownDataset(idx, insts, _Cfg, KeypointInfo.from_dict(K3), train=False)
    s = ev[1]
    assert s["target_weight"][:, 0].tolist() == [1.0, 0.0, 0.5]               # v=0 -> 0; joint weights multiply
    assert s["center"].tolist() == list(insts[1].center) and s["image_id"] == 7 and s["score"] == 1.0
    # the peak is where the crop puts the joint
    m = CropParams(insts[1].center, insts[1].scale).matrix((96, 128))
    x, y = apply_affine(np.array([15.0, 20.0]), m)
    assert np.unravel_index(s["target"][0].argmax(), (32, 24)) == (int(y / 4 + 0.5), int(x / 4 + 0.5))


def test_keypoint_info_body_ids():
    assert coco().upper_body_ids == tuple(range(11)) and coco().lower_body_ids == tuple(range(11, 17))
    cp = crowdpose()
    assert sorted(cp.keypoints[i] for i in cp.lower_body_ids) == sorted(
        ["left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"])
    assert set(cp.upper_body_ids) | set(cp.lower_body_ids) == set(range(14))
    info = KeypointInfo.from_dict({**K3, "upper_body_ids": ["a_left", "a_right"], "lower_body_ids": [2]})
    assert info.upper_body_ids == (0, 1) and info.has_half_body
    assert KeypointInfo.from_dict(info.to_dict()) == info
    assert not KeypointInfo.from_dict(K3).has_half_body
    for bad, msg in (({"upper_body_ids": [0, 1], "lower_body_ids": [1]}, "keypoint 1 is in both"),
                     ({"upper_body_ids": [0], "lower_body_ids": [5]}, "lower_body_ids: index 5 is out of range"),
                     ({"upper_body_ids": [0]}, "give both upper_body_ids and lower_body_ids"),
                     ({"upper_body_ids": ["nose"], "lower_body_ids": [2]}, "unknown keypoint name 'nose'")):
        with pytest.raises(ScaleNASError, match=msg):
            KeypointInfo.from_dict({**K3, **bad}, source="info.yaml")


def test_seeded_samples_draw_what_torch_manual_seed_would():
    """SeededSamples seeds only torch's CPU generator (torch.manual_seed's lazy accelerator seeding is slow);
    a sample's torch draws are the same as under torch.manual_seed of its seed."""
    from torch.utils.data import Dataset

    from scalenas.data.seeded import SeededSamples, sample_seed

    class Draws(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.randint(0, 2 ** 62, (4,))

    ds = SeededSamples(Draws(), seed=7)
    for key in [(0, 0), (0, 2), (5, 1)]:
        torch.manual_seed(sample_seed(7, *key))
        expected = torch.randint(0, 2 ** 62, (4,))
        assert torch.equal(ds[key], expected)
