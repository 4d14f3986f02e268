"""The bottom-up pose task end to end on a custom K=7 dataset generated here (no code changes for K)."""
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
import torch

from scalenas.errors import ScaleNASError
from scalenas.nets.scalenet import ScaleNet
from scalenas.space.space import SearchSpace
from scalenas.tasks.base import TASKS
from scalenas.tasks.pose_bottomup import BottomUpPoseTask

K7_INFO = """\
name: critter
keypoints: [ear_left, ear_right, eye_left, eye_right, nose, paw_left, paw_right]
flip_pairs: [[ear_left, ear_right], [eye_left, eye_right], [paw_left, paw_right]]
sigmas: [0.06, 0.06, 0.04, 0.04, 0.04, 0.08, 0.08]
skeleton: [[ear_left, eye_left], [ear_right, eye_right], [eye_left, nose], [eye_right, nose],
           [nose, paw_left], [nose, paw_right]]
joint_order: [nose, eye_left, eye_right, ear_left, ear_right, paw_left, paw_right]
"""
def _cfg(root, **kw):
    cfg = {"name": "pose-bottomup", "root": str(root), "keypoints": "info.yaml", "input_size": 128,
           "train": {"images": "train", "annotations": "train.json"},
           "val": {"images": "val", "annotations": "val.json"},
           "search_holdout": 2, "workers": 0, "vis_images": 2,
           "augment": {"max_rotation": 20}}
    cfg.update(kw)
    return cfg


def _tiny_net(head):
    space = SearchSpace(width=4, modules_per_stage=(1, 1, 1), depth_choices=(1,), stem_channels=8, stage1_blocks=1)
    return ScaleNet(space, space.smallest(pose_rule=True), head=head)


@pytest.fixture(scope="module")
def k7(tmp_path_factory, write_k7):
    root = tmp_path_factory.mktemp("k7")
    (root / "info.yaml").write_text(K7_INFO)
    write_k7(root, n_train=5)
    return root


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_registered_and_head(k7):
    cls = TASKS.get("pose-bottomup")
    assert cls is BottomUpPoseTask
    task = cls.from_config(_cfg(k7))
    assert task.head.kind == "pose-bottomup" and task.head.num_joints == 7
    assert task.info.num_joints == 7 and list(task.info.flip_index) == [1, 0, 3, 2, 4, 6, 5]
    assert task.output_sizes == (32, 64) and task.metric_name == "AP"


def test_config_errors_name_the_key(k7):
    with pytest.raises(ScaleNASError, match=r"task\.inference\.flipp: unknown key"):
        BottomUpPoseTask.from_config(_cfg(k7, inference={"flipp": True}))
    with pytest.raises(ScaleNASError, match=r"task\.input_size: .*multiple of 32"):
        BottomUpPoseTask.from_config(_cfg(k7, input_size=100))
    with pytest.raises(ScaleNASError, match=r"task\.augment"):
        BottomUpPoseTask.from_config(_cfg(k7, augment={"min_scale": 2.0, "max_scale": 1.0}))
    task = BottomUpPoseTask.from_config(_cfg(k7, test=None))
    with pytest.raises(ScaleNASError, match=r"task\.test: no test split"):
        task.build_dataset("test", train=False)


def test_bad_dataset_info_is_named_when_building_the_task(k7, tmp_path):
    bad = tmp_path / "bad_info.yaml"
    bad.write_text(K7_INFO.replace("[paw_left, paw_right]]", "[paw_left, ear_left]]"))
    with pytest.raises(ScaleNASError, match=r"bad_info\.yaml: keypoint 0 appears in more than one flip pair"):
        BottomUpPoseTask.from_config(_cfg(k7, keypoints=str(bad)))
    # a K=7 dataset read with the 17-joint COCO description fails on its first annotation, by name
    task = BottomUpPoseTask.from_config(_cfg(k7, keypoints="coco"))
    with pytest.raises(ScaleNASError, match=r"train\.json: category 1 .* 7 keypoints .* 17"):
        task.build_dataset("train", train=True)


