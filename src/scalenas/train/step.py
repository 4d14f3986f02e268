"""The pieces of one training step that the supernet engine and the static fine-tuning loop
(``deploy.finetune``) share: moving a batch to the device, and forward + loss under autocast.

Outputs are cast to float32 before the loss, so that under bf16 autocast the loss is still
computed in full precision.
"""
from __future__ import annotations

from typing import Any

import torch


def tree_float(x):
    if isinstance(x, (tuple, list)):
        return type(x)(tree_float(v) for v in x)
    return x.float()


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            v = v.to(device, non_blocking=True)
            if k == "image" and channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a precision resolved by ``utils.runtime.resolve_amp`` ("bf16", "fp16" or
    "none"), so training and fine-tuning decide ``train.amp`` the same way."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "none")


def forward_loss(model: torch.nn.Module, task, batch: dict, amp) -> tuple[Any, torch.Tensor, dict[str, float]]:
    """``model`` on ``batch["image"]`` under ``amp`` (a ``torch.autocast``), then the task's loss:
    (float32 outputs, scalar loss, named loss parts)."""
    with amp:
        out = model(batch["image"])
    out = tree_float(out)
    loss, parts = task.loss(out, batch)
    return out, loss, parts
