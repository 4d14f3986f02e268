"""Schedules stated in epochs resolve to optimiser steps from the data, batch, processes and accumulation."""
import os
import re

import pytest
import torch
import yaml

from scalenas.config import load_config, validate_section
from scalenas.errors import ScaleNASError
from scalenas.train.config import RunConfig, TrainCfg
from scalenas.train.data import StepBatchSampler
from scalenas.train.engine import SupernetTrainer, train_supernet
from scalenas.train.schedule import resolve_schedule

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
COCO_PEOPLE = 64_115  # COCO train2017 images with people (the pose task's train index)


@pytest.mark.parametrize("world", [1, 4, 8])
def test_coco_w32_recipe_is_300_epochs_whatever_the_gpu_count(world):
    cfg = validate_section(RunConfig, load_config(os.path.join(CONFIGS, "coco_w32_512.yaml")))
    held = cfg.task["search_holdout"]
    s = resolve_schedule(cfg.train, COCO_PEOPLE - held, world)  # the dataset length is all it reads
    per_epoch = (COCO_PEOPLE - 5000) // (12 * world)
    assert (s.epochs, s.milestone_epochs, s.batches_per_epoch) == (300, (200, 260), per_epoch)
    assert (s.steps, s.milestones) == (300 * per_epoch, (200 * per_epoch, 260 * per_epoch))
    assert resolve_schedule(cfg.train, COCO_PEOPLE - held, world) == s  # pure: a resume recomputes the same
    if world == 4:
        assert s.describe(held) == (
            "schedule: 300 epochs x 1,231 steps/epoch = 369,300 steps (N=59,115 train images after 5,000 held "
            "out; 12/process x 4 processes x accumulate 1); lr drops at epochs 200, 260 = steps 246,200, 320,060")


@pytest.mark.parametrize("name", ["coco_w32_512", "coco_w48_640", "crowdpose_w48_640", "cityscapes_w32",
                                  "cityscapes_w48", "coco_td_w32_256x192", "coco_td_w32_384x288",
                                  "coco_td_w48_384x288", "crowdpose_td_w32_256x192"])
def test_full_scale_recipes_state_epochs(name):
    cfg = validate_section(RunConfig, load_config(os.path.join(CONFIGS, f"{name}.yaml")))
    t = cfg.train
    # segmentation: 484 epochs of poly; bottom-up pose (HigherHRNet): 300, drops at 200, 260; top-down pose
    # (HRNet, method §5.4): 210, drops at 170, 200, Adam 1e-3, batch per GPU 48 / 32 / 12 by width and input
    epochs, drops = {"cityscapes": (484, []), "td": (210, [170, 200]), "bu": (300, [200, 260])}[
        "cityscapes" if name.startswith("cityscapes") else "td" if "_td_" in name else "bu"]
    assert t.steps is None and t.epochs == epochs
    assert t.schedule.milestones == [] and t.schedule.milestones_epochs == drops
    if "_td_" in name:
        assert (t.optimizer.name, t.optimizer.lr, t.schedule.gamma) == ("adam", 1e-3, 0.1)
        hw = tuple(cfg.task["input_hw"])
        assert t.batch_size == {(32, (256, 192)): 48, (32, (384, 288)): 32, (48, (384, 288)): 12}[(cfg.space.width, hw)]
        assert cfg.task["sigma"] == {(256, 192): 2.0, (384, 288): 3.0}[hw] and list(cfg.search["input_hw"]) == list(hw)


def _step_epochs(sampler: StepBatchSampler, accum: int) -> list[set[int]]:
    """The epochs each optimiser step's micro-batches come from."""
    out, cur = [], set()
    for i, mb in enumerate(sampler):
        cur |= {e for e, _ in mb}
        if i % accum == accum - 1:
            out.append(cur)
            cur = set()
    return out


