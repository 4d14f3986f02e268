import math

import numpy as np
import pytest
import torch

from scalenas.tasks.pose_losses import ae_loss, bottomup_loss, heatmap_loss


def _joints(b, m, k, entries):
    """entries: (batch, person, joint, flat_index)."""
    j = torch.zeros(b, m, k, 2, dtype=torch.long)
    for bi, p, jt, idx in entries:
        j[bi, p, jt] = torch.tensor([idx, 1])
    return j


def _reference(tags, joints, loss_type="exp"):
    """HigherHRNet's per-person loop, for comparison."""
    push_all, pull_all = [], []
    flat = tags.reshape(tags.shape[0], -1)
    for b in range(tags.shape[0]):
        refs, pull = [], 0.0
        for person in joints[b]:
            vals = [flat[b, i] for i, v in person.tolist() if v > 0]
            if not vals:
                continue
            t = torch.stack(vals)
            refs.append(t.mean())
            pull = pull + ((t - refs[-1]) ** 2).mean()
        n = len(refs)
        if n == 0:
            push_all.append(torch.tensor(0.0)); pull_all.append(torch.tensor(0.0))
            continue
        if n == 1:
            push_all.append(torch.tensor(0.0)); pull_all.append(pull / n)
            continue
        r = torch.stack(refs)
        d = r[None] - r[:, None]
        s = torch.exp(-d ** 2).sum() - n if loss_type == "exp" else torch.clamp(1 - d.abs(), min=0).sum() - n
        push_all.append(s / ((n - 1) * n) * 0.5)
        pull_all.append(pull / n)
    return torch.stack(push_all), torch.stack(pull_all)


def test_ae_loss_zero_people():
    tags = torch.randn(1, 2, 4, 4)
    push, pull = ae_loss(tags, torch.zeros(1, 30, 2, 2, dtype=torch.long))
    assert push.item() == 0 and pull.item() == 0


def test_ae_loss_one_person_hand_computed():
    tags = torch.zeros(1, 2, 4, 4)
    tags.view(-1)[3] = 1.0
    tags.view(-1)[16 + 5] = 3.0
    push, pull = ae_loss(tags, _joints(1, 30, 2, [(0, 0, 0, 3), (0, 0, 1, 21)]))
    # mean tag 2, deviations +-1 -> pull 1; push 0 with a single person
    assert push.item() == 0 and pull.item() == pytest.approx(1.0)


def test_ae_loss_two_people_hand_computed():
    tags = torch.zeros(1, 2, 1, 4)                      # 2 joints, maps of 1 x 4
    flat = tags.view(-1)
    flat[0], flat[4] = 0.0, 1.0                          # person 0: tags 0 and 1 -> mean 0.5, pull 0.25
    flat[1], flat[5] = 3.0, 3.0                          # person 1: tags 3 and 3 -> mean 3, pull 0
    j = _joints(1, 30, 2, [(0, 0, 0, 0), (0, 0, 1, 4), (0, 1, 0, 1), (0, 1, 1, 5)])
    push, pull = ae_loss(tags, j)
    # refs 0.5 and 3: push = (2 exp(-2.5^2)) / (2 * 1) * 0.5; pull = (0.25 + 0) / 2
    assert push.item() == pytest.approx(0.5 * math.exp(-6.25))
    assert pull.item() == pytest.approx(0.125)
    push_max, _ = ae_loss(tags, j, "max")
    assert push_max.item() == 0.0                        # |0.5 - 3| > 1: no hinge penalty
    flat[1], flat[5] = 0.5, 0.5                          # same reference tag -> maximal push 0.5
    push, _ = ae_loss(tags, j)
    assert push.item() == pytest.approx(0.5)


def test_ae_loss_matches_reference_loop_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    b, k, h, w, m = 3, 4, 6, 5, 30
    tags = torch.randn(b, k, h, w, generator=g, requires_grad=True)
    joints = torch.zeros(b, m, k, 2, dtype=torch.long)
    joints[..., 0] = torch.randint(0, k * h * w, (b, m, k), generator=g)
    joints[..., 1] = (torch.rand(b, m, k, generator=g) < 0.5).long()
    joints[0, 5:] = 0                    # image 0: at most 5 people
    joints[1] = 0                        # image 1: nobody
    joints[2, 1:, :, 1] = 0              # image 2: one person
    joints[2, 0, :, 1] = 1
    for lt in ("exp", "max"):
        push, pull = ae_loss(tags, joints, lt)
        rp, rl = _reference(tags.detach(), joints, lt)
        assert torch.allclose(push.detach(), rp, atol=1e-6) and torch.allclose(pull.detach(), rl, atol=1e-6)
    (push.sum() + pull.sum()).backward()
    assert tags.grad is not None and torch.isfinite(tags.grad).all()


