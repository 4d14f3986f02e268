"""The top-down pose task: config checks, JointsMSELoss, a K=7 custom dataset end to end, detections,
rank sharding, predict, and the decoder ceiling on the synthetic pose data."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from scalenas.data.synth_pose import generate
from scalenas.errors import ScaleNASError
from scalenas.nets.scalenet import ScaleNet
from scalenas.space.space import SearchSpace
from scalenas.tasks.base import TASKS
from scalenas.tasks.pose_losses import joints_mse_loss
from scalenas.tasks.pose_topdown import TopDownPoseTask

K7_INFO = {"name": "critter", "keypoints": ["ear_left", "ear_right", "eye_left", "eye_right", "nose", "paw_left",
                                            "paw_right"],
           "flip_pairs": [["ear_left", "ear_right"], ["eye_left", "eye_right"], ["paw_left", "paw_right"]],
           "sigmas": [0.06, 0.06, 0.04, 0.04, 0.04, 0.08, 0.08],
           "skeleton": [["eye_left", "nose"], ["eye_right", "nose"], ["nose", "paw_left"], ["nose", "paw_right"]],
           "upper_body_ids": ["ear_left", "ear_right", "eye_left", "eye_right", "nose"],
           "lower_body_ids": ["paw_left", "paw_right"]}
def _cfg(root, **kw):
    cfg = {"name": "pose-topdown", "root": str(root), "keypoints": "info.json", "input_hw": "128x96",
           "train": {"images": "train", "annotations": "train.json"},
           "val": {"images": "val", "annotations": "val.json"},
           "search_holdout": 2, "workers": 0, "vis_images": 2, "inference": {"batch_size": 3}}
    cfg.update(kw)
    return cfg


def _tiny_net(head):
    space = SearchSpace(width=4, modules_per_stage=(1, 1, 1), depth_choices=(1,), stem_channels=8, stage1_blocks=1)
    return ScaleNet(space, space.smallest(pose_rule=True), head=head)


@pytest.fixture(scope="module")
def k7(tmp_path_factory, write_k7):
    root = tmp_path_factory.mktemp("k7td")
    (root / "info.json").write_text(json.dumps(K7_INFO))
    write_k7(root, n_train=6, box_pad=3)
    return root


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_registered_head_and_config(k7):
    task = TASKS.get("pose-topdown").from_config(_cfg(k7))
    assert isinstance(task, TopDownPoseTask)
    assert task.head.kind == "pose-topdown" and task.head.num_joints == 7 and task.input_hw == (128, 96)
    assert task.info.lower_body_ids == (5, 6) and task.metric == "coco"
    d = task.decode_config()
    assert d.flip and d.shift_heatmap and not d.dark and d.rescore_threshold == 0.2 and d.oks_nms_threshold == 0.9


@pytest.mark.parametrize("override, message", [
    ({"input_hw": [250, 192]}, r"task\.input_hw.*multiples of 32"),
    ({"input_hw": "256by192"}, r"task\.input_hw.*HxW"),
    ({"sigma": 0}, r"task\.sigma"),
    ({"loss": {"joint_weights": [1.0] * 5}}, r"task\.loss\.joint_weights: 5 values but .* 7 keypoints"),
    ({"inference": {"dark_kernel": 4}}, r"task\.inference\.dark_kernel"),
    ({"augment": {"flip_probability": 0.5}}, r"task\.augment\.flip_probability.*flip_prob"),
])
def test_config_errors_are_one_line_naming_the_key(k7, override, message):
    with pytest.raises(ScaleNASError, match=message) as e:
        TopDownPoseTask.from_config(_cfg(k7, **override))
    assert "\n" not in str(e.value)


def test_joints_mse_loss_against_hand_computation():
    pred = torch.zeros(2, 2, 2, 2)
    target = torch.zeros(2, 2, 2, 2)
    pred[0, 0, 0, 0] = 1.0                           # joint 0 of sample 0: one pixel off by 1
    pred[1, 1] = 0.5                                 # joint 1 of sample 1: four pixels off by 0.5
    w = torch.tensor([[[1.0], [1.0]], [[1.0], [2.0]]])
    # HRNet: sum over joints of 0.5 * mean over (B, h, w) of (w * (p - t))², divided by K
    j0 = 0.5 * (1.0 / 8)
    j1 = 0.5 * (4 * (2 * 0.5) ** 2 / 8)
    assert float(joints_mse_loss(pred, target, w)) == pytest.approx((j0 + j1) / 2)
    assert float(joints_mse_loss(pred, target, None)) == pytest.approx((j0 + 0.5 * (4 * 0.25 / 8)) / 2)
    w0 = torch.tensor([[[1.0], [1.0]], [[1.0], [0.0]]])
    assert float(joints_mse_loss(pred, target, w0)) == pytest.approx(j0 / 2)
    with pytest.raises(ScaleNASError, match="top-down pose loss"):
        joints_mse_loss(torch.zeros(2, 3, 2, 2), target, w)


def test_k7_trains_and_evaluates_end_to_end(k7, tmp_path):
    task = TopDownPoseTask.from_config(_cfg(k7, loss={"joint_weights": [1, 1, 1, 1, 2, 1, 1]}))
    ds = task.build_dataset("train", train=True)
    assert len(ds) == len(task.instances("train")) and {i.image_id for i in ds.instances}.isdisjoint(task.search_ids())
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, collate_fn=task.collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 128, 96) and batch["target"].shape == (4, 7, 32, 24)
    assert batch["target_weight"].shape == (4, 7, 1) and float(batch["target_weight"].max()) == 2.0
    net = _tiny_net(task.head)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(4):
        loss, parts = task.loss(net(batch["image"]), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert set(parts) == {"mse"} and parts["mse"] == pytest.approx(losses[-1])
    assert losses[-1] < losses[0]
    net.train()
    m = task.evaluate(net, "val", out_dir=str(tmp_path))
    assert net.training                                                       # mode restored
    assert {"AP", "AP50", "AP75", "APM", "APL", "AR"} <= set(m) and 0 <= m["AP"] <= 100 and m["images"] == 3
    res = json.loads((tmp_path / "keypoints_val_results.json").read_text())
    assert res and all(len(r["keypoints"]) == 21 and r["image_id"] in (501, 511, 521) for r in res)
    pngs = sorted(os.listdir(tmp_path / "vis"))
    assert pngs == ["val_501.png", "val_511.png"] and cv2.imread(str(tmp_path / "vis" / pngs[0])).shape[1] > 256
    assert task.evaluate(net, "search", max_images=1)["images"] == 1
    assert task.evaluate(net, "val", max_images=5, first_image=1)["images"] == 2  # 511 and 521
    # max_images counts images, not the person crops the dataset yields (the search's halving rungs, the study)
    assert task.num_eval_images("val") == m["images"] == 3
    assert task.num_eval_images("train") == len({i.image_id for i in ds.instances}) < len(ds)
    assert task.evaluate_oracle("val")["AP"] >= 99.0


class _Silent(torch.nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 7, x.shape[2] // 4, x.shape[3] // 4)


def test_detection_boxes_for_val(k7, tmp_path):
    task = TopDownPoseTask.from_config(_cfg(k7))
    gt = [a for a in task.index("val").coco.dataset["annotations"]]
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.95} for a in gt]
    dets.append({"image_id": 501, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.05})
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    task = TopDownPoseTask.from_config(_cfg(k7, inference={"boxes": str(tmp_path / "dets.json"),
                                                           "det_score_threshold": 0.1}))
    assert len(task.instances("val")) == len(gt)                              # the 0.05 box is dropped
    assert all(i.joints is None and i.score == 0.95 for i in task.instances("val"))
    assert len(task.instances("search")) == len(task.instances("search", boxes="gt"))   # search: always GT
    assert task.evaluate(_Silent(), "val")["AP"] >= 0.0
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 42, "bbox": [0, 0, 5, 5], "score": 1}]))
    with pytest.raises(ScaleNASError, match=r"dets\.json: detection 0 refers to image id 42"):
        task.evaluate(_Silent(), "val")


def test_evaluation_shards_images_across_ranks_and_gathers(k7, monkeypatch):
    import scalenas.tasks.pose_topdown as pt

    task = TopDownPoseTask.from_config(_cfg(k7))
    expected = task.evaluate_oracle("val")
    sent, decoded = {}, {}

    def gather(parts, obj):
        sent[rank] = obj
        parts[:] = [sent.get(0, []), sent.get(1, [])]

    for rank in (1, 0):
        monkeypatch.setattr(pt, "rank_and_world", lambda r=rank: (r, 2))
        monkeypatch.setattr(pt.dist, "all_gather_object", gather)
        monkeypatch.setattr(pt.dist, "broadcast_object_list", lambda box, src: None)
        decoded[rank] = task.evaluate_oracle("val")
    assert decoded[1] == {}
    assert {r["image_id"] for r in sent[1]} == {511} and {r["image_id"] for r in sent[0]} == {501, 521}
    assert decoded[0]["AP"] == pytest.approx(expected["AP"])


def test_predict_with_and_without_boxes(k7, tmp_path):
    task = TopDownPoseTask.from_config(_cfg(k7))
    net = _tiny_net(task.head).eval()
    img = task.index("val").load_image(501)
    whole = task.predict(net, img)
    assert "whole image" in whole["note"] and len(whole["people"]) == 1
    assert whole["people"][0]["box"] == [0.0, 0.0, 128.0, 128.0] and len(whole["people"][0]["keypoints"]) == 7
    pred = task.predict(net, img, boxes=[[10, 10, 40, 60], [50, 20, 30, 30, 0.5]])
    assert "note" not in pred and [p["box"] for p in pred["people"]] == [[10, 10, 40, 60], [50, 20, 30, 30]]
    assert pred["keypoint_names"] == K7_INFO["keypoints"]
    for p in pred["people"]:   # joints decode inside (or on the edge of) the padded crop of their box
        xy = np.array(p["keypoints"])[:, :2]
        x, y, w, h = p["box"]
        assert (xy[:, 0] > x - w).all() and (xy[:, 0] < x + 2 * w).all() and (xy[:, 1] > y - h).all()
    assert pred["people"][1]["score"] <= 0.5
    task.visualise(img, pred, str(tmp_path / "p.png"), min_score=0)
    assert cv2.imread(str(tmp_path / "p.png")).shape == img.shape
    with pytest.raises(ScaleNASError, match=r"predict: box 1 is \[1, 2, 0, 4\]"):
        task.predict(net, img, boxes=[[1, 2, 3, 4], [1, 2, 0, 4]])
    with pytest.raises(ScaleNASError, match="BGR image"):
        task.predict(net, img[..., 0])


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_td")
    generate(str(root), train=0, val=12, test=0, size=(256, 256), seed=0)
    return root


@pytest.mark.parametrize("hw, sigma", [("256x192", 2.0), ("384x288", 3.0)])
@pytest.mark.parametrize("flip", [True, False])
def test_decoder_ceiling_on_synthetic_people(synth, hw, sigma, flip):
    """Ground-truth boxes and joints -> the training targets -> the real decoder: AP >= 99 (issue 14)."""
    cfg = {"name": "pose-topdown", "root": str(synth), "input_hw": hw, "sigma": sigma, "workers": 0,
           "val": {"images": "images/val", "annotations": "annotations/val.json"}}
    m = TopDownPoseTask.from_config(cfg).evaluate_oracle("val", flip=flip)
    assert m["images"] == 12 and m["AP"] >= 99.0, m
    if flip and hw == "256x192":
        # the oracle sees what a network would: without HRNet's one-pixel shift the flip test costs AP
        unshifted = TopDownPoseTask.from_config({**cfg, "inference": {"shift_heatmap": False}})
        assert unshifted.evaluate_oracle("val", flip=True)["AP"] < m["AP"] - 1.0


@pytest.mark.parametrize("flip", [True, False])
def test_unbiased_encoding_lifts_the_ceiling_at_128x96(synth, flip):
    """At 128x96 (heatmaps 32x24) HRNet's rounded targets cap a perfect network near AP 90: half a heatmap
    pixel is 2 input pixels, a large OKS error for small people. DARK's unbiased encoding with DARK's decoder
    restores AP >= 99. The plain decoder gets 100 without the flip test and ~98.8 with it: HRNet's one-pixel
    shift of the mirrored heatmap corrects a 3/4-pixel misalignment, and the rounded targets hid the rest."""
    cfg = {"name": "pose-topdown", "root": str(synth), "input_hw": "128x96", "sigma": 2.0, "workers": 0,
           "val": {"images": "images/val", "annotations": "annotations/val.json"}}
    rounded = TopDownPoseTask.from_config(cfg).evaluate_oracle("val", flip=flip)["AP"]
    unbiased = {**cfg, "unbiased_encoding": True}
    dark = TopDownPoseTask.from_config({**unbiased, "inference": {"dark": True}}).evaluate_oracle("val", flip=flip)
    plain = TopDownPoseTask.from_config(unbiased).evaluate_oracle("val", flip=flip)
    assert dark["AP"] >= 99.0 and plain["AP"] >= (98.0 if flip else 99.0) and rounded < 96.0
