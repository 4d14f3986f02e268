import os

import pytest
import torch

from scalenas.utils.runtime import setup_process

# As every scalenas entry point does: malloc fix, OpenCV pinned to one thread (forked loader workers
# must not inherit an OpenCV thread pool). Tests use a fixed thread count.
setup_process(min(2, os.cpu_count() or 1))


#: The tests' tiny space: width 8, one module per stage, depths 1 and 2 (a few seconds to train).
TINY_SPACE = {"width": 8, "modules_per_stage": [1, 1, 1], "depth_choices": [1, 2], "stem_channels": 16,
              "stage1_blocks": 1}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_space_cfg() -> dict:
    """The ``space:`` config section of the tiny space, shared by the session: copy it before changing it."""
    return TINY_SPACE
