import pytest

TINY = {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
        "stage1_blocks": 1}


def tiny_cfg(run_dir, steps=12, **train):
    t = {"steps": steps, "batch_size": 4, "workers": 0, "optimizer": {"lr": 0.05}, "ckpt_every": 4,
         "progress": False, "tensorboard": False}
    t.update(train)
    return {"run_dir": str(run_dir), "seed": 1, "space": dict(TINY),
            "task": {"name": "synthetic-regression", "size": 64, "num_train": 32}, "train": t}


@pytest.fixture
def make_cfg():
    return tiny_cfg
