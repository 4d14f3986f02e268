"""Which blocks and fusion edges of an arch reach the head's output (liveness, method §3.2).

A module updates its branches step by step: at step ``s`` every branch with ``s < depth[i]`` runs
block slot ``s`` (``a_i = block_i,s(v_i,s)``, else ``a_i = v_i,s``), then every branch ``j`` with
cross inputs at ``s`` fuses ``v_j,s+1 = ReLU(a_j + sum_k edge_jk(a_k))`` (else ``v_j,s+1 = a_j``).
The module's outputs are ``v_i,S``. Walking the steps backwards from the outputs the consumer reads,
a value is live if a live value reads it: a live ``v_j,s+1`` reads ``a_j`` and, if ``j`` fuses at
``s``, every ``a_k`` of its inputs through live edges; a live ``a_i`` reads ``v_i,s`` through block
``(i, s)`` if the branch runs at ``s``. Everything else is dead: computed and thrown away.

Since every ``v_i,s+1`` reads ``v_i,s``, the live values of a branch form a prefix of its steps, so
the live blocks of branch ``i`` are its first ``depth[i]`` slots: :attr:`ModuleLiveness.depth`.

What the head reads: the seg head concatenates every branch; both pose heads read branch 0 only.
Under the pose rule, branch 0 fuses every branch at its last step ``d_0 - 1``, so in the last module
the blocks of other branches at steps ``>= d_0``, and the fusion edges that feed only them, are dead
(ScaleNet-P1: ``stages.7.blocks.1.3`` and ``stages.7.fuse.2.1_3``, 90,496 params; over 200 random
W32 bottom-up archs, fusion probability 0.5: 3.9% of the params on average, up to 18%). Every
input branch of the last module is then read, so with seg or pose heads every earlier module,
transition and the stem are live; :func:`liveness` still propagates reads module by module, so the
analysis holds for any read set.

The published figures of HRNet-family papers count dead compute (their counters hook every module
that runs); ``space.profile`` gives both those and the *effective* figures of the live parts, which
is what a built ScaleNet contains.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from scalenas.space.arch import Arch, ModuleArch
from scalenas.space.heads import HeadSpec


@dataclass(frozen=True)
class ModuleLiveness:
    """Live parts of one module: ``depth[i]`` live block slots on branch i (a prefix), the live
    ``(step, out, in)`` fusion edges, and which input branches the module reads."""

    depth: tuple[int, ...]
    edges: frozenset[tuple[int, int, int]]
    reads: tuple[bool, ...]

    def block(self, branch: int, step: int) -> bool:
        return step < self.depth[branch]

    def fuses(self, step: int, out_branch: int) -> bool:
        """Whether the fusion into ``out_branch`` after ``step`` is live (then all of its edges are)."""
        return any(s == step and j == out_branch for s, j, _ in self.edges)

    def num_steps(self) -> int:
        return max(self.depth)


def module_liveness(ma: ModuleArch, read: Sequence[bool]) -> ModuleLiveness:
    """Live blocks and edges of ``ma`` when the consumer reads output branch i iff ``read[i]``."""
    nb = ma.num_branches
    live = list(read)  # live[i]: v_i at the end of the step being walked (starting at S)
    depth = [0] * nb
    edges = set()
    for s in reversed(range(ma.num_steps)):
        a_live = list(live)  # v_j,s+1 reads a_j whether or not j fuses
        for j in range(nb):
            if live[j]:
                for k in ma.inputs(j, s):
                    a_live[k] = True
                    edges.add((s, j, k))
        for i in range(nb):
            if a_live[i] and s < ma.depth[i] and depth[i] == 0:
                depth[i] = s + 1  # the last live slot of a prefix
        live = a_live  # v_i,s is live iff a_i,s is (through the block or passed through)
    return ModuleLiveness(tuple(depth), frozenset(edges), tuple(live))


def head_reads(head: HeadSpec | str, num_branches: int) -> tuple[bool, ...]:
    """Output branches of the last module the head reads: all for seg, branch 0 for pose heads."""
    head = HeadSpec.of(head)
    return tuple(i == 0 or not head.is_pose for i in range(num_branches))


def all_live(ma: ModuleArch) -> ModuleLiveness:
    """Liveness of a module whose every output is read (the supernet's view of a slot)."""
    return module_liveness(ma, (True,) * ma.num_branches)


def liveness(arch: Arch, head: HeadSpec | str) -> tuple[ModuleLiveness, ...]:
    """Per module, the parts of ``arch`` whose results reach ``head``'s output.

    Reads propagate backwards: module m's outputs are read where module m+1 reads its inputs, and
    a new branch's transition reads the last branch of module m.
    """
    mods = arch.modules
    out: list[ModuleLiveness] = [None] * len(mods)  # type: ignore[list-item]
    read = head_reads(head, mods[-1].num_branches)
    for m in reversed(range(len(mods))):
        out[m] = lv = module_liveness(mods[m], read)
        if m:
            nb_prev = mods[m - 1].num_branches
            read = lv.reads[:nb_prev]
            if nb_prev < len(lv.reads):  # the transition makes branch nb_prev from branch nb_prev - 1
                read = read[:-1] + (read[-1] or lv.reads[nb_prev],)
    return tuple(out)
