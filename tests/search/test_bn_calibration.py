"""BN recalibration (method §6.2) on a supernet trained with grouped sampling over many subnets."""
import random

import torch

from scalenas.search.evaluator import EvalSpec, Evaluator
from scalenas.train.checkpoint import load_supernet
from scalenas.tasks.base import build_task


def test_recalibrated_bn_beats_shared_statistics(supernet_ckpt):
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, ck = load_supernet(supernet_ckpt)
        task = build_task(ck["meta"]["task"])
        space = net.space
        rng = random.Random(1)
        archs = [space.largest(), space.smallest()] + [space.sample(rng, f, d) for f, d in
                                                       ((0.2, [1]), (0.8, [2]), (0.5, [1, 2]), (0.8, [1, 2]))]
        shared = []
        for a in archs:  # the supernet's own running statistics (an average over all trained subnets)
            net.set_active(a)
            shared.append(task.evaluate(net, "search")["R2"])
        spec = EvalSpec(checkpoint=supernet_ckpt, task=ck["meta"]["task"], split="search", calib_images=64,
                        calib_batch_size=16, threads=1)
        ev = Evaluator(load_supernet(supernet_ckpt)[0], task, spec)
        calibrated = [ev.evaluate(a)["metric"] for a in archs]
    finally:
        torch.set_num_threads(prev)
    print("\nsearch-split R2, shared BN statistics -> recalibrated (64 training images):")
    for a, s, c in zip(archs, shared, calibrated):
        print(f"  {a.hash} {a.depth_string():>16}  {s:8.1f} -> {c:6.1f}")
    gains = [c - s for s, c in zip(shared, calibrated)]
    mean_gain = sum(gains) / len(gains)
    print(f"  mean gain {mean_gain:.1f}; better for {sum(g > 0 for g in gains)}/{len(gains)}")
    assert mean_gain > 5.0
    assert sum(g > 0 for g in gains) >= 4
    # the extreme subnets (largest: all edges) are the furthest from the averaged statistics
    assert calibrated[0] > shared[0] + 10
    assert min(calibrated) > 0  # every recalibrated subnet predicts better than the mean
