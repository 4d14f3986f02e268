"""Process helpers: the default thread count never oversubscribes the cores; thread counts are restored;
devices and ranks resolve as documented."""
import pytest

from scalenas.utils import runtime


@pytest.mark.parametrize("cores, workers, env, expected", [
    (8, 0, {}, 8),
    (8, 2, {}, 6),                             # one core per busy loader worker
    (2, 2, {}, 1),                             # never below 1
    (2, 5, {}, 1),
    (8, 2, {"OMP_NUM_THREADS": "4"}, 4),       # OMP_NUM_THREADS caps ...
    (8, 6, {"OMP_NUM_THREADS": "4"}, 2),       # ... but never raises
    (16, 1, {"LOCAL_WORLD_SIZE": "4"}, 3),     # torchrun: this process's share of the node
])
def test_default_threads(monkeypatch, cores, workers, env, expected):
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    for k in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert runtime.default_threads(workers) == expected


def test_torch_threads_sets_and_restores():
    import torch

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with runtime.torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with runtime.torch_threads(target):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before  # restored after an error too
    with runtime.torch_threads(None):
        assert torch.get_num_threads() == before  # None: left as it is


def test_resolve_device_gives_a_torch_device_and_names_the_key():
    import torch

    from scalenas.errors import ScaleNASError

    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ScaleNASError, match="^search.device cuda:1: CUDA is not available on this machine$"):
            runtime.resolve_device("cuda:1", "search.device")


def test_rank_and_world_without_a_process_group():
    assert runtime.rank_and_world() == (0, 1)


@pytest.mark.parametrize("cores, requested, env, expected", [
    (2, 4, {}, 2),                             # the DataLoader warning case: 4 workers on 2 cores
    (8, 4, {}, 4),
    (2, 0, {}, 0),                             # 0 (load in this process) stays 0
    (16, 8, {"LOCAL_WORLD_SIZE": "4"}, 4),     # torchrun: this process's share of the node
    (2, 3, {"LOCAL_WORLD_SIZE": "4"}, 1),
])
def test_evaluation_loader_workers_are_capped_at_the_core_share(monkeypatch, cores, requested, env, expected):
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert runtime.loader_workers(requested) == expected
