"""Measured params and multiply-adds of a built network, to check the analytic profiler against.

Two independent counts:

* **Hooks** (the HRNet family's ``get_model_summary`` convention, which the published figures use):
  forward hooks on every Conv / ConvTranspose / BatchNorm / Linear (and LayerNorm / Embedding, for
  params) that actually runs. Params are the
  parameters of the executed modules (each module once, so blocks and edges that a plan skips are not
  counted). Multiply-adds are ``weight.numel() x output H x W`` per conv call (bias ignored), and the
  same for ``ConvTranspose2d``; for Linear ``weight.numel()`` per output row. BN, ReLU, upsampling and
  additions are not counted. Per image: the input batch is divided out.

* **FlopCounterMode** (``torch.utils.flop_counter``): counts FLOPs at the aten level as 2 x MACs, so it
  is halved here. It agrees with the hooks for ordinary convolutions, but for a *transposed*
  convolution it multiplies by the **input** pixels, not the output pixels. The HigherHRNet head's
  4x4 stride-2 deconv has 4x more output than input pixels, so there this count is lower by
  ``3/4 x weight.numel() x output pixels`` (see :func:`transposed_conv_gap`).

Both work on the meta device (shape-only), so full-resolution counts cost no memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

#: LayerNorm and Embedding add params only (the hrnas family's transformer has them; ScaleNets do not)
_COUNTED = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.Linear, nn.LayerNorm, nn.Embedding)


@dataclass(frozen=True)
class Measurement:
    params: int
    macs: int  # hooks convention (weight numel x output pixels), per image
    flop_counter_macs: int | None = None  # FlopCounterMode FLOPs / 2, per image

    @property
    def gflops_2p30(self) -> float:
        return self.macs / 2**30

    @property
    def gflops_1e9(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs, "flop_counter_macs": self.flop_counter_macs,
                "gflops_2p30": round(self.gflops_2p30, 4), "gflops_1e9": round(self.gflops_1e9, 4)}


def _dummy_input(model: nn.Module, input_hw, batch: int = 1) -> torch.Tensor:
    p = next(model.parameters())
    h, w = int(input_hw[0]), int(input_hw[1])
    return torch.zeros(batch, 3, h, w, device=p.device, dtype=p.dtype)


class _eval_no_grad:
    """Run in eval mode without autograd (BN must not update its statistics), then restore the mode."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.ng = torch.no_grad()
        self.ng.__enter__()

    def __exit__(self, *exc):
        self.ng.__exit__(*exc)
        self.model.train(self.was_training)


def hook_count(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(params of executed Conv/BN/Linear/LayerNorm/Embedding modules, conv+linear MACs per image) for one
    forward of ``x``."""
    seen: set[int] = set()
    totals = {"params": 0, "macs": 0}
    batch = x.shape[0]

    def hook(mod, _inp, out):
        if id(mod) not in seen:
            seen.add(id(mod))
            totals["params"] += sum(p.numel() for p in mod.parameters(recurse=False))
        if isinstance(mod, nn.modules.conv._ConvNd):
            totals["macs"] += mod.weight.numel() * out.shape[2:].numel()
        elif isinstance(mod, nn.Linear):
            totals["macs"] += mod.weight.numel() * (out.numel() // out.shape[-1] // batch)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)]
    try:
        with _eval_no_grad(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return totals["params"], totals["macs"]


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    """``FlopCounterMode`` total FLOPs / 2, per image (transposed convs counted at input resolution)."""
    with _eval_no_grad(model), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() // 2 // x.shape[0]


def transposed_conv_gap(model: nn.Module, x: torch.Tensor) -> int:
    """hooks MACs - FlopCounterMode MACs attributable to transposed convs (output vs input pixels), per image."""
    gap = {"macs": 0}

    def hook(mod, inp, out):
        gap["macs"] += mod.weight.numel() * (out.shape[2:].numel() - inp[0].shape[2:].numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    try:
        with _eval_no_grad(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return gap["macs"]


def measure(model: nn.Module, input_hw=None, x: torch.Tensor | None = None, flop_counter: bool = True) -> Measurement:
    """Measure ``model`` on ``x`` (or a zero image of ``input_hw``, batch 1, on the model's device/dtype)."""
    if x is None:
        if input_hw is None:
            raise ValueError("measure: give input_hw or x")
        x = _dummy_input(model, input_hw)
    params, macs = hook_count(model, x)
    fc = flop_counter_macs(model, x) if flop_counter else None
    return Measurement(params, macs, fc)
