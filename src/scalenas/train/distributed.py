"""Distributed set-up for ``torchrun`` (gloo on CPU, nccl on CUDA); a plain single process otherwise."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from scalenas.utils.runtime import rank_and_world


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo(0, 1, local, dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")  # reads RANK and WORLD_SIZE itself
    rank, world = rank_and_world()
    return DistInfo(rank, world, local, dev)


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP with unused-parameter detection (each step trains a different subnet); SyncBN on CUDA only
    (torch's SyncBatchNorm refuses CPU tensors)."""
    if not info.enabled:
        return model
    if info.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index],
                                                         find_unused_parameters=True)
    return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def sync_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Broadcast rank 0's buffers (BN running statistics) to every rank."""
    if not info.enabled:
        return
    for b in model.buffers():
        dist.broadcast(b, 0)


def all_finite(loss: torch.Tensor, info: DistInfo) -> bool:
    """True when the loss is finite on every rank (so all ranks stop together)."""
    ok = torch.isfinite(loss).all()
    if not info.enabled:
        return bool(ok)
    flag = torch.tensor([0.0 if ok else 1.0], device=loss.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag.item() == 0.0
