"""``search.halving`` in a real search on the tiny supernet, and the evaluator's kept BN statistics."""
import json
import os
import random

from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.search.runner import run_search
from scalenas.space.arch import Arch
from scalenas.train.checkpoint import load_supernet


def _log(run):
    with open(os.path.join(run, "evaluations.jsonl")) as f:
        return [json.loads(x) for x in f]


def test_kept_bn_statistics_give_the_recalibrated_result(supernet_ckpt):
    """A rung re-scores an arch with the BN statistics kept from its first calibration, after other
    archs were calibrated in between: the same numbers as a fresh calibration."""
    spec = EvalSpec(checkpoint=supernet_ckpt, task=load_supernet(supernet_ckpt)[1]["meta"]["task"], calib_images=16,
                    calib_batch_size=8)
    ev = Evaluator.from_spec(spec)
    space = ev.net.space
    a, b = (space.sample(random.Random(i), 0.5) for i in (1, 2))
    first = ev.evaluate(a, 4)
    ev.evaluate(b, 4)
    again = ev.evaluate(a, 8)
    fresh = Evaluator.from_spec(spec)
    assert again["metric"] == fresh.evaluate(a, 8)["metric"] and first["calib_bn"] == again["calib_bn"]
    assert fresh.evaluate(a)["metric"] == fresh.evaluate(a, 10 ** 6)["metric"]  # the whole split


def test_halving_search_is_deterministic_and_scores_survivors_in_full(search_cfg, supernet_ckpt, tmp_path):
    cfg = search_cfg(eval_max_images=None, halving={"min_images": 4, "eta": 2}, generations=1)
    runs = [str(tmp_path / f"run{i}") for i in range(2)]
    for r in runs:
        run_search(supernet_ckpt, r, cfg, progress=False)
    logs = [_log(r) for r in runs]
    key = lambda log: [(x["hash"], x["metric"], x["eval_images"]) for x in log]  # noqa: E731
    assert key(logs[0]) == key(logs[1])
    spec = EvalSpec(checkpoint=supernet_ckpt, task=load_supernet(supernet_ckpt)[1]["meta"]["task"],
                    calib_images=cfg["calib_images"], calib_batch_size=cfg["calib_batch_size"], threads=1)
    full = Evaluator.from_spec(spec)
    split = max(x["eval_images"] for x in logs[0])
    survivors = [x for x in logs[0] if x["eval_images"] == split]
    assert survivors and len(survivors) < len(logs[0])  # some were cut early, some went to the end
    for x in survivors:  # scored on the whole split: exactly the plain search's number
        assert x["metric"] == full.evaluate(Arch.from_dict(x["arch"]))["metric"]
    assert {x["eval_images"] for x in logs[0]} <= {4, 8, split}
