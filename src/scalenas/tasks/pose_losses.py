"""Pose losses. Bottom-up (tasks.md §1.4): masked heatmap MSE and the associative-embedding pull/push loss.
Top-down: HRNet's JointsMSELoss with target weights.

The AE loss is fully vectorised over the batch and the people: gather each labelled joint's tag from
the flat tag tensor, take per-person masked means (the reference embeddings), and compare all pairs of
references with a (B, M, M) matrix. It computes the same numbers as HigherHRNet's per-person loop.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from scalenas.errors import ScaleNASError
from scalenas.tasks.pose_targets import FOCAL_PRIOR_LOGIT


def heatmap_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, background_weight: float = 1.0
                 ) -> torch.Tensor:
    """(B, K, H, W) prediction and target, (B, H, W) mask -> (B,) mean squared error per image,
    averaged over joints and pixels (masked pixels count as zero error, as in HigherHRNet).

    ``background_weight`` < 1 is DEKR's weighting (Geng et al. 2021, ``bg_weight`` 0.1 on COCO): pixels
    outside every joint's Gaussian window (where the target is exactly 0; the truncated kernel is positive
    everywhere inside its window) count with that weight. Without it an image's few peak pixels are
    outweighed by thousands of background pixels and a short run learns flat, sub-threshold maps."""
    err = (pred - gt) ** 2 * mask[:, None].to(pred.dtype)
    if background_weight != 1.0:
        err = err * torch.where(gt > 0, 1.0, background_weight).to(err.dtype)
    return err.mean(dim=(1, 2, 3))


def heatmap_focal_loss(logits: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, alpha: float = 2.0,
                       beta: float = 4.0) -> torch.Tensor:
    """CornerNet/CenterNet's penalty-reduced focal loss on Gaussian heatmaps: (B, K, H, W) logits (their
    probabilities are :func:`~scalenas.tasks.pose_targets.focal_heatmaps`) and targets, (B, H, W) mask ->
    (B,) loss per image, summed over joints and pixels and divided by the image's number of peaks.

    A target's peaks (pixels equal to the maximum of their 3x3 window, above 0) are positives with
    ``-(1 - p)^alpha log p``; every other pixel is a negative with ``-(1 - gt)^beta p^alpha log(1 - p)``, so
    pixels near a peak are penalised less. Unlike MSE, a flat low map is not a cheap minimum: each missed
    peak costs ``log p``, which is what a short bottom-up run's blurred maps lack (see the README)."""
    z = logits.float() + FOCAL_PRIOR_LOGIT
    gt = gt.float()
    p = torch.sigmoid(z)
    peak = (gt > 0) & (gt == F.max_pool2d(gt, 3, stride=1, padding=1))
    m = mask[:, None].to(z.dtype)
    pos = (1 - p) ** alpha * F.logsigmoid(z) * peak
    neg = (1 - gt) ** beta * p ** alpha * F.logsigmoid(-z) * ~peak
    n = (peak * m).sum(dim=(1, 2, 3)).clamp(min=1)
    return -((pos + neg) * m).sum(dim=(1, 2, 3)) / n