def test_heatmap_loss_masks_pixels():
    pred = torch.ones(2, 3, 4, 4)
    gt = torch.zeros(2, 3, 4, 4)
    mask = torch.ones(2, 4, 4)
    mask[1] = 0
    out = heatmap_loss(pred, gt, mask)
    assert out.tolist() == [1.0, 0.0]


def test_heatmap_loss_background_weight_by_hand():
    """DEKR's weighting: target > 0 (inside a Gaussian window) counts 1, the rest background_weight."""
    from scalenas.tasks.pose_targets import heatmaps

    gt = torch.from_numpy(heatmaps(np.array([[[6.0, 6.0, 2]]]), (16, 16), sigma=1.0))[None]  # (1, 1, 16, 16)
    window = int((gt > 0).sum())
    assert window == 9 * 9  # the 6σ+3 kernel, wholly inside the map, positive everywhere
    pred = gt + 0.5           # error 0.25 on every pixel
    mask = torch.ones(1, 16, 16)
    assert heatmap_loss(pred, gt, mask).item() == pytest.approx(0.25)
    want = 0.25 * (window + 0.1 * (256 - window)) / 256
    assert heatmap_loss(pred, gt, mask, background_weight=0.1).item() == pytest.approx(want)
    mask[:, :8] = 0           # the ignore mask still zeroes what it covers
    inside = int((gt[0, 0, 8:] > 0).sum())
    want = 0.25 * (inside + 0.1 * (128 - inside)) / 256
    assert heatmap_loss(pred, gt, mask, background_weight=0.1).item() == pytest.approx(want)


def test_heatmap_focal_loss_by_hand():
    """One peak (target 1) and its neighbour (target 0.5) and a far pixel (target 0), computed by hand with
    p = sigmoid(logit + prior)."""
    from scalenas.tasks.pose_losses import heatmap_focal_loss
    from scalenas.tasks.pose_targets import FOCAL_PRIOR_LOGIT

    gt = torch.zeros(1, 1, 4, 4)
    gt[0, 0, 1, 1], gt[0, 0, 1, 2] = 1.0, 0.5
    logits = torch.full((1, 1, 4, 4), -20.0)        # p ~ 0: every negative costs ~0
    logits[0, 0, 1, 1], logits[0, 0, 1, 2] = 0.0, 1.0
    mask = torch.ones(1, 4, 4)
    p_peak, p_near = (torch.sigmoid(torch.tensor(v + FOCAL_PRIOR_LOGIT)) for v in (0.0, 1.0))
    want = -((1 - p_peak) ** 2 * torch.log(p_peak) + (1 - 0.5) ** 4 * p_near ** 2 * torch.log(1 - p_near))
    assert heatmap_focal_loss(logits, gt, mask).item() == pytest.approx(want.item(), rel=1e-4)
    mask[0, 1, 2] = 0                                # a masked pixel costs nothing
    want = -((1 - p_peak) ** 2 * torch.log(p_peak))
    assert heatmap_focal_loss(logits, gt, mask).item() == pytest.approx(want.item(), rel=1e-4)
    mask[0, 1, 1] = 0                                # no peak left: divided by 1, not 0
    assert heatmap_focal_loss(logits, gt, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_focal_loss_prefers_sharp_peaks_to_flat_maps():
    """MSE's cheap minimum, a flat low map, is expensive under the focal loss: a map with the right peak
    beats it by far, where MSE scores them within a factor of two."""
    from scalenas.tasks.pose_losses import heatmap_focal_loss
    from scalenas.tasks.pose_targets import focal_logits, heatmaps

    gt = torch.from_numpy(heatmaps(np.array([[[8.0, 8.0, 2]]]), (16, 16), sigma=2.0))[None]
    mask = torch.ones(1, 16, 16)
    flat = torch.full_like(gt, 0.05)
    sharp = (gt > 0.99).float() * 0.9 + 0.01        # the right peak, nothing around it
    focal = [heatmap_focal_loss(focal_logits(h), gt, mask).item() for h in (flat, sharp)]
    mse = [heatmap_loss(h, gt, mask).item() for h in (flat, sharp)]
    assert focal[0] > 10 * focal[1] and mse[1] > 0.5 * mse[0]


def test_bottomup_loss_components_sum():
    k = 3
    y4 = torch.zeros(2, 2 * k, 8, 8, requires_grad=True)
    y2 = torch.ones(2, k, 16, 16, requires_grad=True)
    batch = {"heatmaps_0": torch.zeros(2, k, 8, 8), "heatmaps_1": torch.zeros(2, k, 16, 16),
             "mask_0": torch.ones(2, 8, 8), "mask_1": torch.ones(2, 16, 16),
             "joints": torch.zeros(2, 30, k, 2, dtype=torch.long)}
    loss, parts = bottomup_loss((y4, y2), batch, k)
    assert set(parts) == {"hm4", "hm2", "push", "pull"}
    assert parts["hm2"] == pytest.approx(1.0) and parts["hm4"] == 0
    assert loss.item() == pytest.approx(sum(parts.values()))
    loss.backward()
