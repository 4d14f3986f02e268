"""BN recalibration (method §6.2): re-estimate the running statistics of the active subnet.

The calibration set is a fixed, cached list of training batches with training augmentation, built
once (seeded permutation, seeded augmentation), so thousands of calibrations reuse the same tensors
and memory stays flat: no data loader is rebuilt per candidate.

Only the BN layers the subnet actually runs are reset (a forward pre-hook sees them), so the shared
statistics of layers the subnet does not use are left alone. Each reset layer switches to a
cumulative average (``momentum=None``) over the calibration batches, in train mode without
gradients; γ/β are unchanged. (torch accumulates the unbiased batch variance; the reference the
biased one: the difference is a factor n/(n-1) with n = B·H·W pixels, negligible here.)
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from scalenas.data.seeded import SeededSamples

CALIB_SEED = 937162211  # the reference's fixed permutation seed


class Calibrator:
    def __init__(self, task, num_images: int = 64, batch_size: int = 16, seed: int = CALIB_SEED,
                 device: str | torch.device = "cpu", channels_last: bool = True):
        ds = task.build_dataset("train", train=True)
        n = min(num_images, len(ds))
        order = np.random.default_rng(seed).permutation(len(ds))[:n]
        seeded = SeededSamples(ds, seed)
        self.batches: list[torch.Tensor] = []
        for s in range(0, n, batch_size):
            items = [seeded[(0, int(i))] for i in order[s:s + batch_size]]
            x = task.collate(items)["image"].to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.batches.append(x)
        self.num_images = n
        self.settings = {"num_images": n, "batch_size": batch_size, "seed": seed}
        self.last_layers: list[_BatchNorm] = []

    @torch.no_grad()
    def calibrate(self, model: torch.nn.Module) -> int:
        """Recalibrate ``model`` (a supernet with an active arch, or a ScaleNet) in place; returns the
        number of BN layers recalibrated."""
        seen: dict[_BatchNorm, float | None] = {}

        def pre_hook(bn, _inp):
            if bn not in seen:
                seen[bn] = bn.momentum
                bn.reset_running_stats()
                bn.momentum = None  # cumulative moving average over the calibration batches

        hooks = [m.register_forward_pre_hook(pre_hook) for m in model.modules() if isinstance(m, _BatchNorm)]
        was_training = model.training
        model.train()
        try:
            for x in self.batches:
                model(x)
        finally:
            for h in hooks:
                h.remove()
            for bn, mom in seen.items():
                bn.momentum = mom
            model.train(was_training)
        self.last_layers = list(seen)  # the BN layers this calibration reset, in forward order
        return len(seen)


@torch.no_grad()
def bn_stats_from_batch(net: torch.nn.Module, x: torch.Tensor) -> None:
    """Replace every BN layer's running statistics by the cumulative statistics of one batch ``x``
    and leave ``net`` in eval mode. For randomly initialised nets that are timed or exported: eval-mode
    activations then keep a trained net's scale (no bf16 overflow, no denormals skewing timings)."""
    for m in net.modules():
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()(x)
    net.eval()