def test_search_holdout_is_deterministic_and_disjoint(k7):
    a = BottomUpPoseTask.from_config(_cfg(k7))
    b = BottomUpPoseTask.from_config(_cfg(k7))
    assert a.search_ids() == b.search_ids() and len(a.search_ids()) == 2
    train_ids = a.split_ids("train")
    assert len(train_ids) == 3 and not set(train_ids) & set(a.search_ids())
    assert len(a.build_dataset("search", train=False)) == 2
    c = BottomUpPoseTask.from_config(_cfg(k7, search_seed=5))
    assert sorted(c.search_ids() + c.split_ids("train")) == sorted(a.search_ids() + train_ids)
    with pytest.raises(ScaleNASError, match="search_holdout"):
        BottomUpPoseTask.from_config(_cfg(k7, search_holdout=5)).split_ids("train")


def test_samples_batch_and_loss_with_a_real_net(k7):
    task = BottomUpPoseTask.from_config(_cfg(k7))
    ds = task.build_dataset("train", train=True)
    torch.manual_seed(0)
    s = ds[0]
    assert s["image"].shape == (3, 128, 128) and s["image"].dtype == np.float32
    assert s["heatmaps_0"].shape == (7, 32, 32) and s["heatmaps_1"].shape == (7, 64, 64)
    assert s["mask_0"].shape == (32, 32) and s["joints"].shape == (30, 7, 2)
    assert s["heatmaps_1"].max() > 0.9 and s["joints"][:, :, 1].sum() > 0
    torch.manual_seed(0)
    again = ds[0]
    assert np.array_equal(again["image"], s["image"])             # augmentation follows torch's seed
    batch = task.collate([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 128, 128) and batch["joints"].dtype == torch.int64
    assert batch["image_id"].tolist() == task.split_ids("train")
    net = _tiny_net(task.head)
    loss, parts = task.loss(net(batch["image"]), batch)
    assert torch.isfinite(loss) and set(parts) == {"hm4", "hm2", "push", "pull"}
    assert parts["pull"] >= 0 and parts["push"] >= 0
    loss.backward()
    # evaluation-style samples: a fixed centred crop, identical every time
    ev = task.build_dataset("val", train=False)
    assert np.array_equal(ev[1]["image"], ev[1]["image"]) and ev[1]["heatmaps_0"].max() > 0.9


def test_evaluate_real_net_writes_results_and_overlays(k7, tmp_path):
    task = BottomUpPoseTask.from_config(_cfg(k7))
    net = _tiny_net(task.head)
    net.train()
    m = task.evaluate(net, "val", out_dir=str(tmp_path))
    assert net.training                                           # mode restored
    assert {"AP", "AP50", "AP75", "APM", "APL", "AR"} <= set(m) and 0 <= m["AP"] <= 100 and m["images"] == 3
    res = json.loads((tmp_path / "keypoints_val_results.json").read_text())
    assert all(len(r["keypoints"]) == 21 and r["image_id"] in (501, 511, 521) for r in res)
    pngs = sorted(os.listdir(tmp_path / "vis"))
    assert len(pngs) == 2 and cv2.imread(str(tmp_path / "vis" / pngs[0])).shape[1] > 128 * 2
    assert task.evaluate(net, "search", max_images=1)["images"] == 1
    assert task.evaluate(net, "val", max_images=5, first_image=1)["images"] == 2  # 511 and 521


class _Silent(torch.nn.Module):
    """A fake model that finds nothing."""

    def forward(self, x):
        b, _, h, w = x.shape
        return torch.zeros(b, 14, h // 4, w // 4), torch.zeros(b, 7, h // 2, w // 2)


def test_fake_models_k7(k7, tmp_path):
    task = BottomUpPoseTask.from_config(_cfg(k7))
    assert task.evaluate(_Silent(), "val")["AP"] == 0.0
    m = task.evaluate_oracle("val")
    assert m["AP"] >= 90.0, m
    img = task.index("val").load_image(501)
    pred = task.predict(_Silent(), img)
    assert pred["people"] == [] and len(pred["keypoint_names"]) == 7
    from scalenas.tasks.pose_targets import OracleForward

    oracle = OracleForward(task.index("val").people(501), img.shape[:2], task.info.flip_index, 128)
    pred = task.predict(oracle, img)
    assert len(pred["people"]) >= 1
    task.visualise(img, pred, str(tmp_path / "p.png"))
    assert cv2.imread(str(tmp_path / "p.png")).shape == img.shape
    with pytest.raises(ScaleNASError, match="BGR image"):
        task.predict(oracle, img[..., 0])
    # a model built for another keypoint count is named as such, not an IndexError
    with pytest.raises(ScaleNASError, match="bottom-up head for 7 keypoints"):
        task.predict(lambda x: (torch.zeros(1, 34, 32, 32)[:, :10], torch.zeros(1, 17, 64, 64)), img)


def test_attribution_swaps_each_half(k7):
    """The silent model's heatmaps find nobody even with the true tags; the true heatmaps with its constant
    tags find people but merge those sharing an image, so they fall short of the perfect network."""
    task = BottomUpPoseTask.from_config(_cfg(k7))
    a = task.evaluate_attribution(_Silent(), "val")
    assert a["AP"] == 0.0 and a["AP_true_tags"] == 0.0
    assert a["AP_oracle"] == task.evaluate_oracle("val")["AP"] >= 90.0
    assert 0.0 < a["AP_true_heatmaps"] < a["AP_oracle"], a


def test_focal_heads_decode_like_mse_heads(k7):
    """With ``loss.heatmap: focal`` the decoder reads heatmap channels as logits: the perfect network (which
    then outputs logits) scores as with the MSE head, and the silent model's zeros are probabilities 0.1."""
    from scalenas.tasks.pose_targets import FOCAL_PRIOR_LOGIT, focal_heatmaps, focal_logits

    h = torch.tensor([0.0, 1e-3, 0.1, 0.5, 1.0])
    assert torch.allclose(focal_heatmaps(focal_logits(h)), h.clamp(1e-6, 1 - 1e-6), atol=1e-6)
    assert focal_heatmaps(torch.zeros(1)).item() == pytest.approx(0.1) and FOCAL_PRIOR_LOGIT < 0
    mse = BottomUpPoseTask.from_config(_cfg(k7))
    focal = BottomUpPoseTask.from_config(_cfg(k7, loss={"heatmap": "focal"}))
    assert focal.decode_config().focal and not mse.decode_config().focal
    assert focal.evaluate_oracle("val")["AP"] == pytest.approx(mse.evaluate_oracle("val")["AP"], abs=0.5)
    with pytest.raises(Exception, match="background_weight"):
        BottomUpPoseTask.from_config(_cfg(k7, loss={"heatmap": "focal", "background_weight": 0.1}))


class _Counting(_Silent):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


def test_attribution_runs_the_model_once_per_input(k7):
    """The two mixed passes replay the first pass's outputs: as many forwards as one plain evaluation."""
    task = BottomUpPoseTask.from_config(_cfg(k7))
    task.evaluate(_Counting(), "val")
    plain, _Counting.calls = _Counting.calls, 0
    assert task.evaluate_attribution(_Counting(), "val") == task.evaluate_attribution(_Silent(), "val")
    assert _Counting.calls == plain > 0


def test_evaluation_shards_across_ranks_and_gathers(k7, monkeypatch):
    """Two simulated ranks each decode half the images; rank 0 scores the gathered results."""
    import scalenas.tasks.pose_bottomup as pb

    task = BottomUpPoseTask.from_config(_cfg(k7))
    expected = task.evaluate_oracle("val")
    sent, decoded = {}, {}

    def gather(parts, obj):
        sent[rank] = obj
        parts[:] = [sent.get(0, []), sent.get(1, [])]

    for rank in (1, 0):
        monkeypatch.setattr(pb, "rank_and_world", lambda r=rank: (r, 2))
        monkeypatch.setattr(pb.dist, "all_gather_object", gather)
        monkeypatch.setattr(pb.dist, "broadcast_object_list", lambda box, src: None)
        decoded[rank] = task.evaluate_oracle("val")
    assert decoded[1] == {}                                   # only rank 0 computes (then broadcasts)
    assert {r["image_id"] for r in sent[1]} == {511}          # rank 1 decoded ids[1::2]
    assert {r["image_id"] for r in sent[0]} == {501, 521}
    assert decoded[0]["AP"] == pytest.approx(expected["AP"])


@pytest.mark.parametrize("name", ["pose_synth", "coco_512", "coco_640", "crowdpose_640"])
def test_shipped_task_configs_validate(name):
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parents[2] / "configs" / "tasks" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["task"]                                   # only the task section lives here
    task = TASKS.get(doc["task"]["name"]).from_config(doc["task"])
    assert task.cfg.input_size in (256, 512, 640)
    assert task.output_sizes == (task.cfg.input_size // 4, task.cfg.input_size // 2)
    assert task.head.num_joints == (14 if name.startswith("crowdpose") else 17)
    assert task.metric == ("crowdpose" if name.startswith("crowdpose") else "coco")


def test_evaluation_caps_loader_workers_at_the_cores(k7, monkeypatch):
    """workers: 4 on a 2-core machine starts 2 evaluation loader workers, not 4 (torch's warning case)."""
    from scalenas.utils import runtime

    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    made, real = [], torch.utils.data.DataLoader

    def spy(*a, **kw):
        made.append(kw.get("num_workers"))
        return real(*a, **{**kw, "num_workers": 0})           # the count is what is tested; load in-process

    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    task = BottomUpPoseTask.from_config(_cfg(k7, workers=4))
    assert task.evaluate(_Silent(), "val")["AP"] == 0.0
    assert made == [2]


@pytest.mark.skipif(importlib.util.find_spec("xtcocotools") is None,
                    reason="optional extra not installed (make test builds it)")
def test_crowdpose_metric_through_the_task(k7, tmp_path):
    """The task's own evaluation with metric: crowdpose (xtcocotools re-reads an annotation file): the
    oracle network scores near 100 on val and on the held-out split."""
    import shutil

    root = tmp_path / "k7c"
    shutil.copytree(k7, root)
    for split in ("train", "val"):
        doc = json.loads((root / f"{split}.json").read_text())
        for i, im in enumerate(doc["images"]):
            im["crowdIndex"] = (0.1, 0.5, 0.9)[i % 3]             # one image per crowding class
        (root / f"{split}.json").write_text(json.dumps(doc))
    task = BottomUpPoseTask.from_config(_cfg(root, metric="crowdpose"))
    task.check_dependencies()
    m = task.evaluate_oracle("val")
    assert m["AP"] >= 90.0 and m["AP50"] == pytest.approx(100.0) and m["images"] == 3, m
    assert not any(np.isnan(m[k]) for k in ("APE", "APM", "APH"))  # val has an image of each class
    # the held-out split: its 2 images alone, in AP and in the crowding classes (a class without a
    # held-out image is undefined)
    s = task.evaluate_oracle("search")
    assert s["images"] == 2 and s["AP50"] == pytest.approx(100.0) and s["AP"] >= 80.0, s
    crowd = {im["id"]: im["crowdIndex"] for im in task.index("train").coco.dataset["images"]}
    held = [crowd[i] for i in task.split_ids("search")]
    for key, lo, hi in (("APE", 0, 0.2), ("APM", 0.2, 0.8), ("APH", 0.8, 1.1)):
        assert np.isnan(s[key]) == (not any(lo <= c < hi for c in held)), (key, held, s)
