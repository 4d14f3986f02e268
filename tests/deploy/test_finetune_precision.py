"""Fine-tuning resolves ``train.amp`` as training does (``utils.runtime.resolve_amp``): ``auto`` is bf16
where bf16 is native, and a ``bf16`` request on hardware without it falls back to fp32 on the CPU."""
import warnings

import pytest
import torch

from scalenas.deploy.finetune import finetune
from scalenas.tasks.base import build_task
from scalenas.utils import runtime

RECIPE = {"steps": 4, "batch_size": 4, "workers": 0, "optimizer": {"name": "sgd", "lr": 0.01}}


class _Net(torch.nn.Module):
    """A stride-4 conv to the task's 4 outputs, recording the dtype its conv computed in."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 4, stride=4)
        self.dtypes: set = set()

    def forward(self, x):
        y = self.conv(x)
        self.dtypes.add(y.dtype)
        return y


@pytest.mark.parametrize("amp, native, precision, dtype", [
    ("auto", True, "bf16", torch.bfloat16),
    ("auto", False, "none", torch.float32),
    ("bf16", False, "none", torch.float32),
    ("none", True, "none", torch.float32),
])
def test_finetune_precision_is_the_trainers(monkeypatch, amp, native, precision, dtype):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    task = build_task({"name": "synthetic-regression", "size": 32, "num_train": 8})
    net = _Net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the bf16 fallback's warning (tests/utils/test_amp.py)
        res = finetune(net, task, {**RECIPE, "amp": amp}, epochs=1, log=None)
    assert res["amp"] == precision and net.dtypes == {dtype}
