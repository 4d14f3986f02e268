"""Top-down decoding checked against hand cases and against HRNet's / DarkPose's definitions restated as
plain loops (the module vectorises them)."""
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalenas.data.pose_transforms import affine_matrix, apply_affine
from scalenas.errors import ScaleNASError
from scalenas.tasks.topdown_decode import (TopDownDecodeConfig, decode_heatmaps, flip_heatmaps_back, gaussian_blur,
                                           infer_heatmaps, max_preds, oks_iou, oks_nms, quarter_offset, rescore,
                                           topdown_results)

H, W = 256, 192          # crop
h, w = 64, 48            # heatmaps


def hrnet_target(x, y, sigma=2.0, stride=4):
    """HRNet's Gaussian target for a joint at crop (x, y): integer centre int(x/stride + 0.5)."""
    mx, my = int(x / stride + 0.5), int(y / stride + 0.5)
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def gaussians(centres, sigma=2.0):
    """(N, 2) sub-pixel heatmap centres -> (1, N, h, w) Gaussians."""
    c = np.asarray(centres, np.float64)
    yy, xx = np.mgrid[:h, :w]
    d2 = (xx[None] - c[:, 0, None, None]) ** 2 + (yy[None] - c[:, 1, None, None]) ** 2
    return np.exp(-d2 / (2 * sigma ** 2))[None].astype(np.float32)


IDENTITY = (np.array([[w / 2, h / 2]]), np.array([[w / 200, h / 200]]))   # heatmap px == "image" px


# -- flip test ------------------------------------------------------------------------------------------

def test_flip_shift_round_trip():
    """Convention: an ideal network draws a joint at crop x at heatmap int(x/4 + 0.5) (HRNet's targets).
    The mirrored crop has the left joint (channel 1) at W-1-x, drawn in the right channel (2). Flipping back
    with HRNet's one-pixel shift lands it exactly on the unflipped pass's peak, for every x; without the
    shift it is one pixel left (the 3/4-px misalignment explained in ``flip_heatmaps_back``)."""
    fi = [0, 2, 1]
    y = 101.0
    for x in range(8, W - 8):
        flipped = np.zeros((1, 3, h, w), np.float32)
        flipped[0, 2] = hrnet_target(W - 1 - x, y)
        want = np.unravel_index(hrnet_target(x, y).argmax(), (h, w))
        t = torch.from_numpy(flipped)
        back = flip_heatmaps_back(t, fi, shift=True).numpy()
        assert np.unravel_index(back[0, 1].argmax(), (h, w)) == want, x
        assert back[0, 2].max() == 0 and back[0, 0].max() == 0
        raw = flip_heatmaps_back(t, fi, shift=False).numpy()
        assert np.unravel_index(raw[0, 1].argmax(), (h, w)) == (want[0], want[1] - 1), x
        assert np.array_equal(t.numpy(), flipped)                   # input untouched


def test_flip_back_shift_keeps_column_zero():
    hm = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).reshape(2, 1, 2, 4)
    out = flip_heatmaps_back(hm, [0], shift=True)
    mirrored = hm.flip(3)
    assert torch.equal(out[..., 0], mirrored[..., 0])
    assert torch.equal(out[..., 1:], mirrored[..., :-1])


def _fake_net(x):
    """Not flip-symmetric: per-channel weights differ, so a missing channel swap would show."""
    return F.avg_pool2d(x, 4) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)


def test_infer_heatmaps_averages_the_flipped_pass():
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    fi = [0, 2, 1]
    plain = infer_heatmaps(_fake_net, x, fi, TopDownDecodeConfig(flip=False))
    assert plain.dtype == np.float32 and plain.shape == (2, 3, h, w)
    np.testing.assert_array_equal(plain, _fake_net(x).numpy())
    # the flipped pass by hand in numpy: mirror, swap channels, shift one column right
    f = _fake_net(x.flip(3)).numpy()[:, :, :, ::-1][:, fi]
    f = np.concatenate([f[..., :1], f[..., :-1]], axis=-1)
    both = infer_heatmaps(_fake_net, x, fi, TopDownDecodeConfig(flip=True))
    np.testing.assert_allclose(both, (plain + f) / 2, rtol=1e-6, atol=1e-7)
    # an ONNX-style wrapper returning a list of numpy arrays gives the same
    onnx_like = infer_heatmaps(lambda t: [_fake_net(t).numpy()], x, fi, TopDownDecodeConfig(flip=True))
    np.testing.assert_allclose(onnx_like, both, rtol=1e-6, atol=1e-7)


