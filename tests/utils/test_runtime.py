"""The default thread count never oversubscribes the cores."""
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
