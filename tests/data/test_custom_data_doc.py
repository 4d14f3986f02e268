"""docs/custom-data.md is executable: its files (every fenced block marked ``path=...``) are written as
they stand, images and masks are generated in the documented layout, and the real CLI trains a tiny
supernet on each worked example for two steps, extracts a subnet and evaluates it on the val split."""
import glob
import json
import math
import os
import re

import cv2
import numpy as np
import pytest
import torch

from scalenas.cli import main as cli

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "custom-data.md")
BLOCK = re.compile(r"^```(json|yaml) path=(\S+)\n(.*?)^```$", re.S | re.M)
# Only sizes change: the space, steps and input shrink to CPU-test size; data paths and keys are the doc's.
TINY = ["space.width=8", "space.modules_per_stage=[1,1,1]", "space.depth_choices=[1,2]", "space.stem_channels=16",
        "space.stage1_blocks=1", "train.steps=2", "train.batch_size=2", "train.workers=0", "train.ckpt_every=0",
        "train.tensorboard=false", "train.progress=false", "task.search_holdout=2", "task.workers=0",
        "task.vis_images=0"]
CALIB = ["--calib-images", "4", "--calib-batch-size", "2", "--latency-iters", "0"]


def doc_files() -> dict[str, str]:
    with open(DOC, encoding="utf-8") as f:
        return {path: text for _, path, text in BLOCK.findall(f.read())}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The doc's files written under a fresh working directory, as a user would lay them out."""
    for path, text in doc_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(prev)


def test_the_doc_holds_both_worked_examples():
    files = doc_files()
    assert sorted(files) == ["configs/cracks.yaml", "configs/quokka.yaml", "data/cracks/dataset_info.json",
                             "data/quokka/annotations/val.json", "data/quokka/keypoints.json"]
    assert len(json.loads(files["data/quokka/keypoints.json"])["keypoints"]) == 7
    assert len(json.loads(files["data/cracks/dataset_info.json"])["classes"]) == 2


def _animal_image(h: int, w: int, kps: np.ndarray, seed: int) -> np.ndarray:
    """A textured background with the animal's labelled joints drawn as blobs, so there is something to learn."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(40, 120, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    for j, (x, y, v) in enumerate(kps):
        if v > 0:
            cv2.circle(img, (int(x), int(y)), max(2, w // 40), (255 - 30 * j, 60 + 25 * j, 200), -1)
    return img


def _write_image(path: str, img: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img)


def _make_pose_train_split(root: str, val: dict, n: int = 6, hw=(96, 128)) -> None:
    """annotations/train.json in the documented form: the same keys per image, annotation and category as
    the documented val.json; one or two animals per generated image."""
    rng = np.random.default_rng(0)
    k = len(val["categories"][0]["keypoints"])
    img_keys, ann_keys = set(val["images"][0]), set(val["annotations"][0])
    images, anns = [], []
    for i in range(n):
        h, w = hw
        people = []
        for _ in range(1 + i % 2):
            cx, cy = rng.uniform(25, w - 25), rng.uniform(25, h - 25)
            kp = np.stack([cx + rng.uniform(-20, 20, k), cy + rng.uniform(-20, 20, k), np.full(k, 2.0)], 1)
            kp[rng.random(k) < 0.15] = 0  # some joints unlabelled
            people.append(kp)
        _write_image(os.path.join(root, "images", "train", f"quokka_{100 + i:04d}.jpg"),
                     _animal_image(h, w, np.concatenate(people), i))
        images.append({"id": 100 + i, "file_name": f"quokka_{100 + i:04d}.jpg", "height": h, "width": w})
        for kp in people:
            lab = kp[kp[:, 2] > 0]
            x0, y0 = lab[:, :2].min(0)
            x1, y1 = lab[:, :2].max(0)
            anns.append({"id": len(anns) + 100, "image_id": 100 + i, "iscrowd": 0,
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                         "keypoints": [round(float(v), 1) for v in kp.reshape(-1)]})
    assert {frozenset(r) for r in images} == {frozenset(img_keys)}
    assert {frozenset(a) for a in anns} == {frozenset(ann_keys)}
    with open(os.path.join(root, "annotations", "train.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": val["categories"]}, f)


def _train_extract_eval(config: str, model: str, split_metric: str, *task_size: str) -> dict:
    assert cli(["train-supernet", config, *TINY, *task_size]) == 0
    (ckpt,) = glob.glob(f"runs/{model}/checkpoints/step_00000002.pt")
    space = [o for o in TINY if o.startswith("space.")]
    assert cli(["archs", config, *space, "--which", "smallest", "-o", f"archs_{model}"]) == 0
    assert cli(["extract", ckpt, f"archs_{model}/smallest.json", "-o", f"models/{model}", "--eval-split", "val",
                *CALIB]) == 0
    card = json.loads(open(f"models/{model}/card.json").read())
    assert card["metric"]["name"] == split_metric and math.isfinite(card["metric"]["value"])
    return card


def test_keypoint_example_trains_and_evaluates(workdir):
    root = "data/quokka"
    val = json.loads(open(f"{root}/annotations/val.json").read())
    for im in val["images"]:
        kps = np.array([a["keypoints"] for a in val["annotations"] if a["image_id"] == im["id"]]).reshape(-1, 3)
        _write_image(os.path.join(root, "images", "val", im["file_name"]),
                     _animal_image(im["height"], im["width"], kps, 99))
    _make_pose_train_split(root, val)
    card = _train_extract_eval("configs/quokka.yaml", "quokka", "AP", "task.input_size=64")
    assert card["head"]["kind"] == "pose-bottomup" and card["head"]["num_joints"] == 7
    meta = json.loads(open("models/quokka/model.json").read())
    assert meta["predict_task"]["keypoints"]["name"] == "quokka"  # predict needs no dataset
    assert meta["predict_task"]["keypoints"]["flip_index"] == [1, 0, 3, 2, 4, 6, 5]


def test_segmentation_example_trains_and_evaluates(workdir):
    root = "data/cracks"
    info = json.loads(open(f"{root}/dataset_info.json").read())
    raw = sorted(int(v) for v in info["label_map"])  # the mask values the dataset uses: 0 and 255
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            h, w = 64, 96
            mask = np.full((h, w), raw[0], np.uint8)
            for _ in range(2):  # a few thin bright "cracks"
                p, q = rng.integers(0, [w, h]), rng.integers(0, [w, h])
                cv2.line(mask, tuple(int(v) for v in p), tuple(int(v) for v in q), raw[1], 3)
            img = cv2.GaussianBlur(rng.integers(90, 160, (h, w, 3), dtype=np.uint8), (3, 3), 0)
            img[mask == raw[1]] = (30, 30, 30)
            _write_image(os.path.join(root, info["img_dir"], split, f"{i:04d}{info['img_suffix']}"), img)
            _write_image(os.path.join(root, info["ann_dir"], split, f"{i:04d}{info['ann_suffix']}"), mask)
    card = _train_extract_eval("configs/cracks.yaml", "cracks", "mIoU", "task.crop_size=[64,64]")
    assert card["head"]["kind"] == "seg" and card["head"]["num_classes"] == 2
    assert json.loads(open("models/cracks/dataset_info.json").read())["classes"] == ["background", "crack"]
