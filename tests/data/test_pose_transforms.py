import numpy as np
import pytest

from scalenas.data.keypoint_info import coco
from scalenas.data.pose_transforms import (AffineParams, affine_matrix, apply_affine, apply_sample_affine,
                                           center_affine, compose, flip_matrix, invert, multi_scale_size,
                                           normalize, resize_for_test, sample_affine, to_image_coords,
                                           transform_joints, warp_mask)


def test_affine_maps_center_and_scale():
    m = affine_matrix((100, 50), 1.0, 0.0, (64, 64))          # 200 source px -> 64 output px
    assert np.allclose(apply_affine(np.array([[100, 50]]), m), [[32, 32]])
    assert np.allclose(apply_affine(np.array([[200, 50]]), m), [[64, 32]])


def test_affine_rotation_direction_and_isotropy():
    m = affine_matrix((0, 0), 1.0, 90.0, (200, 200))
    # a point to the right of the centre goes up on screen (counter-clockwise, y down)
    assert np.allclose(apply_affine(np.array([[10, 0]]), m), [[100, 90]])
    d = apply_affine(np.array([[3.0, 4.0], [0.0, 0.0]]), m)
    assert np.linalg.norm(d[0] - d[1]) == pytest.approx(5.0)


def test_keypoint_affine_round_trip():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 300, (50, 2))
    for _ in range(5):
        p = sample_affine(rng, (240, 320))
        m = p.matrix(128)
        back = apply_affine(apply_affine(pts, m), invert(m))
        assert np.allclose(back, pts, atol=1e-9)


def test_sample_affine_ranges():
    rng = np.random.default_rng(1)
    draws = [sample_affine(rng, (200, 400)) for _ in range(300)]
    scales = np.array([d.scale for d in draws]) / (200 / 200.0)
    assert scales.min() >= 0.75 and scales.max() <= 1.5
    rots = np.array([d.rot for d in draws])
    assert np.abs(rots).max() <= 30 and rots.std() > 10
    flips = np.mean([d.flip for d in draws])
    assert 0.4 < flips < 0.6
    shifts = np.array([d.center for d in draws]) - [200, 100]
    assert np.all(np.abs(shifts) <= 40 * 1.5 + 1)


def test_flip_is_index_mirror_and_swaps_joints():
    info = coco()
    joints = np.zeros((1, 17, 3), np.float32)
    joints[0, 5] = (10, 20, 2)   # left shoulder
    joints[0, 6] = (30, 20, 2)   # right shoulder
    fm = flip_matrix(64)
    out = transform_joints(joints, fm, info.flip_index)
    assert out[0, 6, :2].tolist() == [53, 20]    # old left shoulder, now the right one, at 63 - 10
    assert out[0, 5, :2].tolist() == [33, 20]
    assert out[0, 5, 2] == 2


def test_sample_transform_flip_matches_mirrored_arrays():
    """Folding the flip into each resolution's matrix equals warping and then mirroring the arrays."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    mask = (rng.random((90, 120)) > 0.3).astype(np.float32)
    joints = np.concatenate([rng.uniform(0, 90, (2, 17, 2)), np.full((2, 17, 1), 2.0)], -1).astype(np.float32)
    info = coco()
    p = AffineParams((60.0, 45.0), 0.6, 12.0, False)
    q = AffineParams((60.0, 45.0), 0.6, 12.0, True)
    i0, j0, m0 = apply_sample_affine(p, img, joints, mask, 64, (16, 32), info.flip_index)
    i1, j1, m1 = apply_sample_affine(q, img, joints, mask, 64, (16, 32), info.flip_index)
    assert np.array_equal(i1, i0[:, ::-1])
    for s, a, b, ma, mb in zip((16, 32), j0, j1, m0, m1):
        assert np.array_equal(mb, ma[:, ::-1])
        assert np.allclose(b[:, :, 0], s - 1 - a[:, list(info.flip_index), 0], atol=1e-4)
        assert np.allclose(b[:, :, 1], a[:, list(info.flip_index), 1], atol=1e-4)


def test_warp_mask_thresholds_and_treats_outside_as_ignored():
    mask = np.ones((50, 50), np.float32)
    m = affine_matrix((25, 25), 0.5, 0.0, (20, 20))           # 100 px window over a 50 px image
    out = warp_mask(mask, m, (20, 20))
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert out[10, 10] == 1 and out[0, 0] == 0


def test_center_affine_is_centred_square():
    p = center_affine((100, 300))
    assert p.center == (150, 50) and p.scale == 0.5 and not p.flip


@pytest.mark.parametrize("hw", [(480, 640), (640, 427), (256, 256), (333, 500)])
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_multi_scale_size_multiples_and_isotropy(hw, scale):
    (w, h), center, sv = multi_scale_size(hw, 512, scale, 0.5)
    assert w % 32 == 0 and h % 32 == 0
    assert min(w, h) == int(512 * scale)
    m = affine_matrix(center, sv, 0.0, (w, h))
    assert m[0, 0] == pytest.approx(m[1, 1]) and abs(m[0, 1]) < 1e-12
    # the whole image fits inside the network input (up to HigherHRNet's integer-rounded centre)
    corners = apply_affine(np.array([[0, 0], [hw[1] - 1, hw[0] - 1]], np.float64), m)
    tol = m[0, 0]
    assert corners.min() >= -tol and corners[1, 0] <= w + tol and corners[1, 1] <= h + tol


def test_multi_scale_size_long_side_multiple_of_64_as_higherhrnet():
    (w, h), _, _ = multi_scale_size((480, 640), 512, 1.0, 1.0)
    assert (w, h) == (704, 512)


def test_test_resize_inverse_mapping():
    img = np.zeros((300, 200, 3), np.uint8)
    resized, center, sv, size = resize_for_test(img, 256, 1.0, 1.0)
    assert resized.shape[:2] == (size[1], size[0])
    m = affine_matrix(center, sv, 0.0, size)
    pts = np.array([[10.0, 20.0], [150.5, 280.25]])
    assert np.allclose(to_image_coords(apply_affine(pts, m), center, sv, size), pts)


def test_normalize_bgr_to_rgb_imagenet():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 2] = 255                                          # pure red in BGR
    x = normalize(img)
    assert x.shape == (3, 2, 2) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((1 - 0.485) / 0.229)
    assert x[2, 0, 0] == pytest.approx((0 - 0.406) / 0.225)


def test_compose_order():
    a = affine_matrix((0, 0), 1.0, 0.0, (2, 2))
    f = flip_matrix(10)
    p = np.array([[5.0, 5.0]])
    assert np.allclose(apply_affine(p, compose(f, a)), apply_affine(apply_affine(p, a), f))
