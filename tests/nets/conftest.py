import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions gain nothing from threads, and on a shared 2-core machine OpenMP threads spin
    against other processes (10-50x slower): run a module's forward passes single-threaded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
