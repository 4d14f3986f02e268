"""A top-down pose supernet through the whole product, small: train -> search (AP on the held-out split
with ground-truth boxes) -> extract --pick (the recorded AP reproduces) -> fine-tune with a recipe in
epochs -> ONNX export with parity -> eval (eager = ONNX Runtime; with a detector's boxes) -> predict with
and without --boxes; and the one-line refusals of a bad boxes file."""
import json
import math
import os

import pytest

from scalenas.data.synth_pose import generate
from scalenas.deploy.boxes import PersonBoxes
from scalenas.errors import ScaleNASError
from scalenas.search.pareto_doc import pick
from scalenas.search.runner import run_search
from scalenas.tasks.base import build_task
from scalenas.train.config import RunConfig
from scalenas.train.engine import train_supernet
from scalenas.utils.io import read_json


@pytest.fixture(scope="module")
def topdown(tmp_path_factory, h, pose_run_config):
    """(checkpoint, search run dir, data root) of a briefly trained top-down supernet and a tiny search."""
    d = tmp_path_factory.mktemp("topdown")
    root = str(d / "data")
    generate(root, train=6, val=2, test=0, size=(96, 96), seed=0)
    task = {"name": "pose-topdown", "root": root, "keypoints": "coco", "input_hw": [64, 64], "search_holdout": 2,
            "workers": 0, "vis_images": 0, "inference": {"batch_size": 8}}
    cfg = pose_run_config(d / "run", task, h.TINY, {"steps": 4, "batch_size": 4, "workers": 0,
                                                    "optimizer": {"lr": 0.002}}, synth_splits=("train", "val"))
    ckpt = train_supernet(RunConfig.model_validate(cfg))["checkpoint"]
    run = str(d / "search")
    run_search(ckpt, run, {"initial": 3, "population": 2, "parents": 2, "generations": 0, "calib_images": 8,
                           "calib_batch_size": 4, "eval_split": "search", "workers": 1, "input_hw": [64, 64]},
               progress=False)
    return ckpt, run, root


def _gt_detections(root: str, split: str, path) -> dict:
    """The split's ground-truth person boxes written as a detector's COCO-results file (score 0.9)."""
    ann = read_json(os.path.join(root, "annotations", f"{split}.json"))
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
            for a in ann["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
    path.write_text(json.dumps(dets))
    return ann


def test_search_extract_finetune_export_eval(topdown, tmp_path, h, capsys):
    ckpt, run, root = topdown
    recs = [json.loads(x) for x in open(os.path.join(run, "evaluations.jsonl")) if x.strip()]
    assert recs and all(r["metric_name"] == "AP" and 0.0 <= r["metric"] <= 100.0 for r in recs)
    chosen = pick(run)
    out = tmp_path / "m"
    assert h.cli("extract", ckpt, "--pick", run, "-o", out, "--eval-split", "search", "--latency-iters", "1") == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["head"]["kind"] == "pose-topdown" and meta["outputs"][0]["name"] == "heatmaps"
    assert meta["predict_task"]["train"] is None and meta["predict_task"]["inference"]["boxes"] == "gt"
    assert math.isclose(meta["metric"]["value"], chosen["metric"], rel_tol=1e-6, abs_tol=1e-9)

    # the released models' fine-tuning step, from a recipe in epochs (here 2 epochs, a drop after the first)
    recipe = tmp_path / "ft.yaml"
    recipe.write_text("train:\n  epochs: 2\n  batch_size: 4\n  workers: 0\n  optimizer: {name: adam, lr: 1.0e-4, "
                      "weight_decay: 0.0}\n  schedule: {name: multistep, milestones_epochs: [1]}\n")
    ft_dir = tmp_path / "ft"
    assert h.cli("extract", ckpt, "--pick", run, "-o", ft_dir, "--finetune", recipe, "--latency-iters", "0") == 0
    ft = json.loads((ft_dir / "model.json").read_text())["finetune"]
    crops = len(build_task(meta["task"]).build_dataset("train", train=True))
    assert ft["steps"] == 2 * (crops // 4) and ft["optimizer"] == "adam" and len(ft["epoch_losses"]) == 2
    assert ft["config"] == str(recipe) and math.isfinite(ft["final_loss"])

    assert h.cli("export", out) == 0  # refuses (exit 2) unless ONNX Runtime matches PyTorch
    values = []
    for extra in ([], ["--onnx"]):
        assert h.cli("eval", out, "--split", "val", "--json", tmp_path / "ap.json", *extra) == 0
        values.append(json.loads((tmp_path / "ap.json").read_text())["value"])
    assert math.isclose(values[0], values[1], abs_tol=1e-3)

    dets = tmp_path / "dets.json"
    _gt_detections(root, "val", dets)
    capsys.readouterr()
    assert h.cli("eval", out, "--split", "val", "--boxes", dets, "--json", tmp_path / "det.json") == 0
    doc = json.loads((tmp_path / "det.json").read_text())
    assert doc["boxes"] == str(dets) and 0.0 <= doc["value"] <= 100.0
    assert f"person boxes {dets}" in capsys.readouterr().out


def test_predict_with_and_without_boxes(topdown, tmp_path, h, capsys):
    ckpt, run, root = topdown
    out = tmp_path / "m"
    assert h.cli("extract", ckpt, "--pick", run, "-o", out, "--latency-iters", "0") == 0
    ann = _gt_detections(root, "val", tmp_path / "dets.json")
    image = ann["images"][0]
    path = os.path.join(root, "images", "val", image["file_name"])
    # synthetic file names are not ids, so name the boxes by file
    named = [{**d, "file_name": image["file_name"]} for d in json.loads((tmp_path / "dets.json").read_text())
             if d["image_id"] == image["id"]]
    (tmp_path / "named.json").write_text(json.dumps(named))
    capsys.readouterr()
    assert h.cli("predict", out, path, "-o", tmp_path / "p", "--boxes", tmp_path / "named.json") == 0
    stem = os.path.splitext(image["file_name"])[0]
    people = json.loads((tmp_path / "p" / f"{stem}.json").read_text())["prediction"]["people"]
    assert [p["box"] for p in people] == [[round(v, 3) for v in d["bbox"]] for d in named]
    assert all(len(p["keypoints"]) == 17 for p in people)

    capsys.readouterr()
    assert h.cli("predict", out, path, "-o", tmp_path / "w") == 0
    said = capsys.readouterr().out
    assert said.count("note: no --boxes: each image is taken as one person") == 1
    doc = json.loads((tmp_path / "w" / f"{stem}.json").read_text())["prediction"]
    assert len(doc["people"]) == 1 and doc["people"][0]["box"] == [0.0, 0.0, 96.0, 96.0] and "note" in doc

    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 0, 5], "score": 1}]))
    assert h.cli("predict", out, path, "-o", tmp_path / "b", "--boxes", tmp_path / "bad.json") == 2
    err = capsys.readouterr().err.strip()
    bad = tmp_path / "bad.json"
    assert err.startswith(f"scalenas predict: error: {bad}: detection 0 (image 1) has a degenerate box")
    assert "\n" not in err


