"""Segmentation augmentation keeps image and label aligned (label = function of pixel colour)."""
import numpy as np
import pytest

from scalenas.data.seg_transforms import (TrainAugment, denormalize, normalize, pad_to, random_crop, random_hflip,
                                          resize, scale_choices, scaled_size)

PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30], [30, 200, 200]], np.uint8)
IGNORE = 255


def colour_world(rng, h=96, w=120, block=12):
    """Blocks of palette colours; the label of a pixel is the index of its colour."""
    cells = rng.integers(0, len(PALETTE), (h // block, w // block))
    label = np.kron(cells, np.ones((block, block), np.int64)).astype(np.uint8)
    return PALETTE[label], label


def assert_aligned(image, label, min_pure=0.5):
    """Every pixel whose colour is (almost) a palette colour carries that colour's class; padding
    (black) carries the ignore label; most pixels are such pure pixels."""
    d = np.abs(image[:, :, None, :].astype(np.int32) - PALETTE[None, None].astype(np.int32)).max(-1)
    pure = d.min(-1) <= 2
    assert (label[pure] == d.argmin(-1)[pure]).all()
    black = (image == 0).all(-1)
    assert (label[black] == IGNORE).all()
    assert (label[~black] != IGNORE).all()
    assert pure[~black].mean() >= min_pure


def test_flip_and_crop_are_exact():
    rng = np.random.default_rng(0)
    image, label = colour_world(rng)
    for _ in range(10):
        im, lb = random_crop(image, label, (48, 64), rng)
        im, lb = random_hflip(im, lb, rng)
        assert im.shape[:2] == lb.shape == (48, 64)
        assert_aligned(im, lb, min_pure=1.0)


@pytest.mark.parametrize("scale", [0.5, 0.6, 0.7, 0.9, 1.3, 1.7, 2.0])
def test_scale_keeps_alignment(scale):
    rng = np.random.default_rng(1)
    image, label = colour_world(rng)
    im, lb = resize(image, label, scaled_size(*image.shape[:2], scale))
    assert im.shape[:2] == lb.shape
    assert_aligned(im, lb, min_pure=0.6)


def test_full_train_pipeline_keeps_alignment():
    rng = np.random.default_rng(2)
    aug = TrainAugment(crop_size=(96, 128), scales=tuple(scale_choices(0.5, 2.0, 0.1)), base_size=120, flip=True,
                       ignore_index=IGNORE)
    saw_pad = False
    for _ in range(30):
        image, label = colour_world(rng)
        im, lb = aug(image, label, rng)
        assert im.shape == (96, 128, 3) and lb.shape == (96, 128) and lb.dtype == np.uint8
        assert_aligned(im, lb, min_pure=0.5)
        saw_pad |= bool((lb == IGNORE).any())
    assert saw_pad  # small scales were padded with the ignore label


def test_scale_choices_and_sizes():
    assert scale_choices(0.5, 2.0, 0.1).tolist() == pytest.approx([0.5 + 0.1 * k for k in range(16)])
    assert scaled_size(1024, 2048, 0.5, base_size=2048) == (512, 1024)
    assert scaled_size(100, 50, 2.0) == (200, 100)


def test_pad_uses_zero_and_ignore():
    image = np.full((10, 12, 3), 7, np.uint8)
    label = np.ones((10, 12), np.uint8)
    im, lb = pad_to(image, label, (16, 20), IGNORE)
    assert im.shape == (16, 20, 3) and (im[10:] == 0).all() and (im[:, 12:] == 0).all()
    assert (lb[10:] == IGNORE).all() and (lb[:10, :12] == 1).all()


def test_normalize_matches_formula_and_inverts():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    x = normalize(image)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    want = ((image[..., ::-1] / 255.0 - mean) / std).transpose(2, 0, 1)
    assert x.shape == (3, 5, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x, want, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(denormalize(x), image)
