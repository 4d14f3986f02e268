"""HR-NAS's fine-grained progressive shrinking: train an ``hrnas`` network while an L1 penalty on the BN
gamma of its hidden channels (and transformer tokens), weighted by what each one costs, drives the
cheap-to-lose ones to zero, and remove them physically as training goes (HR-NAS ``utils/prune.py``,
``train.py:shrink_model``; Ding et al., CVPR 2021, §3.3).

The loss is ``task loss + rho(t) * sum_u w_u * |gamma_u|_1``; unit u is one kernel path of one block
(its depthwise BN's gamma) or one block's tokens (its transformer's input BN). ``w_u`` is the
multiply-adds one channel (token) of u costs at the run's input size, divided by the mean cost of a
channel over the starting network, ``sum_u n_u c_u / sum_u n_u`` (HR-NAS's ``penalty_normalizer``), so
a typical channel has weight 1 and ``rho`` keeps its meaning across input sizes. ``rho(t)`` rises
linearly from 0 to ``shrink.rho`` over the warm-up, then stays (HR-NAS: ``scheduler: linear``,
``stepwise: True``, ``epoch_free: 0``).

Every ``check_every`` steps, the channels with ``|gamma| <= threshold`` are counted; when the
multiply-adds they hold reach ``step_gflops`` (HR-NAS's ``model_shrink_delta_flops``, 1e6 MACs), they
are removed (``nets.hrnas.shrink``: exact for gamma = 0) and training goes on with the smaller net.
HR-NAS has no FLOPs target (its ``rho`` decides the size); we add one: a removal that would go below
``target_gflops`` takes only the smallest-|gamma| channels until the target is met, and once the
network is within ``tolerance`` (5%) above the target the penalty is switched off and nothing more
is removed (the kept channels would otherwise be pushed towards a threshold they will never be cut
at). Training then **continues to the end of its schedule**, as HR-NAS trains all ``num_epochs``
whatever the size (``shrink.after_target: stop`` ends it there instead). At the last step HR-NAS
shrinks once more whatever the saving; so do we.

Optimiser state: the momentum (SGD) or moments (Adam/AdamW) of the kept channels follow them, sliced
by the same indices as the weights (``nets.hrnas.shrink_tensors``), as HR-NAS's ``compress_by_mask``
does; rebuilding the optimiser instead would zero the momentum of every weight of the network at each
shrink, a jolt the schedule never planned. The LR schedule continues (its state is restored).
A checkpoint holds the current (shrunk) arch with the weights, optimiser, schedule, RNG and the
shrink bookkeeping, so a killed run resumes exactly.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from scalenas.config import Strict
from scalenas.errors import ScaleNASError
from scalenas.nets.hrnas import HRNASNet, prunable_units, shrink, shrink_tensors
from scalenas.space.hrnas import HRNAS_STAGES, BlockArch, HRNASArch, HRNASSpace
from scalenas.space.hrnas_profile import channel_macs, hrnas_profile, level_pixels, token_macs
from scalenas.train import checkpoint as ckpt
from scalenas.train.config import ModelCfg, TrainCfg, _one_of
from scalenas.train.distributed import wrap_ddp
from scalenas.train.engine import SupernetTrainer
from scalenas.train.optim import build_optimizer, build_scheduler

GFLOPS_SCALE = {"1e9": 1e9, "2p30": 2.0**30}


# ---- configuration -------------------------------------------------------------------------------------
class HRNASSpaceCfg(Strict):
    """The ``space:`` section of a shrink run: ``HRNASSpace``'s fields, validated by it."""

    family: Literal["hrnas"]
    stem_channels: list[int] = [24, 24]
    stages: list = [[list(b), list(c)] for b, c in HRNAS_STAGES]
    kernel_sizes: list[int] = [3, 5, 7]
    expand_ratio: float = 4.0
    width_mult: float = 1.0
    transformer_tokens: int = 0

    def build(self) -> HRNASSpace:
        return HRNASSpace.from_dict(self.model_dump())

    @model_validator(mode="after")
    def _valid(self):
        self.build()  # a ScaleNASError naming the space key
        return self


