"""The decoder is proven before any training: perfect network outputs rendered from the ground truth
(OracleForward) must decode back to the ground truth."""
import dataclasses

import numpy as np
import pytest
import torch

from scalenas.data.synth_pose import generate
from scalenas.tasks.pose_bottomup import BottomUpPoseTask
from scalenas.tasks.pose_decode import DecodeConfig, Maps, coco_results, match_by_tag, parse, peak_nms
from scalenas.tasks.pose_targets import OracleForward


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_pose_val")
    # medium and large people: the 1/2-resolution heatmaps cannot localise tiny ones well enough for AP 95
    generate(str(root), train=0, val=40, test=0, size=(256, 256), seed=0, heights=(0.2, 0.95))
    t = BottomUpPoseTask.from_config({"root": str(root), "input_size": 256, "workers": 0,
                                      "val": {"images": "images/val", "annotations": "annotations/val.json"}})
    # the decoder runs many small ops: one thread avoids spin-waiting on this shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield t
    torch.set_num_threads(n)


@pytest.mark.parametrize("flip", [False, True])
def test_oracle_ap_single_scale(task, flip):
    m = task.evaluate_oracle("val", flip=flip)
    assert m["images"] == 40
    assert m["AP50"] == 100.0          # every person found and grouped, no spurious person
    assert m["AP"] >= 95.0, m          # the rest is the 1/2-resolution heatmap quantisation


def test_oracle_ap_multi_scale_and_unprojected(task):
    t = BottomUpPoseTask.from_config({**task.cfg.model_dump(), "inference": {"scales": [2.0, 1.0]}})
    assert t.evaluate_oracle("val", max_images=6)["AP"] >= 95.0
    t = BottomUpPoseTask.from_config({**task.cfg.model_dump(), "inference": {"project_to_image": False}})
    assert t.evaluate_oracle("val", max_images=6)["AP"] >= 90.0


def _match(pred, gt):
    """For each GT person with at least 5 in-image joints, the prediction closest to it."""
    pairs = {}
    for i, g in enumerate(gt):
        v = g[:, 2] > 0
        if v.sum() < 5:
            continue
        d = [np.linalg.norm(p[v, :2] - g[v, :2], axis=1).mean() for p in pred]
        pairs[i] = (pred[int(np.argmin(d))], v)
    return pairs


def test_flip_image_and_targets_then_unflip_recovers_keypoints(task):
    idx = task.index("val")
    info = task.info
    fi = list(info.flip_index)
    cfg = dataclasses.replace(task.decode_config(), flip=False)
    checked = 0
    for iid in idx.image_ids[:4]:
        img = idx.load_image(iid)
        gt = idx.people(iid)
        w = img.shape[1]
        img_f = np.ascontiguousarray(img[:, ::-1])
        gt_f = gt[:, fi].copy()
        gt_f[..., 0] = np.where(gt_f[..., 2] > 0, w - 1 - gt_f[..., 0], 0)
        plain = task.decode(OracleForward(gt, img.shape[:2], fi, 256), img, cfg=cfg).keypoints
        mirrored = task.decode(OracleForward(gt_f, img.shape[:2], fi, 256), img_f, cfg=cfg).keypoints
        back = mirrored[:, fi].copy()
        back[..., 0] = w - 1 - back[..., 0]
        assert len(back) == len(plain) == len(gt)
        ref = _match(plain, gt)
        for i, (p, v) in _match(back, gt).items():
            err = np.linalg.norm(p[v, :2] - gt[i, v, :2], axis=1)
            assert err.max() < 2.5, (iid, err.max())      # a left/right swap would be tens of pixels
            assert np.abs(ref[i][0][v, :2] - p[v, :2]).max() < 3.0
            checked += 1
    assert checked >= 4


def test_flip_test_agrees_with_single_pass(task):
    idx = task.index("val")
    iid = idx.image_ids[0]                    # one tall person
    img = idx.load_image(iid)
    gt = idx.people(iid)
    fi = task.info.flip_index
    a = task.decode(OracleForward(gt, img.shape[:2], fi, 256), img,
                    cfg=dataclasses.replace(task.decode_config(), flip=False)).keypoints
    b = task.decode(OracleForward(gt, img.shape[:2], fi, 256), img).keypoints
    assert len(a) == len(b) == 1
    v = gt[0, :, 2] > 0
    assert np.abs(a[0, v, :2] - b[0, v, :2]).max() <= 1.5


def test_peak_nms_keeps_one_pixel_of_a_plateau():
    hm = torch.zeros(2, 10, 10)
    hm[0, 4:6, 4:6] = 1.0                      # a flat 2x2 top
    hm[0, 0, 9] = 0.5                          # a separate lower peak
    hm[1, 2, 2] = 0.7
    out = peak_nms(hm, 5)
    assert (out[0] > 0).sum() == 2 and out[0, 4, 4] == 1.0 and out[0, 0, 9] == 0.5
    assert (out[1] > 0).sum() == 1


