"""Deterministic, resumable data feeding for step-based training.

The order of samples is a pure function of (seed, epoch); each sample's augmentation draws from
global RNGs that are re-seeded from (seed, epoch, index) right before the sample is read, in
whichever worker reads it (``data.seeded``). So a run resumed at step k sees exactly the batches an
uninterrupted run sees, whatever the number of workers.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from scalenas.data.seeded import SeededSamples
from scalenas.errors import ScaleNASError


class StepBatchSampler(Sampler):
    """Yields the micro-batches of steps ``start_step .. total_steps-1`` for one rank."""

    def __init__(self, n: int, batch_size: int, total_steps: int, start_step: int = 0, accumulate: int = 1,
                 seed: int = 0, rank: int = 0, world_size: int = 1, unit: str = "images"):
        self.n, self.batch, self.total, self.start = n, batch_size, total_steps, start_step
        self.accum, self.seed, self.rank, self.world = accumulate, seed, rank, world_size
        self.per_epoch = n // (batch_size * world_size)
        if self.per_epoch < 1:
            raise ScaleNASError(f"train split: {n} {unit} cannot fill one batch of {batch_size} x {world_size} "
                                f"process(es); lower train.batch_size or add data")

    def __len__(self):
        return (self.total - self.start) * self.accum

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        mb, end = self.start * self.accum, self.total * self.accum
        perm_epoch, perm = -1, None
        while mb < end:
            epoch, pos = divmod(mb, self.per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = self.permutation(epoch), epoch
            lo = (pos * self.world + self.rank) * self.batch
            yield [(epoch, int(i)) for i in perm[lo:lo + self.batch]]
            mb += 1


# Workers are forked: they touch no thread pool here. torch already runs 1 thread per worker, and
# OpenCV is pinned to one thread in the parent (utils.runtime.setup_process); calling
# cv2.setNumThreads inside a forked worker deadlocks on the pool state copied from the parent.
def make_loader(dataset: Dataset, collate, batch_sampler: StepBatchSampler, seed: int, workers: int,
                pin_memory: bool = False) -> DataLoader:
    return DataLoader(SeededSamples(dataset, seed), batch_sampler=batch_sampler, num_workers=workers,
                      collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False, prefetch_factor=4 if workers else None)