def test_epochs_match_the_step_sampler_with_accumulation():
    t = TrainCfg(epochs=3, batch_size=4, accumulate=3,
                 schedule={"name": "multistep", "milestones_epochs": [1, 2], "warmup_epochs": 0.5})
    s = resolve_schedule(t, 101, 1)
    # 25 micro-batches per epoch, 3 per step: epoch 1 starts inside step 8, so its first whole step is 9
    assert (s.batches_per_epoch, s.steps, s.milestones, s.warmup_steps) == (25, 25, (9, 17), 5)
    epochs = _step_epochs(StepBatchSampler(101, 4, s.steps, accumulate=3), 3)
    assert epochs[8] == {0, 1} and epochs[9] == {1} and epochs[16] == {1, 2} and epochs[17] == {2}
    assert epochs[-1] == {2}  # 75 micro-batches: exactly three passes
    assert s.describe().endswith("lr drops at epochs 1, 2 = steps 9, 17; warm-up 5 steps (0.6 epochs)")


def test_steps_still_accepted_and_shown_in_epochs():
    t = TrainCfg(steps=100, batch_size=4, schedule={"name": "multistep", "milestones": [50]})
    s = resolve_schedule(t, 33, 2)  # 4 micro-batches per epoch
    assert (s.steps, s.milestones, s.epochs, s.in_epochs) == (100, (50,), 25, False)
    assert s.describe() == ("schedule: 100 steps = 25 epochs x 4 steps/epoch (N=33 train images; 4/process x "
                            "2 processes x accumulate 1); lr drops at epochs 12.5 = steps 50")
    assert TrainCfg().steps == 1000 and TrainCfg(epochs=2).steps is None
    # top-down tasks train on person crops: N counts them, the hold-out counts images
    assert "(N=33 train person crops of the images left after 8 held out; 4/process" in s.describe(8, "person crops")


@pytest.mark.parametrize("train, message", [
    ({"steps": 10, "epochs": 2}, "train.steps and train.epochs: give one of them, not both"),
    ({"schedule": {"milestones": [5], "milestones_epochs": [1]}},
     "train.schedule.milestones and train.schedule.milestones_epochs: give one of them, not both"),
    ({"schedule": {"warmup_steps": 5, "warmup_epochs": 1}},
     "train.schedule.warmup_steps and train.schedule.warmup_epochs: give one of them, not both"),
])
def test_a_length_in_both_units_is_one_line_naming_both_keys(train, message):
    with pytest.raises(ScaleNASError, match=re.escape(message)) as e:
        validate_section(RunConfig, {"train": train})
    assert "\n" not in str(e.value)


def test_epochs_override_to_steps_with_null():
    path = os.path.join(CONFIGS, "coco_w32_512.yaml")
    cfg = validate_section(RunConfig, load_config(path, ["train.epochs=null", "train.steps=2",
                                                         "train.schedule.milestones_epochs=[]"]))
    assert (cfg.train.steps, cfg.train.epochs) == (2, None)


def test_engine_runs_epochs_and_refuses_a_resume_that_resolves_otherwise(tmp_path, make_cfg, capsys):
    # 32 images at 4 per step: 8 steps per epoch
    raw = make_cfg(tmp_path / "run", steps=None, epochs=1.5, ckpt_every=4,
                   schedule={"name": "multistep", "milestones_epochs": [1]})
    res = train_supernet(RunConfig.model_validate(raw))
    assert res["steps"] == 12
    assert ("schedule: 1.5 epochs x 8 steps/epoch = 12 steps (N=32 train images; 4/process x 1 process x "
            "accumulate 1); lr drops at epochs 1 = steps 8") in capsys.readouterr().out.splitlines()
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert (recorded["steps"], recorded["epochs"], recorded["schedule"]["milestones"]) == (12, None, [8])
    same = SupernetTrainer(RunConfig.model_validate(raw), resume="auto")
    same.close()
    assert same.step == 12  # the same resolution resumes
    raw["train"]["batch_size"] = 8  # 4 steps per epoch now: 6 steps, the drop at 4
    threads = torch.get_num_threads()  # the refused trainer never reaches close(), which restores them
    try:
        with pytest.raises(ScaleNASError, match=re.escape("resume: train.epochs resolves to 6 steps (milestones "
                                                          "[4]) with 1 process(es) x 8 x accumulate 1")):
            SupernetTrainer(RunConfig.model_validate(raw), resume="auto")
    finally:
        torch.set_num_threads(threads)