def test_peak_nms_cpu_and_accelerator_paths_agree():
    from scalenas.tasks.pose_decode import _peak_nms_torch

    g = torch.Generator().manual_seed(0)
    hm = torch.rand(3, 20, 24, generator=g).round(decimals=1)     # many exact ties
    assert torch.equal(peak_nms(hm, 5), _peak_nms_torch(hm, 5))
    assert torch.equal(peak_nms(hm, 3), _peak_nms_torch(hm, 3))


def _maps(hm, tags):
    k, h, w = hm.shape
    return Maps(hm, tags, np.array([w / 2.0, h / 2.0]), np.array([w / 200.0, h / 200.0]), (w, h))


def test_grouping_by_tag_and_threshold():
    k, h, w = 3, 32, 32
    hm = torch.zeros(k, h, w)
    tags = torch.zeros(k, h, w, 1)
    # person A (tag 0) and person B (tag 5); joint 2 of B is missing
    for j, (x, y) in enumerate([(5, 5), (8, 5), (11, 5)]):
        hm[j, y, x] = 0.9
        tags[j, y, x, 0] = 0.1 * j
    for j, (x, y) in enumerate([(20, 20), (23, 20)]):
        hm[j, y, x] = 0.8
        tags[j, y, x, 0] = 5.0
    cfg = DecodeConfig(refine=False, adjust=False)
    people = parse(_maps(hm, tags), [0, 1, 2], cfg)
    assert len(people.keypoints) == 2
    a = people.keypoints[np.argmax(people.scores)]
    assert a[:, :2].tolist() == [[5, 5], [8, 5], [11, 5]]
    b = people.keypoints[np.argmin(people.scores)]
    assert b[2, 2] == 0 and people.scores.min() == pytest.approx(0.8 * 2 / 3)
    # a tag farther than tag_threshold from every person starts a new person
    tags[1, 20, 23, 0] = 7.0
    assert len(parse(_maps(hm, tags), [0, 1, 2], cfg).keypoints) == 3


def test_refine_fills_missing_joint_near_its_person():
    k, h, w = 2, 24, 24
    hm = torch.zeros(k, h, w)
    tags = torch.zeros(k, h, w, 1)
    hm[0, 10, 10] = 0.9                         # detected
    hm[1, 12, 10] = 0.05                        # below the detection threshold: only refine finds it
    hm[1, 2, 20] = 0.08                         # a weaker-tag competitor belonging to someone else
    tags[1, 2, 20, 0] = 4.0
    cfg = DecodeConfig(adjust=True, refine=True)
    people = parse(_maps(hm, tags), [0, 1], cfg)
    assert len(people.keypoints) == 1
    kp = people.keypoints[0]
    assert kp[1, 2] == pytest.approx(0.05) and abs(kp[1, 0] - 10.75) <= 0.5 and abs(kp[1, 1] - 12.75) <= 0.5


def test_empty_maps_give_no_people_and_no_results():
    hm = torch.zeros(3, 16, 16)
    people = parse(_maps(hm, torch.zeros(3, 16, 16, 1)), [0, 1, 2], DecodeConfig())
    assert people.keypoints.shape == (0, 3, 3) and coco_results(people, 5) == []


def test_match_by_tag_max_people_and_ignore_too_much():
    k, n = 2, 4
    loc = np.zeros((k, n, 2))
    val = np.full((k, n), 0.9)
    tag = np.arange(k * n, dtype=np.float64).reshape(k, n, 1) * 10
    cfg = DecodeConfig(max_people=4, ignore_too_much=True)
    out = match_by_tag(loc, val, tag, [0, 1], cfg)
    assert out.shape == (4, 2, 4)              # joint 1 skipped: already max_people people
    out = match_by_tag(loc, val, tag, [0, 1], DecodeConfig(max_people=4))
    assert out.shape == (8, 2, 4)


def test_predict_accepts_numpy_forward(task):
    """An ONNX Runtime session returns numpy arrays; the decoder takes them as they are."""
    idx = task.index("val")
    iid = idx.image_ids[0]
    img = idx.load_image(iid)
    oracle = OracleForward(idx.people(iid), img.shape[:2], task.info.flip_index, 256)
    pred = task.predict(lambda x: [o.numpy() for o in oracle(x)], img)
    assert pred["keypoint_names"][0] == "nose" and len(pred["people"]) == 1
    assert np.array(pred["people"][0]["keypoints"]).shape == (17, 3)
