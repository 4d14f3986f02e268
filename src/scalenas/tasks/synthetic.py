"""A tiny synthetic dense-regression task for testing the engine, the samplers and the search
without any files: images are random smooth patterns; the target at 1/4 resolution is a fixed
multi-scale filter response (a local mean and a wide-context mean per channel), so the network needs
both high-resolution and low-resolution branches to fit it. Metric: R^2 x 100 (higher is better).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from scalenas.tasks.base import Task, register_task
from scalenas.space.heads import HeadSpec
from scalenas.train.config import Strict

SPLIT_OFFSET = {"train": 0, "search": 1_000_000, "val": 2_000_000, "test": 3_000_000}


class SyntheticConfig(Strict):
    name: Literal["synthetic-regression"] = "synthetic-regression"
    size: int = 64
    num_train: int = 64
    num_search: int = 16
    num_val: int = 16
    num_test: int = 16
    outputs: int = 4
    seed: int = 0
    eval_batch_size: int = 8


def _make_image(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((3, size, size), np.float32)
    for scale in (4, 8, 16, 32):
        n = max(2, size // scale)
        coarse = rng.standard_normal((3, n, n)).astype(np.float32)
        up = F.interpolate(torch.from_numpy(coarse)[None], size=(size, size), mode="bilinear", align_corners=False)
        img += up[0].numpy() * (scale / 16.0)
    return img / img.std()


def _target(img: torch.Tensor, outputs: int) -> torch.Tensor:
    """(3, H, W) image -> (outputs, H/4, W/4): local and wide-context means of channel combinations."""
    x = img[None]
    local = F.avg_pool2d(x, 4)
    wide = F.interpolate(F.avg_pool2d(x, 16), scale_factor=4, mode="bilinear", align_corners=False)
    feats = torch.cat([local, wide, local * wide], 1)[0]  # 9 x H/4 x W/4
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(outputs, feats.shape[0], generator=g) / feats.shape[0] ** 0.5  # unit-scale targets
    return torch.einsum("oc,chw->ohw", w, feats)


class _SynthDataset(Dataset):
    def __init__(self, cfg: SyntheticConfig, split: str, train: bool):
        self.cfg, self.split, self.train = cfg, split, train
        self.n = {"train": cfg.num_train, "search": cfg.num_search, "val": cfg.num_val, "test": cfg.num_test}[split]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        img = torch.from_numpy(_make_image(self.cfg.seed * 10_000_019 + SPLIT_OFFSET[self.split] + i, self.cfg.size))
        tgt = _target(img, self.cfg.outputs)
        if self.train and np.random.random() < 0.5:  # augmentation draws from the (seeded) global RNG
            img, tgt = img.flip(-1), tgt.flip(-1)
        return {"image": img, "target": tgt}


@register_task
class SyntheticRegressionTask(Task):
    name = "synthetic-regression"
    metric_name = "R2"
    Config = SyntheticConfig

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg

    @property
    def head(self) -> HeadSpec:
        return HeadSpec(kind="seg", num_classes=self.cfg.outputs)

    def build_dataset(self, split: str, train: bool) -> Dataset:
        return _SynthDataset(self.cfg, split, train)

    def loss(self, outputs, batch):
        mse = F.mse_loss(outputs.float(), batch["target"])
        return mse, {"mse": float(mse.detach())}

    @torch.no_grad()
    def evaluate(self, model, split, device="cpu", max_images=None, out_dir=None):
        ds = self.build_dataset(split, train=False)
        n = len(ds) if max_images is None else min(len(ds), max_images)
        model.eval()
        sse, sst, tot = 0.0, 0.0, []
        preds, tgts = [], []
        for s in range(0, n, self.cfg.eval_batch_size):
            items = [ds[i] for i in range(s, min(n, s + self.cfg.eval_batch_size))]
            x = torch.stack([it["image"] for it in items]).to(device)
            y = torch.stack([it["target"] for it in items])
            preds.append(model(x).float().cpu())
            tgts.append(y)
        p, t = torch.cat(preds), torch.cat(tgts)
        sse = float(((p - t) ** 2).sum())
        sst = float(((t - t.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum())
        return {"R2": 100.0 * (1.0 - sse / sst), "mse": sse / t.numel()}
