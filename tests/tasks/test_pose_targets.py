import numpy as np
import pytest

from scalenas.tasks.pose_targets import build_targets, heatmaps, joint_indices, oracle_outputs


def _joints(*people):
    out = np.zeros((len(people), 3, 3), np.float32)
    for p, person in enumerate(people):
        for j, pt in person.items():
            out[p, j] = pt
    return out


def test_gaussian_at_truncated_cell_with_6sigma_plus_3_support():
    hm = heatmaps(_joints({0: (10.7, 20.2, 2)}), (40, 32), sigma=2.0)
    assert hm.shape == (3, 40, 32) and hm.dtype == np.float32
    assert hm[0, 20, 10] == pytest.approx(1.0)
    assert np.unravel_index(hm[0].argmax(), hm[0].shape) == (20, 10)
    assert hm[0, 20, 12] == pytest.approx(np.exp(-4 / 8))
    nz = np.nonzero(hm[0] > 0)
    assert nz[0].max() - nz[0].min() + 1 == 15 and nz[1].max() - nz[1].min() + 1 == 15   # 6*2+3
    assert hm[1:].max() == 0


def test_overlap_is_max_and_invisible_or_outside_skipped():
    js = _joints({0: (10, 10, 2), 1: (50, 5, 2)}, {0: (12, 10, 1), 2: (3, 3, 0)})
    hm = heatmaps(js, (32, 32), sigma=2.0)
    assert hm[0].max() == pytest.approx(1.0)
    assert hm[0, 10, 11] == pytest.approx(np.exp(-1 / 8))      # max of the two, not the sum
    assert hm[1].max() == 0 and hm[2].max() == 0               # outside the map / v = 0


def test_joints_near_border_are_clipped_not_dropped():
    hm = heatmaps(_joints({0: (0.5, 31.9, 2)}), (32, 32), sigma=2.0)
    assert hm[0, 31, 0] == pytest.approx(1.0)


def test_joint_indices_flat_index_and_cap():
    js = _joints({0: (3.6, 2.2, 2), 2: (1, 1, 0)}, {1: (5, 7, 1), 2: (40, 1, 2)})
    idx = joint_indices(js, (10, 8), max_people=30)
    assert idx.shape == (30, 3, 2) and idx.dtype == np.int64
    assert idx[0, 0].tolist() == [0 * 80 + 2 * 8 + 3, 1]
    assert idx[1, 1].tolist() == [1 * 80 + 7 * 8 + 5, 1]
    assert idx[0, 2, 1] == 0 and idx[1, 2, 1] == 0             # invisible, out of map
    many = np.tile(js[:1], (40, 1, 1))
    assert joint_indices(many, (10, 8), max_people=30)[:, 0, 1].sum() == 30


def test_build_targets_shapes():
    js = _joints({0: (3, 3, 2)})
    t = build_targets([js, js * [2, 2, 1]], [np.ones((8, 8)), np.ones((16, 16))], (8, 16), 2.0, 5)
    assert t["heatmaps_0"].shape == (3, 8, 8) and t["heatmaps_1"].shape == (3, 16, 16)
    assert t["mask_0"].shape == (8, 8) and t["joints"].shape == (5, 3, 2)


def test_oracle_outputs_give_each_person_one_tag():
    js = _joints({0: (16, 16, 2), 1: (40, 16, 2)}, {0: (44, 48, 2), 1: (20, 48, 2)})
    y4, y2 = oracle_outputs(js, (64, 64), sigma=2.0, tag_step=3.0)
    assert tuple(y4.shape) == (1, 6, 16, 16) and tuple(y2.shape) == (1, 3, 32, 32)
    tags = y4[0, 3:].numpy()
    assert tags[0, 4, 4] == 0 and tags[0, 12, 11] == 3       # person 0 and 1 near their noses
    assert tags[1, 4, 10] == 0 and tags[1, 12, 5] == 3
