"""The task-agnostic supernet training engine: one CPU, one GPU, or many processes under torchrun.

A task supplies datasets, loss and metric; a sampler decides which subnet each step trains; the
engine does the rest: optimiser and schedule, distillation, bf16 autocast, channels_last, DDP,
atomic checkpoints with exact resume, a non-finite-loss guard, progress bar, TensorBoard and JSONL.
HR-NAS's shrink search (``train.shrink.ShrinkTrainer``) trains one network on the same engine through
its set-up and step hooks (``_build_net``, ``_build_sampler``, ``_activate``, ``_restore``, ``_done``).
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import torch
import torch.nn.functional as F
import yaml

from scalenas.errors import ScaleNASError
from scalenas.nets.pretrained import init_supernet_from
from scalenas.nets.supernet import SuperScaleNet
from scalenas.tasks.base import build_task
from scalenas.train import checkpoint as ckpt
from scalenas.train.config import RunConfig, reproduction_warnings
from scalenas.train.data import StepBatchSampler, make_loader
from scalenas.train.distributed import (DistInfo, all_finite, all_reduce_mean, cleanup, init_distributed,
                                        sync_buffers, wrap_ddp)
from scalenas.train.optim import build_optimizer, build_scheduler
from scalenas.train.schedule import resolve_schedule
from scalenas.train.step import autocast, forward_loss, to_device, tree_float
from scalenas.utils.io import atomic_write_json, atomic_write_text, dumps_json, package_versions
from scalenas.utils.runtime import loader_workers, resolve_amp, setup_process, usable_cores




def kd_loss(student, teacher) -> torch.Tensor:
    """MSE between student and frozen teacher outputs, summed over output tensors (method §5.2)."""
    if isinstance(student, (tuple, list)):
        return sum(F.mse_loss(s, t) for s, t in zip(student, teacher))
    return F.mse_loss(student, teacher)


class SupernetTrainer:
    def __init__(self, cfg: RunConfig, resume: str | None = None, info: DistInfo | None = None):
        self.cfg = cfg
        self.info = info or init_distributed(cfg.train.device)
        self._caller_threads = torch.get_num_threads()  # restored by close(): the rule below is for training
        # never more loader workers than this process's share of the cores: more only queue behind each other
        # (and torch's warning would break a worker error's one line); samples are seeded by (epoch, index),
        # so the count changes no sample
        self.workers = loader_workers(cfg.train.workers)
        self.threads = setup_process(cfg.train.threads, loader_workers=self.workers)
        self.task = build_task(cfg.task)
        self.task.check_dependencies()  # before days of training, not at the first evaluation
        self.space = cfg.space.build()
        self.head = self.task.head
        t = cfg.train
        self.device = self.info.device
        torch.manual_seed(cfg.seed)
        self.init_report = None
        self.net = self._build_net()
        self.net.to(self.device)
        if t.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.model = wrap_ddp(self.net, self.info)
        self.optimizer = build_optimizer(self.net.parameters(), t.optimizer)
        self.dataset = self.task.build_dataset("train", train=True)
        # epochs become steps here; the rest of the run sees the resolved config (train.schedule)
        self.schedule = resolve_schedule(t, len(self.dataset), self.info.world_size, self.task.sample_unit)
        self.cfg = cfg = cfg.model_copy(update={"train": self.schedule.apply(t)})
        t = cfg.train
        self.scheduler = build_scheduler(self.optimizer, t.schedule, t.steps)
        self.steps_per_epoch = max(1, len(self.dataset) // (t.batch_size * self.info.world_size * t.accumulate))
        self.sampler = self._build_sampler()
        self.teacher = self._build_teacher()
        self.step = 0
        self._scaler, self._scaler_state = None, None  # a resumed fp16 run's scaler state: see _make_scaler
        if resume:
            self._resume(resume)

    # ---- set-up ------------------------------------------------------------------------
    def _build_net(self) -> torch.nn.Module:
        """The network trained (here the supernet, initialised from ``model.pretrained`` when given)."""
        cfg = self.cfg
        net = SuperScaleNet(self.space, self.head, bn_momentum=cfg.model.bn_momentum, init=cfg.model.init)
        if cfg.model.pretrained:
            self.init_report = init_supernet_from(net, cfg.model.pretrained)
        return net

    def _build_sampler(self):
        return self.cfg.sampler.build(self.space, self.cfg.seed, self.head.pose_rule, self.steps_per_epoch)

    def _build_teacher(self):
        d = self.cfg.train.distill
        if d.teacher in ("none", "largest"):
            return None
        teacher_super = ckpt.load_teacher_supernet(d.teacher, self.space, self.head)
        teacher = teacher_super.extract(self.space.largest(self.head.pose_rule)).to(self.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if self.cfg.train.channels_last:
            teacher.to(memory_format=torch.channels_last)
        return teacher

    def _resume(self, resume: str):
        path = resume
        if resume == "auto":
            path, skipped = ckpt.find_resume(self.cfg.run_dir)
            for why in (skipped if self.info.is_main else []):
                print(f"resume: skipped {why[1]}", flush=True)
        if path is None:
            return
        state = ckpt.load_checkpoint(path, map_location=self.device)
        self._check_schedule(state.get("schedule"), path)
        note = ckpt.check_resume_config(path, state.get("config") or {}, self.cfg.model_dump(mode="json"),
                                        state.get("world_size"), self.info.world_size)
        if note and self.info.is_main:
            print(note, flush=True)
        self._scaler_state = state.get("scaler") or None
        self._restore(state)
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["step"])
        if self.info.is_main:
            print(f"resumed from {path} at step {self.step}")

    def _restore(self, state: dict) -> None:
        """Weights, optimiser, LR schedule and sampler from a checkpoint's ``state``."""
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])

    def _check_schedule(self, saved: dict | None, path: str) -> None:
        """A run stated in epochs resolves to other steps when the processes, batch or data change:
        resuming would silently stretch or cut the schedule, so refuse (the data order differs too).
        A changed schedule key itself is ``checkpoint.check_resume_config``'s to name."""
        inputs = ("world_size", "batch_size", "accumulate", "n_train")
        now = self.schedule.as_dict()
        if saved is None or not (now["in_epochs"] or saved.get("in_epochs")) \
                or all(saved.get(k) == now[k] for k in inputs):
            return
        key = "train.epochs" if now["in_epochs"] else "train.schedule (in epochs)"
        raise ScaleNASError(
            f"resume: {key} resolves to {now['steps']:,} steps (milestones {now['milestones']}) with "
            f"{now['world_size']} process(es) x {now['batch_size']} x accumulate {now['accumulate']} on "
            f"{now['n_train']:,} images, but {path} was trained for {saved['steps']:,} steps (milestones "
            f"{saved['milestones']}) with {saved['world_size']} x {saved['batch_size']} x accumulate "
            f"{saved['accumulate']} on {saved['n_train']:,}; resume with the same processes and batch")

    def state(self) -> dict:
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "sampler": self.sampler.state_dict(),
                "rng": ckpt.rng_state(), "step": self.step, "config": self.cfg.model_dump(mode="json"),
                "world_size": self.info.world_size, "scaler": self._scaler.state_dict() if self._scaler else {},
                "schedule": self.schedule.as_dict(),
                "versions": package_versions(),
                "meta": {"format": "scalenas.supernet/1", "space": self.space.to_dict(), "head": self.head.to_dict(),
                         "task": self.cfg.task, "bn_momentum": self.cfg.model.bn_momentum}}

    def save(self) -> str | None:
        """Checkpoint (rank 0 writes). All ranks call it: BN running statistics are local to each rank
        between DDP's per-forward broadcasts, so rank 0's are broadcast first to keep ranks identical."""
        sync_buffers(self.net, self.info)
        if not self.info.is_main:
            return None
        return ckpt.save_checkpoint(self.cfg.run_dir, self.step, self.state(), self.cfg.train.keep_last)

    def _write_run_files(self):
        os.makedirs(self.cfg.run_dir, exist_ok=True)
        atomic_write_text(os.path.join(self.cfg.run_dir, "config.yaml"),
                          yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False))
        atomic_write_json(os.path.join(self.cfg.run_dir, "versions.json"), package_versions())
        if self.init_report is not None:
            atomic_write_json(os.path.join(self.cfg.run_dir, "init_report.json"), self.init_report)

    # ---- the loop -------------------------------------------------------------------------
    def train(self) -> dict:
        t, info = self.cfg.train, self.info
        if info.is_main:
            self._write_run_files()
        loader = self._loader()
        it = iter(loader)
        logger = _Logger(self.cfg, info, self.step)
        self._start_steps()
        if info.is_main:
            print(self.schedule.describe(int(self.cfg.task.get("search_holdout", 0) or 0), self.task.sample_unit),
                  flush=True)
            capped = f" of {t.workers} configured" if self.workers < t.workers else ""
            print(f"threads: {self.threads} (cores {usable_cores()}, loader workers {self.workers}{capped}, "
                  f"bf16: {'yes' if self.amp == 'bf16' else 'no'})", flush=True)
            print(f"precision: {self.amp_why}", flush=True)
            for line in reproduction_warnings(self.cfg):
                print(line, flush=True)
        history = []
        try:
            while self.step < t.steps and not self._done():
                rec = self.train_step(it)
                history.append(rec["loss"])
                logger.log(rec)
                if t.ckpt_every and self.step % t.ckpt_every == 0 and self.step < t.steps:
                    self.save()
            path = self.save()
        finally:
            logger.close()
            del it, loader
        return {"steps": self.step, "final_loss": history[-1] if history else None, "losses": history,
                "checkpoint": path}

    def time_steps(self, n: int) -> list[float]:
        """Wall seconds of each of the next ``n`` training steps (:meth:`train_step`, loader included);
        writes nothing. The weights train as usual, so time a trainer that is then thrown away."""
        loader = self._loader()
        it = iter(loader)
        self._start_steps()
        times = []
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                self.train_step(it)
                times.append(time.perf_counter() - t0)
        finally:
            del it, loader
        return times

    def _loader(self):
        t, info = self.cfg.train, self.info
        bs = StepBatchSampler(len(self.dataset), t.batch_size, t.steps, self.step, t.accumulate, self.cfg.seed,
                              info.rank, info.world_size, self.task.sample_unit)
        return make_loader(self.dataset, self.task.collate, bs, self.cfg.seed, self.workers,
                           pin_memory=self.device.type == "cuda")

    def _start_steps(self) -> None:
        self.amp, self.amp_why = resolve_amp(self.cfg.train.amp, self.device)
        self._autocast = autocast(self.amp, self.device)
        self._scaler = self._make_scaler()
        # the distillation teacher of "largest" (other runs need not be supernets with a largest subnet)
        self._largest = self.space.largest(self.head.pose_rule) if self.cfg.train.distill.teacher == "largest" else None
        self.net.train()

    def train_step(self, batches) -> dict:
        """One optimiser step on the next ``accumulate`` batches of ``batches``: every subnet the
        sampler gives for this step, with distillation when configured; returns its log record."""
        t, info = self.cfg.train, self.info
        t0 = time.perf_counter()
        archs = self.sampler.archs_for(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        parts_sum: dict[str, float] = {}
        loss_sum, n_img = 0.0, 0
        share = t.accumulate * len(archs)  # each (batch, subnet) loss is this share of the step's loss
        for _ in range(t.accumulate):
            batch = to_device(next(batches), self.device, t.channels_last)
            img = batch["image"]
            n_img += img.shape[0]
            teacher_out = self._teacher_outputs(img, archs)
            for arch, _group in archs:
                loss, parts = self._subnet_loss(arch, batch, teacher_out)
                self._scaler.scale(loss / share).backward()
                loss_sum += float(loss.detach()) / share
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v / share
        if t.grad_clip:
            self._scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.net.parameters() if p.grad is not None], t.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self._scaler.step(self.optimizer)  # skipped by an fp16 scaler when a gradient overflowed
        self._scaler.update()
        self.scheduler.step()
        self.step += 1
        # the logged loss and its parts are the mean over ranks, not rank 0's alone
        logged = all_reduce_mean({"loss": loss_sum, **parts_sum}, info)
        dt = time.perf_counter() - t0
        return {"step": self.step, "lr": lr, "group": archs[0][1],
                "arch": archs[0][0].hash, "img_per_s": n_img * info.world_size / dt, **logged}

    def _make_scaler(self):
        """fp16 needs loss scaling (its small gradients underflow); bf16 and fp32 do not: a disabled
        scaler passes everything through unchanged."""
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        if self._scaler_state and self.amp == "fp16":
            scaler.load_state_dict(self._scaler_state)
        return scaler

    def _teacher_outputs(self, img, archs):
        """The distillation targets of a batch: the teacher checkpoint's, or the supernet's largest
        subnet's (``teacher: largest``); None without distillation, and on a step that trains only the
        largest subnet under ``teacher: largest`` (its KD term is exactly 0: the same forward twice)."""
        teacher = self.cfg.train.distill.teacher
        if teacher == "none" or (teacher == "largest" and all(a == self._largest for a, _ in archs)):
            return None
        with torch.no_grad(), self._autocast:
            if self.teacher is not None:
                return tree_float(self.teacher(img))
            self.net.set_active(self._largest)
            return tree_float(self.net(img))

    def _subnet_loss(self, arch, batch: dict, teacher_out):
        """(loss, its parts) of one subnet on one batch, guarded against non-finite values."""
        t = self.cfg.train
        self._activate(arch)
        out, loss, parts = forward_loss(self.model, self.task, batch, self._autocast)
        if teacher_out is not None:
            kd = kd_loss(out, teacher_out)
            loss = loss + t.distill.weight * kd
            parts = {**parts, "kd": float(kd.detach())}
        elif t.distill.teacher != "none":  # the largest subnet against itself (no teacher pass): KD is 0
            parts = {**parts, "kd": 0.0}
        if not all_finite(loss.detach(), self.info):
            self._nonfinite(arch, float(loss.detach()))
        return loss, parts

    def _done(self) -> bool:
        """True to end training before ``train.steps`` (a supernet trains its whole schedule)."""
        return False

    def _activate(self, arch) -> None:
        """Make ``arch`` the network that the next forward runs."""
        self.net.set_active(arch)

    def _nonfinite(self, arch, value: float):
        # the weights have not been touched by this step yet: save them as the last good state
        path = self.save()
        raise ScaleNASError(f"non-finite loss ({value}) at step {self.step} for subnet {arch.hash} "
                            f"({arch.depth_string()}); last good state saved to {path}. Lower the learning "
                            f"rate, enable train.grad_clip, or check the data")

    def close(self):
        cleanup(self.info)
        torch.set_num_threads(self._caller_threads)


