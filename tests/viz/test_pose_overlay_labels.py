"""Pose overlays: score labels never overlap and stay inside the image; --min-score filters only the drawing."""
import itertools

import numpy as np
import pytest

from scalenas.data.keypoint_info import KeypointInfo
from scalenas.viz.pose_overlay import draw_people, label_size, place_labels

INFO = KeypointInfo.from_dict({"keypoints": ["a", "b", "c"], "skeleton": [["a", "b"], ["b", "c"]]}, "test")


def _disjoint(a, b) -> bool:
    return a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


@pytest.mark.parametrize("layout", ["same_spot", "crowded_row", "corners"])
def test_labels_are_pairwise_disjoint_and_inside_the_image(layout):
    rng = np.random.default_rng(0)
    h, w = 120, 160
    if layout == "same_spot":  # ten people whose boxes all start at the same point
        anchors = [(40, 50, 60, 90)] * 10
    elif layout == "crowded_row":
        anchors = [(x, 30 + rng.integers(0, 4), x + 12, 80) for x in range(0, 150, 8)]
    else:  # objects touching every edge and corner
        anchors = [(0, 0, 10, 10), (150, 0, 160, 10), (0, 110, 10, 120), (150, 110, 160, 120), (70, 0, 90, 5)]
    sizes = [label_size(f"{s:.2f}", 0.35) for s in rng.random(len(anchors))]
    boxes = place_labels(anchors, sizes, (h, w))
    placed = [b for b in boxes if b is not None]
    assert len(placed) == len(anchors)  # all fit in these layouts
    for b, (sw, sh) in zip(boxes, sizes):
        assert (b[2], b[3]) == (sw, sh) and 0 <= b[0] and b[0] + b[2] <= w and 0 <= b[1] and b[1] + b[3] <= h
    for a, b in itertools.combinations(placed, 2):
        assert _disjoint(a, b), (a, b)


def test_first_label_sits_just_above_its_object_and_a_full_image_drops_labels():
    (box,) = place_labels([(40, 50, 60, 90)], [(20, 10)], (120, 160))
    assert box == (40, 38, 20, 10)  # above the top-left corner, 2 px clear of it
    boxes = place_labels([(0, 0, 5, 5)] * 50, [(30, 10)] * 50, (24, 64))  # room for 4 at most with gaps
    placed = [b for b in boxes if b is not None]
    assert 1 <= len(placed) <= 4 and boxes[0] is not None
    for a, b in itertools.combinations(placed, 2):
        assert _disjoint(a, b)


def test_min_score_filters_the_drawing_only():
    img = np.zeros((64, 64, 3), np.uint8)
    strong = [[10, 10, 0.9], [20, 20, 0.9], [30, 30, 0.9]]
    weak = [[50, 10, 0.9], [50, 20, 0.9], [50, 30, 0.9]]
    both = draw_people(img, np.array([strong, weak]), INFO, 0.1, scores=[0.8, 0.05], min_score=0.1)
    only_strong = draw_people(img, np.array([strong]), INFO, 0.1, scores=[0.8])
    assert np.array_equal(both, only_strong)
    assert not np.array_equal(draw_people(img, np.array([strong, weak]), INFO, 0.1, scores=[0.8, 0.05]),
                              only_strong)  # without min_score the weak person is drawn
