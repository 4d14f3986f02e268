"""torchrun --nproc_per_node=2 on CPU (gloo): both ranks end with identical weights; the loss decreases;
the logged loss is the mean of the two ranks' losses."""
import json
import os
import subprocess
import sys

import pytest
import torch


def test_torchrun_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        os.path.join(os.path.dirname(__file__), "ddp_worker.py"), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    infos = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for info in infos:
        assert info["world"] == 2
        losses = info["losses"]
        assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    # each rank sees other images: the local losses differ, and every rank logs their mean
    local0, local1 = infos[0]["local"], infos[1]["local"]
    assert len(local0) == len(local1) == 12 and all(a != b for a, b in zip(local0, local1))
    mean = [(a + b) / 2 for a, b in zip(local0, local1)]
    assert infos[0]["losses"] == pytest.approx(mean, rel=1e-12) and infos[1]["losses"] == infos[0]["losses"]
    logged = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [10, 12]
    assert [r["loss"] for r in logged] == pytest.approx([mean[9], mean[11]], rel=1e-12)
