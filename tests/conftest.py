import os

import pytest
import torch

from scalenas.utils.runtime import setup_process

# As every scalenas entry point does: malloc fix, OpenCV pinned to one thread (forked loader workers
# must not inherit an OpenCV thread pool). Tests use a fixed thread count.
setup_process(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
