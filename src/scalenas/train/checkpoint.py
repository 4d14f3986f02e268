"""Checkpoints: written atomically (temporary file, then rename), read by the one safe reader
(``utils.weights.read_weights``: ``torch.load(weights_only=True)``).

A run directory holds ``checkpoints/step_00000100.pt`` files and a ``checkpoints/latest`` pointer
written after each complete checkpoint. ``resume="auto"`` takes the newest one that loads.
"""
from __future__ import annotations

import glob
import os
import random
import re

import numpy as np
import torch

from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_torch_save, atomic_write_text, lists_to_tuples, tuples_to_lists
from scalenas.nets.supernet import SuperScaleNet
from scalenas.space.heads import HeadSpec
from scalenas.space.space import SearchSpace
from scalenas.utils.weights import read_weights

CKPT_RE = re.compile(r"step_(\d+)\.pt$")
SHRINK_FORMAT = "scalenas.shrink/1"  # what ``scalenas shrink`` writes in meta.format


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": tuples_to_lists(random.getstate()), "torch": torch.get_rng_state(),
            "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}


def set_rng_state(s: dict) -> None:
    random.setstate(lists_to_tuples(s["python"]))
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def ckpt_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def save_checkpoint(run_dir: str, step: int, state: dict, keep_last: int = 3) -> str:
    d = ckpt_dir(run_dir)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"step_{step:08d}.pt")
    atomic_torch_save(state, path)
    atomic_write_text(os.path.join(d, "latest"), os.path.basename(path) + "\n")
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            os.unlink(old)
    return path


def list_checkpoints(run_dir: str) -> list[str]:
    files = glob.glob(os.path.join(ckpt_dir(run_dir), "step_*.pt"))
    return sorted(files, key=lambda p: int(CKPT_RE.search(p).group(1)))


def load_checkpoint(path: str, map_location="cpu") -> dict:
    ck = read_weights(path, "checkpoint", map_location)
    if not isinstance(ck, dict):
        raise ScaleNASError(f"{path}: not a scalenas checkpoint (holds a {type(ck).__name__}, not a dict)")
    return ck


def find_resume(run_dir: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(newest checkpoint of ``run_dir`` that loads, [(path, why) for each newer one skipped]): a
    half-written, corrupt or unsafe newest checkpoint is skipped, and the caller says so."""
    skipped = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            load_checkpoint(path)
            return path, skipped
        except ScaleNASError as e:
            skipped.append((path, str(e)))
    return None, skipped


def is_shrink_checkpoint(ck: dict) -> bool:
    """Whether ``ck`` is a ``scalenas shrink`` run's checkpoint (one hrnas network and its arch)."""
    return (ck.get("meta") or {}).get("format") == SHRINK_FORMAT


def load_supernet(path: str, map_location="cpu", ck: dict | None = None):
    """(SuperScaleNet with the checkpoint's weights, checkpoint dict) from a training checkpoint
    (``ck``: that checkpoint, already loaded from ``path``)."""
    ck = load_checkpoint(path, map_location) if ck is None else ck
    meta = ck.get("meta")
    if is_shrink_checkpoint(ck):
        raise ScaleNASError(f"{path}: a shrink run's checkpoint (one hrnas network, not a supernet to search or "
                            f"extract subnets from); make a model dir from it with 'scalenas extract {path} -o "
                            f"MODEL_DIR'")
    if not meta or "space" not in meta or "head" not in meta or "model" not in ck:
        raise ScaleNASError(f"{path}: not a scalenas supernet checkpoint (missing 'meta' or 'model')")
    net = SuperScaleNet(SearchSpace.from_dict(meta["space"]), HeadSpec.from_dict(meta["head"]),
                        bn_momentum=meta.get("bn_momentum", 0.1), init="none")
    missing, unexpected = net.load_state_dict(ck["model"], strict=False)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise ScaleNASError(f"{path}: weights do not fit the supernet described by its meta "
                            f"({len(missing)} missing, {len(unexpected)} unexpected; first: {first!r})")
    return net, ck


def load_teacher_supernet(path: str, space: SearchSpace, head: HeadSpec) -> SuperScaleNet:
    """The supernet of a ``train.distill.teacher`` checkpoint, refused unless it has the run's space and head."""
    teacher, _ = load_supernet(path)
    if teacher.space != space or teacher.head_spec != head:
        raise ScaleNASError(f"train.distill.teacher: {path} was trained for another space or head")
    return teacher


#: The config keys that fix a run's trajectory (its schedule, data order and subnet sampling); a run
#: resumed with any of them changed would not be the run its config.yaml describes. A resumed run keeps
#: the checkpoint's optimiser and LR-schedule state (LambdaLR restores its milestones and total), so a
#: changed value would be recorded but silently not applied. ``shrink`` is a shrink run's section (``train.shrink``).
TRAJECTORY_KEYS = ("seed", "space", "sampler", "shrink", "train.steps", "train.epochs", "train.batch_size",
                   "train.accumulate", "train.optimizer", "train.schedule", "train.grad_clip")
#: Schedules whose LR factor does not depend on the total number of steps: extending or shortening such a
#: run applies the same schedule as a run configured with the new total from the start.
TOTAL_FREE_SCHEDULES = ("multistep", "constant")


def _first_difference(key: str, old, new) -> tuple[str, object, object] | None:
    """(dotted key, old value, new value) of the first leaf where ``old`` and ``new`` differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            d = _first_difference(f"{key}.{k}", old.get(k), new.get(k))
            if d:
                return d
        return None
    return None if old == new else (key, old, new)


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(cfg, dict):
            return None
        cfg = cfg.get(part)
    return cfg


def check_resume_config(path: str, saved: dict, new: dict, saved_world: int | None = None,
                        world: int = 1) -> str | None:
    """Refuse (one line naming the key) to resume the checkpoint ``path``, saved with config ``saved`` by
    ``saved_world`` processes, under a config ``new`` or a process count whose trajectory differs. Returns
    a note when ``train.steps`` alone changed under a schedule that does not depend on it (applied)."""
    if saved_world is not None and int(saved_world) != world:
        raise ScaleNASError(f"{path}: saved by {saved_world} processes, resumed by {world}; the images per step "
                            f"and the data order would change, so resume with {saved_world} processes")
    note = None
    for key in TRAJECTORY_KEYS if saved else ():  # a checkpoint without its config cannot be compared
        d = _first_difference(key, _get(saved, key), _get(new, key))
        if d is None:
            continue
        k, old, cur = d
        if k == "train.steps" and _get(new, "train.schedule.name") in TOTAL_FREE_SCHEDULES:
            note = (f"resume: train.steps changed from {old} to {cur}; the "
                    f"{_get(new, 'train.schedule.name')} schedule does not depend on it, so training runs to {cur}")
            continue
        why = (f"the {_get(new, 'train.schedule.name')} LR schedule depends on the total steps"
               if k == "train.steps" else "a resumed run keeps the checkpoint's schedule, sampling and data order")
        raise ScaleNASError(f"{path}: {k} is {cur!r} in the config but {old!r} in the checkpoint; {why}, so "
                            f"restore {k} or start a new run_dir")
    return note
