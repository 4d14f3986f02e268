"""Samples read under a seed that is a pure function of (seed, epoch, index).

Each sample's augmentation draws from the global ``random``, ``numpy`` and torch (CPU) RNGs, re-seeded
right before the sample is read, in whichever process reads it; so the same key gives the same
sample whatever the number of loader workers. Training (``train.data``) and BN calibration
(``search.calibrate``) both read through it.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


class SeededSamples(Dataset):
    """Indexes by (epoch, index) and seeds ``random``, ``numpy`` and ``torch`` before reading a sample."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        s = sample_seed(self.seed, epoch, index)
        random.seed(s)
        np.random.seed(s)
        # the CPU generator only: torch.manual_seed also queues lazy CUDA/MPS/XPU seeding, whose recorded
        # stack trace cost 2.4 ms a sample (9% of a top-down training step); samples draw on the CPU
        torch.default_generator.manual_seed(s)
        return self.dataset[index]
