"""``train-supernet --dry-run``: every shipped recipe checks and prints its plan against fake data in the
official layouts (generated here, a few tiny images each), and writes nothing."""
import json
import os

import cv2
import numpy as np
import pytest
import yaml

from scalenas.cli import main
from scalenas.data.keypoint_info import coco, crowdpose
from scalenas.space.space import SearchSpace
from scalenas.train.samplers import GroupedSampler
from scalenas.utils.runtime import resolve_amp

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def _pose_json(path, n_images: int, first_id: int, names) -> list[str]:
    """A keypoint JSON of ``n_images`` 64x80 images with one person each; returns the file names."""
    k = len(names)
    kps = [0.0] * (3 * k)
    kps[0:6] = [40, 25, 2, 35, 35, 2]
    images = [{"id": first_id + i, "file_name": f"{first_id + i:012d}.jpg", "height": 64, "width": 80}
              for i in range(n_images)]
    anns = [{"id": im["id"], "image_id": im["id"], "category_id": 1, "iscrowd": 0, "num_keypoints": 2,
             "area": 600, "bbox": [30, 20, 20, 30], "keypoints": kps} for im in images]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": 1, "name": "person", "keypoints": list(names)}]}, f)
    return [im["file_name"] for im in images]


def _images(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        assert cv2.imwrite(os.path.join(folder, name), np.full((64, 80, 3), 100, np.uint8))


def fake_coco(root):
    for split, first in (("train2017", 1), ("val2017", 1000)):
        _images(f"{root}/images/{split}", _pose_json(f"{root}/annotations/person_keypoints_{split}.json",
                                                     26, first, coco().keypoints))


def fake_crowdpose(root):
    names = _pose_json(f"{root}/json/crowdpose_trainval.json", 26, 1, crowdpose().keypoints)
    names += _pose_json(f"{root}/json/crowdpose_test.json", 4, 1000, crowdpose().keypoints)
    _images(f"{root}/images", names)


def fake_cityscapes(root):
    for split, n in (("train", 26), ("val", 2)):
        for i in range(n):
            stem = f"aachen_{i:06d}_000019"
            _images(f"{root}/leftImg8bit/{split}/aachen", [f"{stem}_leftImg8bit.png"])
            os.makedirs(f"{root}/gtFine/{split}/aachen", exist_ok=True)
            cv2.imwrite(f"{root}/gtFine/{split}/aachen/{stem}_gtFine_labelIds.png", np.full((64, 80), 7, np.uint8))


RECIPES = {"coco_w32_512": fake_coco, "coco_w48_640": fake_coco, "crowdpose_w48_640": fake_crowdpose,
           "cityscapes_w32": fake_cityscapes, "cityscapes_w48": fake_cityscapes,
           "coco_td_w32_256x192": fake_coco, "coco_td_w32_384x288": fake_coco, "coco_td_w48_384x288": fake_coco,
           "crowdpose_td_w32_256x192": fake_crowdpose}


def recipe_schedule(name: str) -> tuple[int, str]:
    """(epochs, "lr drops at ..." of 12 steps per epoch) of a shipped recipe: Cityscapes 484 epochs of poly,
    bottom-up pose 300 epochs (HigherHRNet), top-down pose 210 epochs (HRNet)."""
    if name.startswith("cityscapes"):
        return 484, ""
    if "_td_" in name:
        return 210, "; lr drops at epochs 170, 200 = steps 2,040, 2,400"
    return 300, "; lr drops at epochs 200, 260 = steps 2,400, 3,120"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_shipped_recipe_dry_runs_on_fake_official_data(name, tmp_path, capsys):
    RECIPES[name](str(tmp_path / "data"))
    run_dir = tmp_path / "run"
    # 26 train images: hold out 2, one image per process on 2 processes -> 12 steps per epoch, which
    # runs all 11 sampling groups (one person per image, so top-down's 24 person crops give the same)
    rc = main(["train-supernet", os.path.join(CONFIGS, f"{name}.yaml"), f"task.root={tmp_path / 'data'}",
               "task.search_holdout=2", "train.batch_size=1", f"run_dir={run_dir}", "--dry-run", "--processes", "2"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and not run_dir.exists()
    epochs, drops = recipe_schedule(name)
    unit = "person crops" if "_td_" in name else "images"
    assert "world size: 2 processes on cpu" in out and f"{unit} per step: 2 (1/process x 2 x accumulate 1)" in out
    # top-down trains on person crops (one per fake image): N counts them, the hold-out counts images
    n = f"{unit} of the images left after 2 held out" if "_td_" in name else "images after 2 held out"
    head = (f"schedule: {epochs} epochs x 12 steps/epoch = {epochs * 12:,} steps (N=24 train {n}; 1/process x "
            f"2 processes x accumulate 1)")
    assert head + drops in out
    assert f"precision: {resolve_amp('auto', 'cpu')[1]} (train.amp=auto)" in out
    # every full-scale recipe says what the paper starts from, so a run without it warns in one line
    assert [x for x in out if x.startswith("warning: model.pretrained is not set; the paper starts from ")]
    after = out[out.index("sampling groups (grouped), estimated images seen over the run:") + 1:]
    groups = [x for x in after if x.startswith("  ")]
    assert len(groups) == 11 and sum(int(g.split(": ")[1].split(" steps")[0].replace(",", "")) for g in groups) \
        == epochs * 12


@pytest.mark.parametrize("name, unit", [("coco_w32_512", "images"), ("coco_td_w32_256x192", "person crops")])
def test_a_batch_larger_than_the_train_split_names_the_task_unit(name, unit, tmp_path, capsys):
    fake_coco(str(tmp_path / "data"))
    rc = main(["train-supernet", os.path.join(CONFIGS, f"{name}.yaml"), f"task.root={tmp_path / 'data'}",
               "task.search_holdout=2", "train.batch_size=30", f"run_dir={tmp_path / 'run'}", "--dry-run"])
    assert rc == 2 and capsys.readouterr().err.strip() == (
        f"scalenas train-supernet: error: train split: 24 {unit} cannot fill one batch of 30 x 1 process(es); "
        f"lower train.batch_size or add data")


def test_dry_run_refuses_missing_files_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"task": {"name": "synthetic-regression", "size": 64, "num_train": 16},
                                   "model": {"pretrained": str(tmp_path / "hrnet.pth")}}))
    assert main(["train-supernet", str(cfg), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (f"scalenas train-supernet: error: model.pretrained: "
                                               f"{tmp_path / 'hrnet.pth'}: file not found")


@pytest.mark.parametrize("cycle", [None, 25])
def test_grouped_steps_per_group_counts_the_cycle(tiny_space_cfg, cycle):
    s = GroupedSampler(SearchSpace.from_dict(dict(tiny_space_cfg)), steps_per_cycle=cycle)
    counted = {}
    for step in range(103):
        name = s.groups[s.group_index(step)].name
        counted[name] = counted.get(name, 0) + 1
    assert s.steps_per_group(103) == {g.name: counted.get(g.name, 0) for g in s.groups}