@pytest.mark.parametrize("doc, message", [
    ({"image_id": 1}, "expected a list of detections"),
    ([{"bbox": [0, 0, 5, 5], "score": 1}], "detection 0 has no 'image_id' (or 'file_name')"),
    ([{"image_id": 3, "bbox": [0, 0, 5], "score": 1}], "detection 0 (image 3) has a degenerate box [0, 0, 5]"),
    ([{"image_id": 3, "bbox": [0, 0, 5, float("nan")], "score": 1}], "detection 0 (image 3) has a degenerate box"),
    ([{"image_id": "x", "bbox": [0, 0, 5, 5], "score": 1}], "detection 0: image_id 'x' is not an integer"),
])
def test_person_boxes_refuse_bad_files_in_one_line(tmp_path, doc, message):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ScaleNASError) as e:
        PersonBoxes(str(path))
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_person_boxes_match_by_file_name_then_by_the_id_in_the_name(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([
        {"image_id": 397133, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 397133, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.9},  # a car: skipped
        {"image_id": 7, "file_name": "photo.jpg", "bbox": [5, 6, 7, 8]}]))
    boxes = PersonBoxes(str(path))
    assert boxes.for_image("/x/000000397133.jpg") == ([[1.0, 2.0, 3.0, 4.0, 0.5]], "image id 397133")
    assert boxes.for_image("photo.jpg") == ([[5.0, 6.0, 7.0, 8.0, 1.0]], "file name photo.jpg")
    assert boxes.for_image("other.jpg")[0] == [] and boxes.for_image("000000000007.jpg")[0] == []


@pytest.mark.parametrize("text, message", [
    ("model: {init: hrnet}\n", "a fine-tuning config needs a 'train' section"),
    ("train: {epochs: 20, optimiser: {name: adam}}\n", "train.optimiser"),
])
def test_a_bad_finetune_recipe_is_one_line_before_any_work(tmp_path, h, capsys, text, message):
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(text)
    (tmp_path / "arch.json").write_text(h.sample_arch(0, pose=True).to_json())
    assert h.cli("extract", tmp_path / "missing.pt", tmp_path / "arch.json", "-o", tmp_path / "m",
                 "--finetune", recipe) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"scalenas extract: error: {recipe}: ") and message in err and "\n" not in err