def truncate_jsonl(path: str, step: int) -> None:
    """Keep only the records of steps ``<= step`` (atomically): a run resumed from the checkpoint at
    ``step`` rewrites the later steps, which a killed run may already have logged."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line half-written when the run was killed
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
                keep.append(line.rstrip("\n") + "\n")
    atomic_write_text(path, "".join(keep))


class _Logger:
    """Progress bar (rank 0), JSONL log and TensorBoard scalars (loss per sampling group, lr, throughput).

    Both logs continue from ``start``: records of later steps (from a killed run, or a run that went
    further than the checkpoint resumed from) are dropped, so no step appears twice."""

    def __init__(self, cfg: RunConfig, info: DistInfo, start: int):
        self.cfg, self.info = cfg, info
        self.main = info.is_main
        self.bar = self.tb = self.jsonl = None
        if not self.main:
            return
        os.makedirs(cfg.run_dir, exist_ok=True)
        log_path = os.path.join(cfg.run_dir, "train_log.jsonl")
        truncate_jsonl(log_path, start)
        self.jsonl = open(log_path, "a", encoding="utf-8")
        if cfg.train.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.train.steps, initial=start, desc="supernet", unit="step", dynamic_ncols=True,
                            mininterval=1.0)
        if cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # readers (TensorBoard, EventAccumulator) drop the earlier files' events from purge_step on
                self.tb = SummaryWriter(os.path.join(cfg.run_dir, "tb"), purge_step=start + 1)
            except ImportError:
                self.tb = None

    def log(self, rec: dict):
        if not self.main:
            return
        step = rec["step"]
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{rec['img_per_s']:.1f}", refresh=False)
        every = max(1, self.cfg.train.log_every)
        if step % every == 0 or step == self.cfg.train.steps:
            self.jsonl.write(dumps_json(rec, indent=None) + "\n")
            self.jsonl.flush()
        if self.tb is not None:
            self.tb.add_scalar("loss/total", rec["loss"], step)
            self.tb.add_scalar(f"loss/group/{rec['group']}", rec["loss"], step)
            self.tb.add_scalar("lr", rec["lr"], step)
            self.tb.add_scalar("throughput/img_per_s", rec["img_per_s"], step)
            for k, v in rec.get("scalars", {}).items():  # a trainer's own curves (the shrink run's rho, GFLOPs)
                self.tb.add_scalar(k, v, step)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def time_steps(cfg: RunConfig, steps: int) -> list[float]:
    """Wall seconds of each of the first ``steps`` training steps of ``cfg`` on this machine: the
    engine's own step (sampler, loader, forward, loss, backward, optimiser) from fresh weights. The
    trainer works in a scratch directory, so nothing is left behind."""
    with tempfile.TemporaryDirectory(prefix="scalenas-time-") as scratch:
        cfg = cfg.model_copy(update={"run_dir": scratch,
                                     "train": cfg.train.model_copy(update={"steps": max(cfg.train.steps or 0, steps),
                                                                          "epochs": None})})
        trainer = SupernetTrainer(cfg)
        try:
            return trainer.time_steps(steps)
        finally:
            trainer.close()


def train_supernet(cfg: RunConfig, resume: str | None = None) -> dict:
    trainer = SupernetTrainer(cfg, resume)
    try:
        return trainer.train()
    finally:
        trainer.close()