def ae_loss(tags: torch.Tensor, joints: torch.Tensor, loss_type: str = "exp") -> tuple[torch.Tensor, torch.Tensor]:
    """Associative-embedding loss for 1-D per-joint tags.

    ``tags``: (B, K, H, W) tag maps; ``joints``: (B, M, K, 2) int (flat index into the (K, H, W) map,
    visible flag). Returns ``(push, pull)``, each (B,):

    * pull = mean over people of the mean squared deviation of a person's tags from its mean tag;
    * push = sum over ordered pairs i != j of exp(-(t_i - t_j)^2) / (N (N - 1)) / 2 ("exp"), or of
      max(0, 1 - |t_i - t_j|) ("max"). Zero for N < 2 (and pull zero for N = 0).
    """
    b = tags.shape[0]
    flat = tags.reshape(b, -1)
    idx = joints[..., 0].long()
    vis = (joints[..., 1] > 0).to(flat.dtype)                       # (B, M, K)
    m, k = idx.shape[1:]
    t = torch.gather(flat, 1, idx.reshape(b, m * k)).reshape(b, m, k)
    cnt = vis.sum(-1)                                               # (B, M) labelled joints per person
    person = cnt > 0
    n = person.sum(-1).to(flat.dtype)                               # (B,) people with a tag
    ref = (t * vis).sum(-1) / cnt.clamp(min=1)                      # (B, M) reference embeddings
    dev = ((t - ref[..., None]) ** 2 * vis).sum(-1) / cnt.clamp(min=1)
    pull = (dev * person).sum(-1) / n.clamp(min=1)

    diff = ref[:, :, None] - ref[:, None, :]                        # (B, M, M)
    if loss_type == "exp":
        sim = torch.exp(-diff ** 2)
    elif loss_type == "max":
        sim = torch.clamp(1 - diff.abs(), min=0)
    else:
        raise ValueError(f"unknown AE loss type {loss_type!r}")
    pair = person[:, :, None] & person[:, None, :]
    pair = pair & ~torch.eye(m, dtype=torch.bool, device=tags.device)[None]
    pairs = n * (n - 1)
    push = torch.where(pairs > 0, (sim * pair).sum((1, 2)) / pairs.clamp(min=1) * 0.5, torch.zeros_like(n))
    return push, pull


def bottomup_loss(outputs, batch: dict, num_joints: int, heatmap_factors=(1.0, 1.0), push_factor: float = 1e-3,
                  pull_factor: float = 1e-3, ae_type: str = "exp", background_weight: float = 1.0,
                  heatmap: str = "mse") -> tuple[torch.Tensor, dict[str, float]]:
    """HigherHRNet's total loss: sum over resolutions of the batch-mean heatmap loss (``heatmap`` "mse", or
    "focal": :func:`heatmap_focal_loss`), plus the batch-mean push and pull (1/4 resolution only), weighted.
    Components are reported weighted (they sum to the loss)."""
    y4, y2 = outputs[0], outputs[1]
    k = num_joints
    if y4.shape[1] != 2 * k or y2.shape[1] < k:
        raise ScaleNASError(f"pose loss: the head outputs {y4.shape[1]} and {y2.shape[1]} channels; the dataset "
                            f"has {k} keypoints, so a bottom-up head needs {2 * k} (heatmaps + tags) and {k}")
    hm_loss = heatmap_focal_loss if heatmap == "focal" else partial(heatmap_loss, background_weight=background_weight)
    hm4 = hm_loss(y4[:, :k], batch["heatmaps_0"], batch["mask_0"]).mean() * heatmap_factors[0]
    hm2 = hm_loss(y2[:, :k], batch["heatmaps_1"], batch["mask_1"]).mean() * heatmap_factors[1]
    push, pull = ae_loss(y4[:, k:2 * k].float(), batch["joints"], ae_type)
    push = push.mean() * push_factor
    pull = pull.mean() * pull_factor
    total = hm4 + hm2 + push + pull
    parts = {"hm4": float(hm4.detach()), "hm2": float(hm2.detach()), "push": float(push.detach()),
             "pull": float(pull.detach())}
    return total, parts


def joints_mse_loss(pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """HRNet's ``JointsMSELoss``: per joint 0.5 × MSE over batch and pixels of ``pred * w`` against
    ``target * w`` (so a per-joint weight acts squared, as there), averaged over joints. ``pred`` and
    ``target`` (B, K, h, w); ``target_weight`` (B, K, 1) or None (``use_target_weight: false``).
    Per-joint weights are folded into ``target_weight`` by the dataset (HRNet ``USE_DIFFERENT_JOINTS_WEIGHT``)."""
    if pred.shape != target.shape:
        raise ScaleNASError(f"top-down pose loss: the head outputs {tuple(pred.shape)} but the targets are "
                            f"{tuple(target.shape)} (B, K, h, w); check the keypoint info and task.input_hw")
    diff = pred.float() - target.float()
    if target_weight is not None:
        diff = diff * target_weight.float()[..., None]
    # mean over (B, h, w) per joint then over joints == mean over everything (equal sizes per joint)
    return 0.5 * (diff ** 2).mean()