def test_infer_heatmaps_wrong_joint_count_is_one_line():
    with pytest.raises(ScaleNASError, match=r"^top-down decoder: .*\(1, 3, 64, 48\).*5 keypoints[^\n]*$"):
        infer_heatmaps(_fake_net, torch.zeros(1, 3, H, W), [0, 1, 2, 3, 4], TopDownDecodeConfig(flip=False))


# -- heatmap -> joints ---------------------------------------------------------------------------------

def test_argmax_and_quarter_offset_hand_case():
    hm = np.zeros((1, 3, 8, 8), np.float32)
    hm[0, 0, 3, 4] = 1.0                       # peak (x=4, y=3)
    hm[0, 0, 3, 5], hm[0, 0, 3, 3] = 0.5, 0.2  # right > left -> +0.25 in x
    hm[0, 0, 2, 4], hm[0, 0, 4, 4] = 0.3, 0.3  # equal -> no step in y
    hm[0, 1, 3, 1] = 0.7                       # x = 1: HRNet's bound (1 < px) leaves it unrefined
    hm[0, 1, 3, 2] = 0.6
    # joint 2 all zero: (0, 0) with confidence 0
    coords, maxvals = max_preds(hm)
    np.testing.assert_array_equal(coords[0], [[4, 3], [1, 3], [0, 0]])
    np.testing.assert_array_equal(maxvals[0], np.array([1.0, 0.7, 0.0], np.float32))
    np.testing.assert_array_equal(quarter_offset(hm, coords)[0], [[4.25, 3], [1, 3], [0, 0]])
    # through the inverse affine: centre (4, 4), 16 source px onto 8 heatmap px -> x = 4 + 2 (x_hm - 4)
    xy, mv = decode_heatmaps(hm, [[4.0, 4.0]], [[16 / 200, 16 / 200]], TopDownDecodeConfig())
    np.testing.assert_allclose(xy[0], [[4.5, 2.0], [-2.0, 2.0], [-4.0, -4.0]], atol=1e-9)
    np.testing.assert_array_equal(mv, maxvals)


def _quarter_loop(hm, coords):
    """HRNet get_final_preds POST_PROCESS, as its loop."""
    out = coords.copy()
    for n in range(coords.shape[0]):
        for p in range(coords.shape[1]):
            m = hm[n, p]
            px, py = int(math.floor(coords[n, p, 0] + 0.5)), int(math.floor(coords[n, p, 1] + 0.5))
            if 1 < px < m.shape[1] - 1 and 1 < py < m.shape[0] - 1:
                diff = np.array([m[py, px + 1] - m[py, px - 1], m[py + 1, px] - m[py - 1, px]])
                out[n, p] += np.sign(diff) * 0.25
    return out


def _dark_loop(hm, coords, kernel):
    """DarkPose gaussian_blur + log + taylor, as its loops."""
    border = (kernel - 1) // 2
    lg = np.empty(hm.shape, np.float64)
    out = coords.astype(np.float64).copy()
    for n in range(hm.shape[0]):
        for p in range(hm.shape[1]):
            dr = np.zeros((hm.shape[2] + 2 * border, hm.shape[3] + 2 * border))
            dr[border:-border, border:-border] = hm[n, p]
            b = cv2.GaussianBlur(dr, (kernel, kernel), 0)[border:-border, border:-border]
            lg[n, p] = np.log(np.maximum(b * hm[n, p].max() / b.max(), 1e-10))
            m, px, py = lg[n, p], int(coords[n, p, 0]), int(coords[n, p, 1])
            if 1 < px < m.shape[1] - 2 and 1 < py < m.shape[0] - 2:
                g = np.array([0.5 * (m[py, px + 1] - m[py, px - 1]), 0.5 * (m[py + 1, px] - m[py - 1, px])])
                dxy = 0.25 * (m[py + 1, px + 1] - m[py - 1, px + 1] - m[py + 1, px - 1] + m[py - 1, px - 1])
                hs = np.array([[0.25 * (m[py, px + 2] - 2 * m[py, px] + m[py, px - 2]), dxy],
                               [dxy, 0.25 * (m[py + 2, px] - 2 * m[py, px] + m[py - 2, px])]])
                if np.linalg.det(hs) != 0:
                    out[n, p] -= np.linalg.solve(hs, g)
    return out


def test_vectorised_refinements_equal_the_reference_loops():
    rng = np.random.default_rng(3)
    centres = np.concatenate([rng.uniform(0, [w, h], size=(10, 2)), [[1.2, 30.0], [46.6, 62.7], [0, 0]]])
    hm = gaussians(centres) + rng.uniform(0, 0.05, size=(1, len(centres), h, w)).astype(np.float32)
    hm = np.concatenate([hm, hm[:, ::-1]])                    # B = 2
    coords, _ = max_preds(hm)
    np.testing.assert_array_equal(quarter_offset(hm, coords), _quarter_loop(hm, coords))
    cfg = TopDownDecodeConfig(dark=True)
    xy, _ = decode_heatmaps(hm, *[np.repeat(a, 2, 0) for a in IDENTITY], cfg)
    np.testing.assert_allclose(xy, _dark_loop(hm, coords, cfg.dark_kernel), atol=1e-4)


