import os

import pytest
import torch

# Tests run with a fixed thread count so timings and numerics do not depend on the host.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
