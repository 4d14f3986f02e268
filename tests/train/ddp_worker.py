"""Run under torchrun by test_distributed.py: train a few steps, save this rank's weights, its logged
losses and the local losses it contributed to each step's mean over ranks."""
import json
import os
import sys

import torch

from scalenas.train.config import RunConfig
from scalenas.train import engine
from scalenas.train.engine import SupernetTrainer

local = []  # this rank's own loss of each step, as handed to the mean over ranks
_mean = engine.all_reduce_mean


def _recording_mean(values, info):
    local.append(values["loss"])
    return _mean(values, info)


engine.all_reduce_mean = _recording_mean

out = sys.argv[1]
cfg = RunConfig.model_validate({
    "run_dir": os.path.join(out, "run"), "seed": 3,
    "space": {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
              "stage1_blocks": 1},
    "task": {"name": "synthetic-regression", "size": 64, "num_train": 32},
    "train": {"steps": 12, "batch_size": 4, "workers": 0, "optimizer": {"lr": 0.05}, "ckpt_every": 0,
              "progress": False, "tensorboard": False},
})
tr = SupernetTrainer(cfg)
res = tr.train()  # ends with a checkpoint, which broadcasts rank 0's BN statistics
rank = tr.info.rank
torch.save(tr.net.state_dict(), os.path.join(out, f"rank{rank}.pt"))
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"losses": res["losses"], "local": local, "world": tr.info.world_size}, f)
tr.close()
