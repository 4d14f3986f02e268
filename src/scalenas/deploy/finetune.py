"""Optional fine-tuning of an extracted (static) ScaleNet with the task's own recipe.

The supernet run's ``train`` section supplies the optimiser (SGD / Adam / AdamW with its settings),
the schedule, batch size, precision (``train.amp``, resolved as training resolves it, so ``auto`` and a
fallback from ``bf16`` mean the same here), channels_last, gradient clipping and loader workers. The
schedule is re-laid over the fine-tuning length: milestones and warm-up, given in supernet steps,
are scaled by (fine-tune steps / supernet steps), so "decay at 2/3 of training" keeps its meaning.
Data order and augmentation are deterministic given the seed (the seeded step sampler of ``train.data``).
No distillation and no DDP: this is a short, plain loop for one static net.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from scalenas.errors import ScaleNASError
from scalenas.train.config import TrainCfg
from scalenas.train.data import StepBatchSampler, make_loader
from scalenas.train.optim import build_optimizer, build_scheduler
from scalenas.train.schedule import resolve_schedule
from scalenas.train.step import autocast, forward_loss, to_device
from scalenas.utils.runtime import resolve_amp


def _schedule(tc: TrainCfg, epochs: int, n: int):
    """(steps, schedule section in steps) of fine-tuning ``epochs`` over ``n`` training items."""
    if tc.epochs is not None:  # a recipe in epochs: its milestones resolve as a supernet run's do
        # one batch per step: this loop does not accumulate
        sched = resolve_schedule(tc.model_copy(update={"epochs": float(epochs), "accumulate": 1}), n, 1)
        return sched.steps, sched.apply(tc).schedule
    total = epochs * (n // tc.batch_size)
    ratio = total / max(1, tc.steps)
    return total, tc.schedule.model_copy(update={
        "milestones": [max(1, round(m * ratio)) for m in tc.schedule.milestones],
        "warmup_steps": int(math.ceil(tc.schedule.warmup_steps * ratio))})


def finetune(net: torch.nn.Module, task, train_cfg: dict | None, epochs: int | None, device="cpu", seed: int = 0,
             lr: float | None = None, log: Callable[[str], None] | None = print) -> dict:
    """Fine-tune ``net`` for ``epochs`` (None: the recipe's ``train.epochs``) with ``train_cfg``."""
    tc = TrainCfg.model_validate(train_cfg or {})
    if epochs is None:
        epochs = int(tc.epochs or 0)
    if epochs < 1:
        raise ScaleNASError(f"--finetune-epochs {epochs}: must be at least 1")
    opt_cfg = tc.optimizer.model_copy(update={"lr": lr}) if lr is not None else tc.optimizer
    ds = task.build_dataset("train", train=True)
    bs = tc.batch_size
    per_epoch = len(ds) // bs
    if per_epoch < 1:
        raise ScaleNASError(f"fine-tuning: the train split has {len(ds)} {task.sample_unit}, fewer than one batch "
                            f"of {bs} (train.batch_size of the fine-tuning recipe)")
    total, sched_cfg = _schedule(tc, epochs, len(ds))
    device = torch.device(device)
    net.to(device)
    if tc.channels_last:
        net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = build_optimizer(params, opt_cfg)
    sched = build_scheduler(opt, sched_cfg, total)
    loader = make_loader(ds, task.collate, StepBatchSampler(len(ds), bs, total, seed=seed), seed, tc.workers,
                         pin_memory=device.type == "cuda")
    precision, _ = resolve_amp(tc.amp, device)  # the trainer's decision: ``amp: auto`` means the same here
    amp = autocast(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    net.train()
    epoch_losses, running, step = [], 0.0, 0
    try:
        for batch in loader:
            batch = to_device(batch, device, tc.channels_last)
            _, loss, _ = forward_loss(net, task, batch, amp)
            if not bool(torch.isfinite(loss.detach())):
                raise ScaleNASError(f"fine-tuning: non-finite loss at step {step}; lower --finetune-lr")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            running += float(loss.detach())
            if step % per_epoch == 0:
                epoch_losses.append(running / per_epoch)
                running = 0.0
                if log:
                    log(f"fine-tune epoch {len(epoch_losses)}/{epochs}: loss {epoch_losses[-1]:.4f}")
    finally:
        net.eval()
        if tc.channels_last:
            net.to(memory_format=torch.contiguous_format)
    return {"epochs": epochs, "steps": step, "batch_size": bs, "optimizer": opt_cfg.name, "lr": opt_cfg.lr,
            "schedule": sched_cfg.name, "amp": precision, "seed": seed, "epoch_losses": epoch_losses,
            "final_loss": epoch_losses[-1] if epoch_losses else None}
