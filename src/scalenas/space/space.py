"""The ScaleNAS search space (method §2-§3): macro-architecture, validation, special points, sampling,
and the variation operators the evolutionary search uses."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

from scalenas.errors import ScaleNASError
from scalenas.space.arch import Arch, ModuleArch

BRANCHES_PER_STAGE = (2, 3, 4)  # stages 2, 3, 4 of HRNet


@dataclass(frozen=True)
class SearchSpace:
    """HRNet-like macro-architecture with per-module, per-branch depth and per-step fusion edges.

    The defaults are the paper's W32 space: stem 64, stage 1 of 4 Bottlenecks, stages 2-4 with
    1/4/3 modules of 2/3/4 branches, widths C*(1,2,4,8), depth choices 2..5.
    """

    width: int = 32
    modules_per_stage: tuple[int, int, int] = (1, 4, 3)
    depth_choices: tuple[int, ...] = (2, 3, 4, 5)
    stem_channels: int = 64
    stage1_blocks: int = 4
    #: HRNet/ScaleNAS: nearest; HRNet-Seg's own code uses bilinear
    fuse_upsample: Literal["nearest", "bilinear"] = "nearest"

    def __post_init__(self):
        object.__setattr__(self, "modules_per_stage", tuple(int(x) for x in self.modules_per_stage))
        object.__setattr__(self, "depth_choices", tuple(sorted(int(x) for x in self.depth_choices)))
        if len(self.modules_per_stage) != 3 or any(n < 1 for n in self.modules_per_stage):
            raise ScaleNASError("space.modules_per_stage: expected three positive integers (stages 2, 3, 4)")
        if not self.depth_choices or min(self.depth_choices) < 1:
            raise ScaleNASError("space.depth_choices: expected a non-empty list of positive integers")
        if self.width < 1 or self.stem_channels < 1 or self.stage1_blocks < 1:
            raise ScaleNASError("space: width, stem_channels and stage1_blocks must be positive")
        if self.fuse_upsample not in ("nearest", "bilinear"):
            raise ScaleNASError("space.fuse_upsample: expected 'nearest' or 'bilinear'")

    # ---- structure -----------------------------------------------------------------------
    @property
    def module_branches(self) -> tuple[int, ...]:
        """Number of branches of each searchable module, e.g. (2, 3,3,3,3, 4,4,4)."""
        return tuple(nb for nb, n in zip(BRANCHES_PER_STAGE, self.modules_per_stage) for _ in range(n))

    @property
    def num_modules(self) -> int:
        return sum(self.modules_per_stage)

    @property
    def max_depth(self) -> int:
        return max(self.depth_choices)

    @property
    def channels(self) -> tuple[int, int, int, int]:
        return tuple(self.width * 2**b for b in range(4))

    def depth_pairs(self) -> list[list[int]]:
        """Consecutive pairs of the depth choices, the depth ranges of the training sampler's groups and of
        the search's initial grid: the paper's [[2,3],[3,4],[4,5]] for choices 2..5; [[c]] for one choice."""
        c = list(self.depth_choices)  # sorted by __post_init__
        return [c] if len(c) == 1 else [c[i:i + 2] for i in range(len(c) - 1)]

    def stage_of(self, module: int) -> int:
        """Paper stage number (2, 3 or 4) of a searchable module."""
        return {2: 2, 3: 3, 4: 4}[self.module_branches[module]]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modules_per_stage"] = list(self.modules_per_stage)
        d["depth_choices"] = list(self.depth_choices)
        return d

    @staticmethod
    def from_dict(d: dict) -> "SearchSpace":
        unknown = set(d) - set(SearchSpace.__dataclass_fields__)
        if unknown:
            raise ScaleNASError(f"space: unknown key(s) {sorted(unknown)}")
        return SearchSpace(**d)

    # ---- validation ------------------------------------------------------------------------
    def validate(self, arch: Arch, pose_rule: bool = False, where: str | None = None) -> Arch:
        """Raise :class:`ScaleNASError` naming the module, branch and step of the first problem, after
        ``where`` (the arch's file, say) when given."""
        try:
            return self._check(arch, pose_rule)
        except ScaleNASError as e:
            if where is None:
                raise
            raise ScaleNASError(f"{where}: {e}") from None

    def _check(self, arch: Arch, pose_rule: bool) -> Arch:
        nbs = self.module_branches
        if arch.num_modules != len(nbs):
            raise ScaleNASError(f"arch has {arch.num_modules} modules; this space has {len(nbs)} "
                                f"(modules per stage {list(self.modules_per_stage)})")
        for m, (ma, nb) in enumerate(zip(arch.modules, nbs)):
            where = f"module M{m}"
            if len(ma.depth) != nb:
                raise ScaleNASError(f"{where}: {len(ma.depth)} branch depths given, the module has {nb} branches")
            if len(ma.fuse) != nb:
                raise ScaleNASError(f"{where}: fusion masks for {len(ma.fuse)} branches given, the module has {nb}")
            for i, d in enumerate(ma.depth):
                if d not in self.depth_choices:
                    raise ScaleNASError(f"{where} branch {i}: depth {d} is not one of the choices "
                                        f"{list(self.depth_choices)}")
                steps = ma.fuse[i]
                if len(steps) > d:
                    raise ScaleNASError(f"{where} branch {i} step {d}: fusion bits beyond the branch's depth {d}")
                if len(steps) < d:
                    raise ScaleNASError(f"{where} branch {i} step {len(steps)}: missing fusion mask "
                                        f"(depth {d} needs one mask per step)")
                for s, bits in enumerate(steps):
                    if len(bits) != nb:
                        raise ScaleNASError(f"{where} branch {i} step {s}: mask {bits!r} has length {len(bits)}, "
                                            f"expected {nb} (one bit per input branch)")
                    if bits[i] != "1":
                        raise ScaleNASError(f"{where} branch {i} step {s}: missing self bit "
                                            f"(bit {i} of {bits!r} must be 1)")
        if pose_rule:
            last = arch.modules[-1]
            m = arch.num_modules - 1
            full = "1" * last.num_branches
            if last.fuse[0][last.depth[0] - 1] != full:
                raise ScaleNASError(f"module M{m} branch 0 step {last.depth[0] - 1}: the pose rule needs every branch "
                                    f"fused into branch 0 at its last step (mask {full!r})")
            for i in range(1, last.num_branches):
                selfonly = _self_only(last.num_branches, i)
                if last.fuse[i][last.depth[i] - 1] != selfonly:
                    raise ScaleNASError(f"module M{m} branch {i} step {last.depth[i] - 1}: the pose rule needs a "
                                        f"self-only mask {selfonly!r} at the branch's last step")
        return arch

    def is_valid(self, arch: Arch, pose_rule: bool = False) -> bool:
        try:
            self.validate(arch, pose_rule)
            return True
        except ScaleNASError:
            return False

    # ---- special points --------------------------------------------------------------------
    def _uniform(self, depth: int, bits_fn) -> Arch:
        mods = []
        for nb in self.module_branches:
            fuse = tuple(tuple(bits_fn(nb, i, s, depth) for s in range(depth)) for i in range(nb))
            mods.append(ModuleArch((depth,) * nb, fuse))
        return Arch(tuple(mods))

    def largest(self, pose_rule: bool = False) -> Arch:
        a = self._uniform(self.max_depth, lambda nb, i, s, d: "1" * nb)
        return self.apply_pose_rule(a) if pose_rule else a

    def smallest(self, pose_rule: bool = False) -> Arch:
        a = self._uniform(min(self.depth_choices), lambda nb, i, s, d: _self_only(nb, i))
        return self.apply_pose_rule(a) if pose_rule else a

    def hrnet(self, pose_rule: bool = False) -> Arch:
        """HRNet as a point of the space: depth 4, fusion only at each module's last step (method §3.4)."""
        if 4 not in self.depth_choices:
            raise ScaleNASError(f"space.depth_choices {list(self.depth_choices)}: the hrnet point needs depth 4")
        a = self._uniform(4, lambda nb, i, s, d: "1" * nb if s == d - 1 else _self_only(nb, i))
        return self.apply_pose_rule(a) if pose_rule else a

    def apply_pose_rule(self, arch: Arch) -> Arch:
        """Force the last module's last-step masks: full into branch 0, self-only elsewhere (method §3.2)."""
        last = arch.modules[-1]
        nb = last.num_branches
        fuse = []
        for i in range(nb):
            steps = list(last.fuse[i])
            steps[last.depth[i] - 1] = "1" * nb if i == 0 else _self_only(nb, i)
            fuse.append(tuple(steps))
        return Arch(arch.modules[:-1] + (ModuleArch(last.depth, tuple(fuse)),))

    # ---- sampling ----------------------------------------------------------------------------
    def sample_module(self, nb: int, rng: random.Random, fusion_prob: float, depths: Sequence[int]) -> ModuleArch:
        depth = tuple(rng.choice(list(depths)) for _ in range(nb))
        fuse = tuple(tuple(_random_mask(nb, i, rng, fusion_prob) for _ in range(depth[i])) for i in range(nb))
        return ModuleArch(depth, fuse)

    def sample(self, rng: random.Random, fusion_prob: float = 0.5, depths: Sequence[int] | None = None,
               pose_rule: bool = False) -> Arch:
        """Random subnet: each branch depth uniform over ``depths``; each non-self edge on with ``fusion_prob``."""
        depths = list(depths) if depths is not None else list(self.depth_choices)
        bad = [d for d in depths if d not in self.depth_choices]
        if bad:
            raise ScaleNASError(f"sample: depths {bad} are not among the space's choices {list(self.depth_choices)}")
        a = Arch(tuple(self.sample_module(nb, rng, fusion_prob, depths) for nb in self.module_branches))
        return self.apply_pose_rule(a) if pose_rule else a

    # ---- variation (evolution, method §6.1) ---------------------------------------------------
    def crossover(self, a: Arch, b: Arch, rng: random.Random, prob: float = 0.25,
                  frozen: Sequence[int] = ()) -> Arch:
        """Module-level crossover: each module not in ``frozen`` is taken whole from ``b`` with ``prob``."""
        mods = [mb if (m not in frozen and rng.random() < prob) else ma
                for m, (ma, mb) in enumerate(zip(a.modules, b.modules))]
        return Arch(tuple(mods))

    def mutate(self, arch: Arch, rng: random.Random, bit_prob: float = 0.2, depth_prob: float = 0.0,
               frozen: Sequence[int] = (), pose_rule: bool = False, new_step_fusion_prob: float = 0.5) -> Arch:
        """Bit mutation (flip each non-self bit with ``bit_prob``) and optional depth mutation.

        Depth mutation (not in the reference code, which never mutates depth) redraws a branch's depth
        from the choices with ``depth_prob``; steps added by a deeper branch get random masks with
        ``new_step_fusion_prob``; a shallower branch drops its trailing steps.
        """
        mods = []
        for m, ma in enumerate(arch.modules):
            if m in frozen:
                mods.append(ma)
                continue
            nb = ma.num_branches
            depth = list(ma.depth)
            fuse = [list(f) for f in ma.fuse]
            for i in range(nb):
                if depth_prob > 0 and rng.random() < depth_prob:
                    nd = rng.choice([d for d in self.depth_choices if d != depth[i]] or [depth[i]])
                    if nd < depth[i]:
                        fuse[i] = fuse[i][:nd]
                    else:
                        fuse[i] += [_random_mask(nb, i, rng, new_step_fusion_prob) for _ in range(nd - depth[i])]
                    depth[i] = nd
                for s in range(depth[i]):
                    bits = list(fuse[i][s])
                    for k in range(nb):
                        if k != i and rng.random() < bit_prob:
                            bits[k] = "1" if bits[k] == "0" else "0"
                    fuse[i][s] = "".join(bits)
            mods.append(ModuleArch(tuple(depth), tuple(tuple(f) for f in fuse)))
        out = Arch(tuple(mods))
        return self.apply_pose_rule(out) if pose_rule else out

    # ---- graph edits (the topology-aware strategies: AutoShrink, GRAM) ---------------------------
    def with_mask(self, arch: Arch, m: int, j: int, s: int, mask: str, pose_rule: bool = False) -> Arch:
        """``arch`` with branch ``j`` of module ``m`` fusing ``mask`` after step ``s``."""
        ma = arch.modules[m]
        steps = list(ma.fuse[j])
        steps[s] = mask
        return self._with_branch(arch, m, j, ma.depth[j], tuple(steps), pose_rule)

    def with_depth(self, arch: Arch, m: int, j: int, depth: int, new_masks: Sequence[str] = (),
                   pose_rule: bool = False) -> Arch:
        """``arch`` with branch ``j`` of module ``m`` at ``depth``: a shallower branch drops its trailing steps,
        a deeper one appends ``new_masks`` (self-only masks where none are given)."""
        ma = arch.modules[m]
        nb, old = ma.num_branches, ma.depth[j]
        extra = [new_masks[t] if t < len(new_masks) else _self_only(nb, j) for t in range(max(0, depth - old))]
        return self._with_branch(arch, m, j, depth, tuple(ma.fuse[j][:depth]) + tuple(extra), pose_rule)

    def _with_branch(self, arch: Arch, m: int, j: int, depth: int, steps: tuple[str, ...], pose_rule: bool) -> Arch:
        ma = arch.modules[m]
        mod = ModuleArch(ma.depth[:j] + (depth,) + ma.depth[j + 1:], ma.fuse[:j] + (steps,) + ma.fuse[j + 1:])
        out = Arch(arch.modules[:m] + (mod,) + arch.modules[m + 1:])
        return self.apply_pose_rule(out) if pose_rule and m == arch.num_modules - 1 else out

    def fixed_step(self, arch: Arch, m: int, j: int, s: int, pose_rule: bool) -> bool:
        """Whether the pose rule fixes the mask of branch ``j`` of module ``m`` after step ``s``."""
        return pose_rule and m == arch.num_modules - 1 and s == arch.modules[m].depth[j] - 1

    def shrink_moves(self, arch: Arch, pose_rule: bool = False) -> list[Arch]:
        """Every arch one move smaller (AutoShrink's shrink space), in a fixed order: one active cross-branch
        edge removed, or one branch lowered to the next smaller depth choice (its trailing steps dropped).
        Masks the pose rule fixes are never edited; a lowered last-module branch gets its fixed mask back."""
        out = []
        for m, ma in enumerate(arch.modules):
            for j in range(ma.num_branches):
                for s in range(ma.depth[j]):
                    if self.fixed_step(arch, m, j, s, pose_rule):
                        continue
                    for k in ma.inputs(j, s):
                        mask = ma.fuse[j][s]
                        out.append(self.with_mask(arch, m, j, s, mask[:k] + "0" + mask[k + 1:], pose_rule))
                lower = [d for d in self.depth_choices if d < ma.depth[j]]
                if lower:
                    out.append(self.with_depth(arch, m, j, lower[-1], pose_rule=pose_rule))
        return out

    def num_edges_available(self, arch: Arch) -> int:
        """Cross-branch edges that could be on at the arch's depths (the '/216' in 'edges 130/216')."""
        return sum((m.num_branches - 1) * sum(m.depth) for m in arch.modules)


def _self_only(nb: int, i: int) -> str:
    return "".join("1" if k == i else "0" for k in range(nb))


def _random_mask(nb: int, i: int, rng: random.Random, p: float) -> str:
    return "".join("1" if k == i else ("1" if rng.random() < p else "0") for k in range(nb))


# The paper's two widths (method §2).
W32 = SearchSpace(width=32)
W48 = SearchSpace(width=48)
