"""evaluate() under torchrun with 2 CPU ranks (gloo): shards the images, reduces the confusion matrix,
and every rank returns the single-process metrics."""
import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalenas.tasks import TASKS

WORKER = textwrap.dedent('''
    import json, sys
    import torch, torch.distributed as dist
    import torch.nn.functional as F
    from scalenas.tasks import TASKS

    root, out = sys.argv[1], sys.argv[2]

    class Model(torch.nn.Module):  # class = brightest channel, at 1/4 resolution
        def forward(self, x):
            return F.avg_pool2d(x * 10, 4)

    dist.init_process_group("gloo")
    task = TASKS.get("segmentation").from_config(
        {"name": "segmentation", "root": root, "crop_size": [64, 64], "workers": 0})
    m = task.evaluate(Model(), "val")
    with open(f"{out}/rank{dist.get_rank()}.json", "w") as f:
        json.dump(m, f)
    dist.destroy_process_group()
''')


class Model(torch.nn.Module):  # the worker's model: class = brightest channel, at 1/4 resolution
    def forward(self, x):
        return F.avg_pool2d(x * 10, 4)


def test_evaluate_shards_and_reduces_over_two_ranks(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for d in ("images/val", "masks/val"):
        os.makedirs(root / d)
    for i in range(5):  # odd count: ranks get 3 and 2 images
        label = np.kron(rng.integers(0, 3, (4, 4)), np.ones((16, 16), np.int64)).astype(np.uint8)
        image = (np.eye(3, dtype=np.uint8)[label] * 200)[..., ::-1]  # class c -> RGB channel c
        image = np.ascontiguousarray(image + rng.integers(0, 60, image.shape).astype(np.uint8))
        cv2.imwrite(str(root / "images/val" / f"{i}.png"), image)
        cv2.imwrite(str(root / "masks/val" / f"{i}.png"), label)
    (root / "dataset_info.json").write_text(json.dumps({"classes": ["r", "g", "b"]}))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    want = TASKS.get("segmentation").from_config(
        {"name": "segmentation", "root": str(root), "crop_size": [64, 64], "workers": 0}).evaluate(Model(), "val")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(root), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["images"] == 5
        for k, v in want.items():
            assert got[k] == pytest.approx(v, nan_ok=True), k
    assert 0 < want["mIoU"] < 100
