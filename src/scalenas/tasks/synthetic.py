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

from scalenas.config import Strict
from scalenas.space.heads import HeadSpec
from scalenas.tasks.base import TASKS, Task, eval_slice

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


@TASKS.register
class SyntheticRegressionTask(Task):
    name = "synthetic-regression"
    metric_name = "R2"
    Config = SyntheticConfig

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg

    @property
    def head(self) -> HeadSpec:
        return HeadSpec(kind="seg", num_classes=self.cfg.outputs)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.cfg.size, self.cfg.size

    def build_dataset(self, split: str, train: bool) -> Dataset:
        return _SynthDataset(self.cfg, split, train)

    def loss(self, outputs, batch):
        mse = F.mse_loss(outputs.float(), batch["target"])
        return mse, {"mse": float(mse.detach())}

    @torch.no_grad()
    def evaluate(self, model, split, device="cpu", max_images=None, out_dir=None, *, first_image=0):
        ds = self.build_dataset(split, train=False)
        ids = range(len(ds))[eval_slice(max_images, first_image)]
        model.eval()
        preds, tgts = [], []
        for s in range(0, len(ids), self.cfg.eval_batch_size):
            items = [ds[i] for i in ids[s:s + self.cfg.eval_batch_size]]
            x = torch.stack([it["image"] for it in items]).to(device)
            y = torch.stack([it["target"] for it in items])
            preds.append(model(x).float().cpu())
            tgts.append(y)
        p, t = torch.cat(preds), torch.cat(tgts)
        sse = float(((p - t) ** 2).sum())
        sst = float(((t - t.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum())
        return {"R2": 100.0 * (1.0 - sse / sst), "mse": sse / t.numel()}

    @torch.no_grad()
    def predict(self, forward, image_bgr, **kw) -> dict:
        """Summary statistics of the regression map of one (H, W, 3) uint8 BGR image, which is
        standardised like the training images (zero mean, unit std) and edge-padded to multiples of 32;
        ``map`` is the (outputs, H/4, W/4) float32 prediction of the unpadded area."""
        rgb = np.asarray(image_bgr)[..., ::-1].astype(np.float32)
        x = torch.from_numpy(((rgb - rgb.mean()) / (rgb.std() + 1e-6)).transpose(2, 0, 1).copy())[None]
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % 32, 0, -h % 32), mode="replicate")
        y = torch.as_tensor(forward(x)).float().cpu()[0, :, : (h + 3) // 4, : (w + 3) // 4]
        return {"map": y.numpy(), "size": [int(h), int(w)],
                "stats": [{"channel": c, "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                           "max": float(v.max())} for c, v in enumerate(y)]}

    def visualise(self, image_bgr, prediction: dict, path: str) -> None:
        """Channel 0 of the map, colour-mapped (JET, min..max) and blended over the image."""
        import os

        import cv2

        m = np.asarray(prediction["map"])[0]
        u8 = np.uint8(255 * (m - m.min()) / (np.ptp(m) + 1e-12))
        h, w = np.asarray(image_bgr).shape[:2]
        heat = cv2.resize(cv2.applyColorMap(u8, cv2.COLORMAP_JET), (w, h), interpolation=cv2.INTER_NEAREST)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        cv2.imwrite(path, cv2.addWeighted(np.asarray(image_bgr, np.uint8), 0.5, heat, 0.5, 0))
