"""The ranking-fidelity set: ``n`` architectures spread evenly over the space's GFLOPs range.

The smallest, largest and hrnet subnets are always in it; the other ``n - 3`` are drawn from a
seeded pool of random subnets (every fusion probability of the search's grid crossed with every
depth range), one per target GFLOPs value placed evenly strictly between the smallest and the
largest: for each target, the pool member closest to it not taken yet (ties: pool order). A pure
function of (space, head, input size, n, pool size, seed).
"""
from __future__ import annotations

import random

from scalenas.errors import ScaleNASError
from scalenas.search.strategies import FUSION_GRID
from scalenas.space.heads import HeadSpec
from scalenas.space.profile import profile
from scalenas.space.space import SearchSpace


def gflops(space: SearchSpace, arch, head: HeadSpec, input_hw) -> float:
    """Effective multiply-adds / 2^30 (the ScaleNAS convention, as the search costs them)."""
    return profile(space, arch, head, tuple(input_hw)).effective_gflops_2p30


def fidelity_archs(space: SearchSpace, head: HeadSpec, input_hw, n: int, pool: int, seed: int) -> list[dict]:
    """``[{"name", "arch", "hash", "gflops"}]`` sorted by GFLOPs (names: smallest, largest, hrnet, a1, a2, ...)."""
    pose = head.pose_rule
    try:
        refs = {"smallest": space.smallest(pose), "largest": space.largest(pose), "hrnet": space.hrnet(pose)}
    except ScaleNASError as e:
        raise ScaleNASError(f"study: the fidelity set needs the hrnet point; {e}") from None
    taken = {a.hash for a in refs.values()}
    rng = random.Random(f"scalenas-study:{seed}")
    grid = [(f, d) for f in FUSION_GRID for d in space.depth_pairs() + [list(space.depth_choices)]]
    cands = []
    for i in range(pool):
        f, d = grid[i % len(grid)]
        a = space.sample(rng, f, d, pose_rule=pose)
        if a.hash not in taken:
            taken.add(a.hash)
            cands.append((gflops(space, a, head, input_hw), a))
    lo, hi = (gflops(space, refs[k], head, input_hw) for k in ("smallest", "largest"))
    m = n - len(refs)
    if len(cands) < m:
        raise ScaleNASError(f"study.arch_pool: {pool} draws gave {len(cands)} distinct archs, fewer than the "
                            f"{m} needed; raise study.arch_pool")
    out = [{"name": k, "arch": a} for k, a in refs.items()]
    for j in range(m):
        target = lo + (hi - lo) * (j + 1) / (m + 1)
        best = min(range(len(cands)), key=lambda i: (abs(cands[i][0] - target), i))
        out.append({"name": f"a{j + 1}", "arch": cands.pop(best)[1]})
    for d in out:
        d["gflops"] = gflops(space, d["arch"], head, input_hw)
        d["hash"] = d["arch"].hash
    return sorted(out, key=lambda d: (d["gflops"], d["hash"]))