def test_dark_recovers_sub_pixel_centres_better_than_quarter_offset():
    rng = np.random.default_rng(0)
    centres = rng.uniform([8, 8], [w - 8, h - 8], size=(30, 2))
    hm = gaussians(centres)
    err = {}
    for dark in (False, True):
        xy, _ = decode_heatmaps(hm, *IDENTITY, TopDownDecodeConfig(dark=dark))
        err[dark] = np.linalg.norm(xy[0] - centres, axis=1)
    assert err[True].max() < 0.05, err[True].max()       # measured 4e-4
    assert err[False].mean() > 0.1, err[False].mean()    # measured 0.20 (quantised to quarter pixels)


def test_gaussian_blur_keeps_each_maximum_and_zero_maps():
    hm = np.zeros((1, 2, h, w), np.float32)
    hm[0, 0] = gaussians([[20.0, 30.0]], sigma=1.0)[0, 0] * 0.7
    out = gaussian_blur(hm, 11)
    assert out[0, 0].max() == pytest.approx(0.7, rel=1e-6) and out[0, 0].sum() > hm[0, 0].sum()
    assert not out[0, 1].any()


def hrnet_inverse_affine(center, scale, out_wh):
    """HRNet get_affine_transform(center, scale, 0, output_size, inv=1) from its three point pairs."""
    src_w, dst_w, dst_h = scale[0] * 200.0, out_wh[0], out_wh[1]
    c = np.asarray(center, np.float64)
    src = np.float32([c, c + [0, -0.5 * src_w], c + [0, -0.5 * src_w] + [-0.5 * src_w, 0]])
    dst = np.float32([[dst_w / 2, dst_h / 2], [dst_w / 2, dst_h / 2 - 0.5 * dst_w],
                      [dst_w / 2 - 0.5 * dst_w, dst_h / 2 - 0.5 * dst_w]])
    return cv2.getAffineTransform(dst, src)


def test_inverse_affine_round_trip():
    """Image points -> the heatmap frame with affine_matrix(center, scale, 0, (w, h)) -> Gaussians there ->
    decode -> the same image points; and decode's inverse is HRNet's transform_preds."""
    rng = np.random.default_rng(1)
    centers = np.array([[320.0, 240.0], [100.5, 410.25]])
    scales = np.array([[1.5, 2.0], [0.6, 0.8]])          # aspect 3:4, as box_to_center_scale makes them
    grid = np.stack([rng.integers(6, w - 6, 5), rng.integers(6, h - 6, 5)], -1).astype(np.float64)
    pts = np.stack([apply_affine(grid, hrnet_inverse_affine(c, s, (w, h))) for c, s in zip(centers, scales)])
    hm_pts = [apply_affine(p, affine_matrix(c, s, 0, (w, h))) for p, c, s in zip(pts, centers, scales)]
    np.testing.assert_allclose(hm_pts, [grid, grid], atol=1e-4)
    hm = np.concatenate([gaussians(q) for q in hm_pts])   # symmetric peaks on pixels: no quarter step
    for dark in (False, True):
        xy, _ = decode_heatmaps(hm, centers, scales, TopDownDecodeConfig(dark=dark))
        np.testing.assert_allclose(xy, pts, atol=1e-3)


# -- scoring and NMS ---------------------------------------------------------------------------------------

def test_rescore_mean_of_confident_joints_times_box_score():
    maxvals = np.array([[0.9, 0.5, 0.1], [0.1, 0.15, 0.2], [0.3, 0.3, 0.3]])
    got = rescore(maxvals, np.array([0.8, 1.0, 0.5]), 0.2)
    # 0.8 * mean(0.9, 0.5); nothing strictly above 0.2 -> 0; 0.5 * 0.3
    np.testing.assert_allclose(got, [0.8 * 0.7, 0.0, 0.15])


def _oks_hand(shift2, area=100.0, sigma=0.1):
    """OKS when every joint is displaced by sqrt(shift2): exp(-d^2 / (2 s (2 sigma)^2)), s = mean area."""
    return math.exp(-shift2 / (2 * area * (2 * sigma) ** 2))


