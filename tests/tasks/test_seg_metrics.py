"""mIoU (HRNet convention) by hand and against torchmetrics; size buckets; DDP reduction."""
import numpy as np
import pytest
import torch

from scalenas.tasks.seg_metrics import (SegConfusion, confusion_matrix, metrics_from_confusion,
                                        size_bucket_map)


def test_miou_hand_computed():
    gt = torch.tensor([[0, 0, 1, 1], [1, 255, 0, 3]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 3]])
    cm = confusion_matrix(pred, gt, 4).numpy()
    # class 0: TP 2, GT 3, Pred 3 -> 2/4; class 1: TP 2, GT 3, Pred 3 -> 2/4; class 2: absent from GT,
    # its one prediction sits on an ignored pixel -> 0/max(1, 0) = 0; class 3: 1/1
    m = metrics_from_confusion(cm, ["a", "b", "c", "d"])
    assert m["IoU.a"] == pytest.approx(50) and m["IoU.b"] == pytest.approx(50)
    assert m["IoU.c"] == 0 and m["IoU.d"] == pytest.approx(100)
    assert m["mIoU"] == pytest.approx((50 + 50 + 0 + 100) / 4)  # absent class counts as 0
    assert m["pixel_acc"] == pytest.approx(100 * 5 / 7)
    assert m["mean_acc"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 0 + 1) / 4)


def test_matches_torchmetrics_when_all_classes_present():
    from torchmetrics.classification import MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    C = 5
    gt = torch.randint(0, C, (3, 40, 50), generator=g)
    gt[:, :3] = 255
    pred = torch.where(torch.rand(gt.shape, generator=g) < 0.7, gt.clamp(max=C - 1),
                       torch.randint(0, C, gt.shape, generator=g))
    acc = SegConfusion(C)
    for i in range(3):  # accumulated image by image, as evaluate() does
        acc.update(pred[i], gt[i])
    ours = acc.compute([str(c) for c in range(C)])
    ref = MulticlassJaccardIndex(num_classes=C, ignore_index=255, average="none")(pred, gt)
    np.testing.assert_allclose([ours[f"IoU.{c}"] for c in range(C)], 100 * ref.numpy(), rtol=1e-5)
    assert ours["mIoU"] == pytest.approx(100 * ref.mean().item(), rel=1e-5)
    assert ours["images"] == 3


def test_size_buckets_from_connected_components():
    label = np.zeros((120, 120), np.uint8)  # background: one large component
    label[2:7, 2:7] = 1  # 25 px: small
    label[20:60, 20:60] = 1  # 1600 px: medium (same class, another component)
    label[100:, 100:] = 255
    b = size_bucket_map(label, None, (100, 2000))
    assert (b[2:7, 2:7] == 0).all() and (b[20:60, 20:60] == 1).all()
    assert (b[70:90, 0:50] == 2).all() and (b[100:, 100:] == -1).all()


def test_size_buckets_from_instances_and_bucket_iou():
    label = np.zeros((100, 100), np.uint8)
    inst = np.zeros((100, 100), np.uint8)
    label[0:4, 0:4], inst[0:4, 0:4] = 1, 1  # small
    label[10:60, 10:60], inst[10:60, 10:60] = 2, 2  # 2500: medium
    b = size_bucket_map(label, inst, (100, 5000))
    assert (b[0:4, 0:4] == 0).all() and (b[10:60, 10:60] == 1).all() and (b[label == 0] == -1).all()
    pred = label.copy()
    pred[10:35, 10:60] = 0  # half of the medium object missed
    acc = SegConfusion(3)
    acc.update(torch.from_numpy(pred), torch.from_numpy(label), torch.from_numpy(b))
    m = acc.compute()
    assert m["iou_small"] == pytest.approx(100) and m["iou_medium"] == pytest.approx(50)
    assert np.isnan(m["iou_large"])


def test_all_reduce_under_initialised_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        acc = SegConfusion(2)
        acc.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
        assert acc.compute()["mIoU"] == pytest.approx(100 * (0.5 + 0.5) / 2)
        assert acc.compute()["images"] == 1  # a second compute does not reduce twice
    finally:
        dist.destroy_process_group()
