"""A tiny supernet trained once per session on the synthetic task, and a small search config."""
import os

import pytest
import torch

# 100 Adam steps over 800 distinct synthetic images (no repeats: the 64-image default overfits) give
# subnets with R2 ~ 40-55 on the search split; SGD or fewer steps leave R2 below 0 and make BN
# comparisons meaningless.
TRAIN = {"steps": 100, "batch_size": 8, "workers": 0, "threads": 1, "optimizer": {"name": "adam", "lr": 0.01},
         "ckpt_every": 0, "progress": False, "tensorboard": False}


@pytest.fixture(scope="session")
def supernet_ckpt(tmp_path_factory, tiny_space_cfg):
    from scalenas.train.config import RunConfig
    from scalenas.train.engine import train_supernet

    run = tmp_path_factory.mktemp("supernet")
    cfg = {"run_dir": str(run), "seed": 1, "space": dict(tiny_space_cfg),
           "task": {"name": "synthetic-regression", "size": 64, "num_train": 1024, "num_search": 16},
           "train": dict(TRAIN)}
    prev = torch.get_num_threads()
    try:
        res = train_supernet(RunConfig.model_validate(cfg))
    finally:
        torch.set_num_threads(prev)
    assert os.path.exists(res["checkpoint"])
    return res["checkpoint"]


def small_search(**over) -> dict:
    """A few seconds of search on the tiny supernet; one thread per evaluation so that results are
    bit-identical across worker counts and processes."""
    cfg = {"initial": 8, "population": 6, "parents": 6, "generations": 3, "calib_images": 16, "calib_batch_size": 8,
           "eval_max_images": 8, "threads_per_worker": 1, "seed": 3}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="session")
def search_cfg():
    """``search_cfg(**overrides) -> dict``: the small search settings."""
    return small_search
