"""Is the segmentation data loader a bottleneck? Loader images/s (0, 1, 2 workers) next to the
training throughput of a small ScaleNet on the same crops.

    python bench/seg_loader.py [--images 64] [--batch 8] [--batches 12] [--steps 6] [--threads N]

Uses the synthetic data (generated into a temporary folder) with the task part of
configs/tasks/seg_synth.yaml (256x256 crops, random scale, flip). The training step is
forward + backward + SGD of ScaleNet(SearchSpace(width=8, modules_per_stage=(1,1,1), stem_channels=16,
stage1_blocks=1), space.hrnet()) in channels_last (as asked) and, for comparison, contiguous NCHW,
after the malloc fix of scalenas.utils.runtime; "x train" divides by the faster of the two.
Each row runs alone: in a real run the loader workers and the training share the cores.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import yaml
from torch.utils.data import DataLoader

from scalenas.data.synth_seg import generate
from scalenas.nets import ScaleNet
from scalenas.space import SearchSpace
from scalenas.tasks import TASKS
from scalenas.utils.runtime import setup_process

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "tasks", "seg_synth.yaml")


def loader_rate(task, workers: int, batch: int, batches: int) -> float:
    ds = task.build_dataset("train", train=True)
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=task.collate,
                    drop_last=True, prefetch_factor=4 if workers else None)
    it = iter(dl)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(dl)
            b = next(it)
        n += b["image"].shape[0]
    return n / (time.perf_counter() - t0)


def train_rate(task, batch: int, steps: int, fmt: torch.memory_format) -> tuple[float, float]:
    space = SearchSpace(width=8, modules_per_stage=(1, 1, 1), stem_channels=16, stage1_blocks=1)
    net = ScaleNet(space, space.hrnet(), task.head).to(memory_format=fmt).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    ds = task.build_dataset("train", train=True)
    b = task.collate([ds[i % len(ds)] for i in range(batch)])
    x = b["image"].contiguous(memory_format=fmt)

    def step():
        loss, _ = task.loss(net(x), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return batch / dt, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64, help="synthetic training images to generate")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=12, help="timed loader batches per setting")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for the training step (default: all cores; on a loaded shared machine "
                         "1 thread is far more stable than 2)")
    args = ap.parse_args()
    setup_process(args.threads)
    with open(CONFIG, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)["task"]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "synth")
        t0 = time.perf_counter()
        generate(root, train=args.images, val=0, test=1, size=(256, 256), seed=0)
        gen_s = time.perf_counter() - t0
        task = TASKS.get("segmentation").from_config(cfg | {"root": root, "search_holdout": 0})
        crop = "x".join(str(v) for v in task.cfg.crop_size)
        rows = [(f"loader, {w} worker{'s' if w != 1 else ''}", loader_rate(task, w, args.batch, args.batches))
                for w in (0, 1, 2)]
        train = [(name, *train_rate(task, args.batch, args.steps, fmt)) for name, fmt in
                 (("train step, channels_last", torch.channels_last),
                  ("train step, contiguous", torch.contiguous_format))]
    print(f"segmentation data vs training throughput: crops {crop}, batch {args.batch}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores "
          f"(generated {args.images} synthetic images in {gen_s:.1f} s)")
    ips = max(r for _, r, _ in train)  # compare the loader with the faster training layout
    print(f"{'':32}{'images/s':>10}{'x train':>10}")
    for name, r in rows:
        print(f"{name:32}{r:10.1f}{r / ips:10.1f}")
    for name, r, dt in train:
        print(f"{name:32}{r:10.1f}{r / ips:10.1f}   ({dt * 1e3:.0f} ms/step fwd+bwd+SGD)")


if __name__ == "__main__":
    main()
