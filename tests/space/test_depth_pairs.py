"""The depth ranges shared by the training sampler's groups and the search's initial grid."""
import pytest

from scalenas.space import SearchSpace


@pytest.mark.parametrize("choices, pairs", [
    ((2, 3, 4, 5), [[2, 3], [3, 4], [4, 5]]),   # the paper's groups (method §5.1)
    ((3, 1, 2), [[1, 2], [2, 3]]),              # sorted first
    ((1,), [[1]]),                              # one choice: one range
])
def test_depth_pairs(choices, pairs):
    assert SearchSpace(depth_choices=choices).depth_pairs() == pairs