class ShrinkCfg(Strict):
    rho: float = Field(1.4e-4, ge=0, description="L1 weight after the warm-up (HR-NAS seg_cityscapes: 1.4e-4)")
    warmup_steps: int = Field(0, ge=0)
    warmup_epochs: float = Field(0.0, ge=0)
    threshold: float = Field(1e-3, gt=0, description="|gamma| at or below which a channel is removed")
    step_gflops: float = Field(1e-3, ge=0, description="the least saving that triggers a removal")
    target_gflops: float = Field(gt=0)
    gflops_convention: Literal["1e9", "2p30"] = "1e9"
    tolerance: float = Field(0.05, ge=0, lt=1)
    check_every: int = Field(100, ge=1, description="steps between two shrink checks")
    after_target: Literal["continue", "stop"] = "continue"
    #: the input size (H, W) costs are counted at; None: the task's input (crop) size
    input_hw: Optional[tuple[int, int]] = None

    @model_validator(mode="after")
    def _one_unit(self):
        _one_of(self.warmup_steps, self.warmup_epochs, "shrink.warmup_steps", "shrink.warmup_epochs")
        return self


class ShrinkRunConfig(Strict):
    run_dir: str = "runs/shrink"
    seed: int = 0
    space: HRNASSpaceCfg
    task: dict = {"name": "segmentation"}
    model: ModelCfg = ModelCfg()
    train: TrainCfg = TrainCfg()
    shrink: ShrinkCfg

    @model_validator(mode="after")
    def _supported(self):
        if self.train.distill.teacher != "none":
            raise ScaleNASError(f"train.distill.teacher: {self.train.distill.teacher!r}; a shrink run trains one "
                                f"network without distillation (use 'none')")
        if self.model.pretrained:
            raise ScaleNASError("model.pretrained: a shrink run starts from its own initialisation "
                                "(the hrnas family has no pretrained weights to import)")
        return self


# ---- the penalty ---------------------------------------------------------------------------------------
def penalty_normaliser(space: HRNASSpace, input_hw) -> float:
    """HR-NAS's ``penalty_normalizer``: the mean multiply-adds of one hidden channel (or token) over the
    starting network (``space.largest()``), each unit's per-channel cost weighted by its channels."""
    res = level_pixels(input_hw, space.num_levels)
    num = den = 0
    for sl in space.slots():
        n = space.max_hidden(sl.cin)
        for k in space.kernel_sizes:
            num, den = num + n * channel_macs(sl, k, res), den + n
        if sl.transformer:
            num, den = num + space.transformer_tokens * token_macs(sl.cout), den + space.transformer_tokens
    return num / max(den, 1)


def l1_penalty(units, normaliser: float) -> torch.Tensor:
    """``sum_u (c_u / normaliser) * |gamma_u|_1`` over the prunable units (rho not applied)."""
    return sum(((u.channel_macs / normaliser) * u.bn.weight.abs().sum() for u in units), torch.zeros(()))


def rho_at(step: int, rho: float, warmup: int) -> float:
    """HR-NAS's linear rho schedule (per step, no free phase): 0 at step 0, ``rho`` from ``warmup`` on."""
    return rho if step >= warmup else rho * step / warmup


def plan_keep(units, threshold: float, excess_macs: float) -> tuple[dict, int]:
    """(keep masks per unit key, multiply-adds removed): every channel with ``|gamma| <= threshold``, but
    when those hold more than ``excess_macs`` (the cost above the target), only the smallest-|gamma|
    ones until the excess is removed (HR-NAS's ``cal_mask_network_slimming_by_flops`` within the
    threshold's candidates). A channel's multiply-adds add up exactly (``space.hrnas_profile``)."""
    g = torch.cat([u.bn.weight.detach().abs().float().cpu() for u in units])
    cost = torch.cat([torch.full((u.hidden,), float(u.channel_macs), dtype=torch.float64) for u in units])
    cand = g <= threshold
    if float(cost[cand].sum()) > excess_macs:
        order = torch.argsort(torch.where(cand, g, torch.inf), stable=True)
        saved = torch.cumsum(cost[order], 0)
        n = int(torch.searchsorted(saved, torch.tensor([excess_macs], dtype=torch.float64)).item()) + 1
        cand = torch.zeros_like(cand)
        cand[order[:n]] = True
    keep, i = {}, 0
    for u in units:
        keep[u.key] = ~cand[i:i + u.hidden]
        i += u.hidden
    return keep, int(cost[cand].sum())


def floor_arch(space: HRNASSpace, start: HRNASArch) -> HRNASArch:
    """``start`` with every kernel path and token removed: the least a shrink run can reach."""
    return HRNASArch.from_blocks(space, [BlockArch(tuple(0 for _ in b.hidden), 0 if b.tokens is not None else None)
                                         for b in start.blocks()])


