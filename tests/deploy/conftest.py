"""Shared fixtures for the deployment tests: a tiny space, supernet checkpoints in the engine's
format (one trained on the synthetic task, others built directly for the segmentation and bottom-up
pose tasks on tiny generated datasets), and a CLI runner."""
import contextlib
import os
import random

import pytest
import torch

from scalenas.cli import main as cli_main
from scalenas.nets.supernet import SuperScaleNet
from scalenas.space.space import SearchSpace
from scalenas.train.config import RunConfig
from scalenas.tasks.base import build_task
from scalenas.utils.io import atomic_torch_save, package_versions

SYNTH_TASK = {"name": "synthetic-regression", "size": 64, "num_train": 16, "num_search": 8, "num_val": 4,
              "num_test": 4}
CALIB = ["--calib-images", "8", "--calib-batch-size", "4"]


@contextlib.contextmanager
def one_thread():
    """Tiny nets on a shared 2-core machine: with other jobs running, two OpenMP threads spend their time
    spin-waiting at barriers (a 4-step supernet training measured 37 s with 2 threads, 1.3 s with 1).
    OMP_NUM_THREADS also reaches the CLI, whose set-up sets torch's threads from it."""
    prev, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def run_cli(*argv) -> int:
    return cli_main([str(a) for a in argv])


def save_supernet_ckpt(path, net: SuperScaleNet, task_cfg: dict, step: int = 0, train: dict | None = None) -> str:
    """A checkpoint with the keys SupernetTrainer.state() writes, for a supernet built in the test."""
    cfg = RunConfig.model_validate({"space": net.space.to_dict(), "task": task_cfg, "train": train or {}})
    state = {"model": net.state_dict(), "step": step, "config": cfg.model_dump(mode="json"),
             "versions": package_versions(),
             "meta": {"format": "scalenas.supernet/1", "space": net.space.to_dict(), "head": net.head_spec.to_dict(),
                      "task": task_cfg, "bn_momentum": net.bn_momentum}}
    atomic_torch_save(state, str(path))
    return str(path)


@pytest.fixture(scope="session")
def synth_ckpt(tmp_path_factory, h):
    """A supernet briefly trained on the synthetic regression task (seg head)."""
    from scalenas.train.engine import train_supernet

    d = tmp_path_factory.mktemp("synth_supernet")
    cfg = {"run_dir": str(d / "run"), "seed": 1, "space": dict(h.TINY), "task": dict(SYNTH_TASK),
           "train": {"steps": 4, "batch_size": 4, "workers": 0, "optimizer": {"lr": 0.02}, "ckpt_every": 0,
                     "progress": False, "tensorboard": False}}
    with one_thread():
        return train_supernet(RunConfig.model_validate(cfg))["checkpoint"]


@pytest.fixture(scope="session")
def seg_setup(tmp_path_factory, h):
    """(checkpoint, task config, data root) for the segmentation task on a tiny generated dataset."""
    from scalenas.data.synth_seg import generate

    d = tmp_path_factory.mktemp("seg")
    root = str(d / "data")
    generate(root, train=4, val=2, test=1, size=(64, 96), seed=0)
    task_cfg = {"name": "segmentation", "format": "folder", "root": root, "crop_size": [64, 64],
                "scale_range": [1.0, 1.0], "workers": 0, "vis_images": 0}
    task = build_task(task_cfg)
    torch.manual_seed(0)
    net = SuperScaleNet(h.tiny_space(), task.head)
    return save_supernet_ckpt(d / "seg.pt", net, task_cfg), task_cfg, root


@pytest.fixture(scope="session")
def pose_setup(tmp_path_factory, h):
    """(checkpoint, task config, data root) for bottom-up pose on a tiny generated COCO-format dataset."""
    from scalenas.data.synth_pose import generate

    d = tmp_path_factory.mktemp("pose")
    root = str(d / "data")
    generate(root, train=4, val=2, test=0, size=(64, 64), seed=0)
    task_cfg = {"name": "pose-bottomup", "root": root,
                "train": {"images": "images/train", "annotations": "annotations/train.json"},
                "val": {"images": "images/val", "annotations": "annotations/val.json"},
                "input_size": 64, "num_deconv_blocks": 1, "workers": 0, "vis_images": 0}
    task = build_task(task_cfg)
    torch.manual_seed(0)
    net = SuperScaleNet(h.tiny_space(), task.head)
    return save_supernet_ckpt(d / "pose.pt", net, task_cfg), task_cfg, root


@pytest.fixture(scope="session")
def synth_model_dir(synth_ckpt, tmp_path_factory, h):
    """A model dir extracted (with calibration and evaluation on val) from the synthetic supernet."""
    from scalenas.deploy.extract import ExtractOptions, extract

    d = tmp_path_factory.mktemp("synth_model") / "model"
    arch_file = d.parent / "arch.json"
    arch_file.write_text(h.sample_arch(3).to_json(indent=1))
    with one_thread():
        extract(ExtractOptions(checkpoint=synth_ckpt, out=str(d), arch_file=str(arch_file), calib_images=8,
                               calib_batch_size=4, eval_split="val", latency_iters=2), log=lambda m: None)
    return str(d)


class Helpers:
    SYNTH_TASK, CALIB = SYNTH_TASK, CALIB
    save_supernet_ckpt = staticmethod(save_supernet_ckpt)
    cli = staticmethod(run_cli)

    def __init__(self, tiny_space_cfg: dict):
        self.TINY = tiny_space_cfg

    def tiny_space(self) -> SearchSpace:
        return SearchSpace.from_dict(dict(self.TINY))

    def sample_arch(self, seed: int, pose: bool = False):
        sp = self.tiny_space()
        a = sp.sample(random.Random(seed))
        return sp.apply_pose_rule(a) if pose else a


@pytest.fixture(scope="session")
def h(tiny_space_cfg):
    """Helpers shared by the test modules (pytest runs with --import-mode=importlib, so test modules
    cannot import this conftest), on the tiny space of ``tests/conftest.py``."""
    return Helpers(tiny_space_cfg)