def test_oks_nms_hand_case():
    sig = [0.1, 0.1]
    a = np.array([[10.0, 10.0, 1.0], [20.0, 20.0, 1.0]])
    near = a + [0.5, 0.0, 0.0]            # d^2 = 0.25 per joint
    far = a + [90.0, 90.0, 0.0]
    kps = np.stack([near, far, a])        # the best person is last in the array
    scores, areas = np.array([0.8, 0.5, 0.9]), np.full(3, 100.0)
    oks_near = _oks_hand(0.25)
    assert oks_near == pytest.approx(0.96923, abs=1e-5) and oks_near > 0.9
    np.testing.assert_allclose(oks_iou(a, kps[:2], 100.0, areas[:2], sig), [oks_near, 0.0], atol=1e-12)
    assert oks_nms(kps, scores, areas, sig, 0.9) == [2, 1]          # `near` (OKS 0.969) suppressed
    # one pixel off: OKS exp(-1/8) = 0.8825, kept at 0.9 and suppressed at 0.85
    kps[0] = a + [1.0, 0.0, 0.0]
    assert _oks_hand(1.0) == pytest.approx(0.88250, abs=1e-5)
    assert oks_nms(kps, scores, areas, sig, 0.9) == [2, 0, 1]
    assert oks_nms(kps, scores, areas, sig, 0.85) == [2, 1]
    assert oks_nms(np.zeros((0, 2, 3)), np.zeros(0), np.zeros(0), sig) == []


def test_oks_vis_threshold_counts_joints_confident_in_both():
    sig = [0.1, 0.1]
    g = np.array([[10.0, 10.0, 0.9], [20.0, 20.0, 0.9]])
    d = np.array([[[10.0, 10.0, 0.9], [40.0, 40.0, 0.1]]])   # the far joint is unconfident in d only
    assert oks_iou(g, d, 100.0, [100.0], sig)[0] == pytest.approx(0.5, abs=1e-9)
    assert oks_iou(g, d, 100.0, [100.0], sig, vis_threshold=0.2)[0] == pytest.approx(1.0)
    assert oks_iou(g, d[:, :1] * [1, 1, 0], 100.0, [100.0], sig[:1], vis_threshold=0.2)[0] == 0.0


def test_topdown_results_groups_rescores_and_suppresses():
    k = 2
    coords = np.array([[[10, 10], [20, 20]], [[10.5, 10], [20.5, 20]], [[60, 60], [70, 70]],
                       [[10, 10], [20, 20]]], np.float64)
    maxvals = np.array([[0.9, 0.7], [0.6, 0.6], [0.5, 0.1], [0.4, 0.3]])
    scale = np.full((4, 2), 0.05)                              # area 10 x 10 = 100
    meta = {"image_id": np.array([7, 7, 7, 3]), "score": np.array([1.0, 1.0, 0.5, 1.0]), "scale": scale}
    cfg = TopDownDecodeConfig()
    res = topdown_results(meta, coords, maxvals, cfg, [0.1] * k, category_id=1)
    # image 7: person 1 (score 0.6) overlaps person 0 (0.8) at OKS 0.969 -> dropped; person 2: 0.5 * 0.5
    assert [(r["image_id"], r["score"]) for r in res] == [(7, pytest.approx(0.8)), (7, pytest.approx(0.25)),
                                                            (3, pytest.approx(0.35))]
    assert res[0]["category_id"] == 1 and res[0]["keypoints"] == [10.0, 10.0, 0.9, 20.0, 20.0, 0.7]
    # the same from a sequence of instances (PersonInstance-like objects)
    objs = [SimpleNamespace(image_id=i, score=s, scale=tuple(c), area=0.0)
            for i, s, c in zip(meta["image_id"], meta["score"], scale)]
    assert topdown_results(objs, coords, maxvals, cfg, [0.1] * k) == res
    with pytest.raises(ScaleNASError, match="needs image_id, score and scale"):
        topdown_results({"image_id": meta["image_id"]}, coords, maxvals, cfg, [0.1] * k)


def test_config_rejects_even_dark_kernel():
    with pytest.raises(ScaleNASError, match="dark_kernel must be an odd integer >= 3, got 10"):
        TopDownDecodeConfig(dark_kernel=10)


def test_gaussian_blur_of_a_coco_sized_batch_matches_map_by_map():
    """32 COCO crops are 544 maps: more channels than OpenCV borders in one call, so the blur is chunked;
    every map must come out as if blurred alone."""
    rng = np.random.default_rng(0)
    hm = rng.random((32, 17, h, w)).astype(np.float32)
    out = gaussian_blur(hm, 11)
    for b, k in ((0, 0), (7, 9), (31, 16)):
        np.testing.assert_allclose(out[b, k], gaussian_blur(hm[b:b + 1, k:k + 1], 11)[0, 0], rtol=1e-12)