# ---- the trainer ---------------------------------------------------------------------------------------
class _CurrentNet:
    """The engine's sampler contract for a run that trains one network: this step's arch is the net's."""

    def __init__(self, trainer: "ShrinkTrainer"):
        self.trainer = trainer

    def archs_for(self, step: int) -> list:
        return [(self.trainer.net.arch, "shrink")]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ShrinkTrainer(SupernetTrainer):
    """The supernet engine (loader, step, optimiser, schedule, precision, checkpoints, logs) training
    one ``HRNASNet`` from ``space.largest()`` with the shrink penalty and removals (module doc)."""

    def _build_net(self) -> HRNASNet:
        cfg, s = self.cfg, self.cfg.shrink
        self.input_hw = tuple(s.input_hw) if s.input_hw else tuple(self.task.input_hw)
        self.normaliser = penalty_normaliser(self.space, self.input_hw)
        scale = GFLOPS_SCALE[s.gflops_convention]
        self.target_macs, self.step_macs = s.target_gflops * scale, s.step_gflops * scale
        self.reached, self.events = False, []
        net = HRNASNet(self.space, self.space.largest(), self.head, bn_momentum=cfg.model.bn_momentum,
                       init=cfg.model.init)
        self.units = prunable_units(net, self.input_hw)
        self.net_macs = self.macs(net.arch)  # the net's cost changes only when channels are removed
        self._check_target(net.arch)
        return net

    def _check_target(self, start: HRNASArch) -> None:
        """Refuse a target the run cannot reach: above the start, or below the network with no path left."""
        s, scale = self.cfg.shrink, GFLOPS_SCALE[self.cfg.shrink.gflops_convention]
        empty = floor_arch(self.space, start)
        lo, hi = self.macs(empty) / scale, self.macs(start) / scale
        where = f"at {self.input_hw[0]}x{self.input_hw[1]}, MACs/{s.gflops_convention}"
        if not lo < s.target_gflops < hi:
            raise ScaleNASError(f"shrink.target_gflops: {s.target_gflops} is outside what shrinking reaches: the "
                                f"network costs {hi:.4g} GFLOPs before shrinking and {lo:.4g} with every path "
                                f"removed ({where})")

    def _build_sampler(self):
        return _CurrentNet(self)

    def _activate(self, arch) -> None:
        pass  # the net is its arch

    @property
    def warmup(self) -> int:
        s = self.cfg.shrink
        return int(round(s.warmup_epochs * self.steps_per_epoch)) if s.warmup_epochs else s.warmup_steps

    def rho(self) -> float:
        return 0.0 if self.reached else rho_at(self.step, self.cfg.shrink.rho, self.warmup)

    def macs(self, arch: HRNASArch | None = None) -> int:
        """MACs of ``arch`` at the run's input; None: the current net's (kept, not recounted each step)."""
        if arch is None:
            return self.net_macs
        return hrnas_profile(self.space, arch, self.head, self.input_hw, validate=False).macs

    def gflops(self) -> float:
        return self.net_macs / GFLOPS_SCALE[self.cfg.shrink.gflops_convention]

    # ---- the step: the engine's, plus the penalty and the shrink check ---------------------------------
    def _subnet_loss(self, arch, batch: dict, teacher_out):
        loss, parts = super()._subnet_loss(arch, batch, teacher_out)
        rho = self.rho()
        if rho > 0:
            pen = rho * l1_penalty(self.units, self.normaliser)
            loss = loss + pen
            parts = {**parts, "l1": float(pen.detach())}
        return loss, parts

    def train_step(self, batches) -> dict:
        rho = self.rho()
        rec = super().train_step(batches)
        t = self.cfg.train
        if not self.reached and (self.step % self.cfg.shrink.check_every == 0 or self.step == t.steps):
            self.check(force=self.step == t.steps)
        rec["gflops"] = self.gflops()
        rec["scalars"] = {"shrink/rho": rho, "shrink/gflops": rec["gflops"]}
        return rec

    def _done(self) -> bool:
        return self.reached and self.cfg.shrink.after_target == "stop"

    def check(self, force: bool = False) -> dict | None:
        """Remove the channels whose |gamma| is at or below the threshold when they save at least
        ``step_gflops`` (or ``force``), never going below the target; returns the event, or None."""
        s = self.cfg.shrink
        before = self.net_macs
        keep, saved = plan_keep(self.units, s.threshold, before - self.target_macs)
        if saved == 0 or (saved < self.step_macs and not force):
            return None
        self.apply_keep(keep)
        after = self.net_macs
        self.reached = after <= self.target_macs * (1 + s.tolerance)
        ev = {"step": self.step, "macs_before": before, "macs_after": after, "arch_hash": self.net.arch.hash,
              "reached": self.reached}
        self.events.append(ev)
        if self.info.is_main:
            scale = GFLOPS_SCALE[s.gflops_convention]
            print(f"shrink at step {self.step}: {before / scale:.4f} -> {after / scale:.4f} GFLOPs "
                  f"(MACs/{s.gflops_convention}; target {s.target_gflops}){' reached' if self.reached else ''}",
                  flush=True)
        return ev

    # ---- physical removal, optimiser state following -------------------------------------------------
    def apply_keep(self, keep: dict) -> None:
        """Replace the net by ``nets.hrnas.shrink(net, keep)``; the optimiser state is sliced alike."""
        old, sd = self.net, self.optimizer.state_dict()
        names = [n for n, _ in old.named_parameters()]
        index = {n: i for i, n in enumerate(names)}
        shapes = {n: p.shape for n, p in old.named_parameters()}
        fields = {f for st in sd["state"].values() for f in st}
        sliced = {}
        for f in fields:  # per-parameter tensors (momentum, moments) are sliced; scalars (Adam's step) kept
            per_param = {names[i]: st[f] for i, st in sd["state"].items()
                         if torch.is_tensor(st.get(f)) and st[f].shape == shapes[names[i]]}
            sliced[f] = shrink_tensors(old, keep, per_param)
        new = shrink(old, keep)
        state = {}
        for j, n in enumerate(n for n, _ in new.named_parameters()):
            i = index[n]
            if i in sd["state"]:
                state[j] = {f: sliced[f][n] if n in sliced[f] else v for f, v in sd["state"][i].items()}
        group = {k: v for k, v in sd["param_groups"][0].items() if k != "params"}
        params = list(range(len(list(new.parameters()))))
        self._adopt(new, {"state": state, "param_groups": [{**group, "params": params}]},
                    self.scheduler.state_dict())

    def _adopt(self, net: HRNASNet, optimizer_state: dict, scheduler_state: dict) -> None:
        """Train ``net`` from now on, with an optimiser and LR schedule restored from the given states."""
        t = self.cfg.train
        self.net = net.to(self.device)
        if t.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.model = wrap_ddp(self.net, self.info)
        self.optimizer = build_optimizer(self.net.parameters(), t.optimizer)
        self.scheduler = build_scheduler(self.optimizer, t.schedule, t.steps)
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(scheduler_state)
        self.units = prunable_units(self.net, self.input_hw)
        self.net_macs = self.macs(self.net.arch)

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        st = super().state()
        st["arch"] = self.net.arch.to_dict()
        st["shrink"] = {"reached": self.reached, "events": self.events}
        st["meta"] = {**st["meta"], "format": ckpt.SHRINK_FORMAT}
        return st

    def _restore(self, state: dict) -> None:
        if "arch" not in state or "shrink" not in state:
            raise ScaleNASError("resume: the checkpoint is not a shrink run's (no 'arch' or 'shrink' entry)")
        arch = self.space.validate(HRNASArch.from_dict(state["arch"], "checkpoint arch"))
        net = HRNASNet(self.space, arch, self.head, bn_momentum=self.cfg.model.bn_momentum, init="none")
        net.load_state_dict(state["model"])
        self._adopt(net, state["optimizer"], state["scheduler"])
        self.reached, self.events = bool(state["shrink"]["reached"]), list(state["shrink"]["events"])

    def _nonfinite(self, arch, value: float):
        path = self.save()
        raise ScaleNASError(f"non-finite loss ({value}) at step {self.step} for {arch}; last good state saved to "
                            f"{path}. Lower the learning rate or shrink.rho, enable train.grad_clip, or check the data")

    def result(self) -> dict:
        s = self.cfg.shrink
        return {"arch": self.net.arch, "macs": self.net_macs, "gflops": self.gflops(), "target_gflops": s.target_gflops,
                "gflops_convention": s.gflops_convention, "reached": self.reached, "events": self.events,
                "input_hw": list(self.input_hw), "steps": self.step}


def train_shrink(cfg: ShrinkRunConfig, resume: str | None = None) -> tuple[HRNASNet, dict]:
    """(the shrunk network, in eval mode, and the run's summary: ``ShrinkTrainer.result`` + train's)."""
    trainer = ShrinkTrainer(cfg, resume)
    try:
        res = trainer.train()
        return trainer.net.eval(), {**res, **trainer.result(), "losses": res["losses"]}
    finally:
        trainer.close()
