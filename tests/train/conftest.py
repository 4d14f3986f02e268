import functools

import pytest


def tiny_cfg(space: dict, run_dir, steps=12, **train):
    t = {"steps": steps, "batch_size": 4, "workers": 0, "optimizer": {"lr": 0.05}, "ckpt_every": 4,
         "progress": False, "tensorboard": False}
    t.update(train)
    return {"run_dir": str(run_dir), "seed": 1, "space": dict(space),
            "task": {"name": "synthetic-regression", "size": 64, "num_train": 32}, "train": t}


@pytest.fixture
def make_cfg(tiny_space_cfg):
    """``make_cfg(run_dir, steps=12, **train) -> dict``: a run config of the tiny space on the synthetic task."""
    return functools.partial(tiny_cfg, tiny_space_cfg)
