"""Segmentation losses: CE with ignore/weights on upsampled logits; OHEM selection (tasks.md §2.3)."""
import math

import pytest
import torch
import torch.nn.functional as F

from scalenas.tasks.seg_losses import OhemCrossEntropy, SegCrossEntropy


def test_ce_upsamples_quarter_res_logits():
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 32, 32), dtype=torch.uint8)
    target[0, :5] = 255
    w = [1.0, 2.0, 0.5, 1.5]
    got = SegCrossEntropy(255, w)(logits, target)
    up = F.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
    want = F.cross_entropy(up, target.long(), weight=torch.tensor(w), ignore_index=255)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()
    assert logits.grad is not None


def _logits_for(probs):
    """Two-class logits (1, 2, 1, N) whose softmax gives class 1 the probabilities ``probs``."""
    p = torch.tensor(probs, dtype=torch.float64)
    return torch.stack([torch.log(1 - p), torch.log(p)]).reshape(1, 2, 1, -1).float()


def test_ohem_hand_computed():
    # GT class 1 everywhere except the ignored last pixel; its probabilities:
    probs = [0.95, 0.6, 0.8, 0.3, 0.5]
    target = torch.tensor([[[1, 1, 1, 1, 255]]])
    nll = {p: -math.log(p) for p in probs}
    # valid probs sorted: 0.3 0.6 0.8 0.95. min_kept=1: prob[1] = 0.6 < thresh 0.7 -> threshold 0.7 -> {0.3, 0.6}
    loss = OhemCrossEntropy(255, thresh=0.7, min_kept=1)
    assert loss(_logits_for(probs), target).item() == pytest.approx((nll[0.3] + nll[0.6]) / 2, rel=1e-5)
    assert loss.last_kept == 0.5
    # min_kept=3: prob[3] = 0.95 > 0.7 -> threshold 0.95 -> {0.3, 0.6, 0.8} (strictly below)
    loss = OhemCrossEntropy(255, thresh=0.7, min_kept=3)
    assert loss(_logits_for(probs), target).item() == pytest.approx((nll[0.3] + nll[0.6] + nll[0.8]) / 3, rel=1e-5)
    # min_kept beyond the pixel count: index n-1 -> threshold 0.95 again
    loss = OhemCrossEntropy(255, thresh=0.2, min_kept=100)
    assert loss(_logits_for(probs), target).item() == pytest.approx((nll[0.3] + nll[0.6] + nll[0.8]) / 3, rel=1e-5)
    # class weights scale each pixel's CE; the mean over kept pixels stays a plain mean
    loss = OhemCrossEntropy(255, thresh=0.7, min_kept=1, weight=[1.0, 2.0])
    assert loss(_logits_for(probs), target).item() == pytest.approx(nll[0.3] + nll[0.6], rel=1e-5)


def test_ohem_upsamples_and_backprops():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 16, 16))
    out = OhemCrossEntropy(255, 0.7, 10)(logits, target)
    out.backward()
    assert torch.isfinite(out) and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [SegCrossEntropy, OhemCrossEntropy])
def test_all_ignored_gives_zero_with_graph(cls):
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = cls(255)(logits, torch.full((1, 16, 16), 255))
    out.backward()
    assert out.item() == 0.0
