"""Subnet samplers for supernet training (method §5.1).

The subnet(s) of a step are a pure function of (seed, global step): every DDP rank trains the same
subnet without communicating, and a resumed run continues the same sequence. The state is therefore
just the seed and the settings.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from scalenas.errors import ScaleNASError
from scalenas.space.arch import Arch
from scalenas.space.space import SearchSpace
from scalenas.utils.registry import Registry

if TYPE_CHECKING:
    from scalenas.train.config import SamplerCfg


def step_rng(seed: int, step: int, salt: str = "") -> random.Random:
    # str seeds are hashed with SHA-512 by `random`, so this is stable across processes and platforms
    return random.Random(f"scalenas:{seed}:{step}:{salt}")


@dataclass(frozen=True)
class Group:
    name: str
    fusion_prob: float
    depths: tuple[int, ...]


class Sampler:
    """Base: ``archs_for(step)`` gives the (arch, group name) pairs trained at ``step``."""

    kind = ""

    def __init__(self, space: SearchSpace, seed: int = 0, pose_rule: bool = False):
        self.space = space
        self.seed = int(seed)
        self.pose_rule = pose_rule

    @classmethod
    def from_cfg(cls, cfg: "SamplerCfg", space: SearchSpace, seed: int, pose_rule: bool,
                 steps_per_epoch: int) -> "Sampler":
        """Built by ``SamplerCfg.build``: each sampler reads the settings of the ``sampler:`` section it uses."""
        raise NotImplementedError

    def archs_for(self, step: int) -> list[tuple[Arch, str]]:
        raise NotImplementedError

    def steps_per_group(self, total_steps: int) -> dict[str, int]:
        """How many of steps ``0 .. total_steps-1`` train each group. Here: every step trains the groups
        of step 0 (uniform, sandwich); a sampler that varies its groups per step overrides this."""
        out: dict[str, int] = {}
        for _, name in self.archs_for(0):
            out[name] = out.get(name, 0) + total_steps
        return out

    def _settings(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "pose_rule": self.pose_rule, "settings": self._settings()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ScaleNASError(f"sampler: checkpoint holds a {state.get('kind')!r} sampler, the config asks for "
                                f"{self.kind!r}; resume with the same sampler settings")
        if state.get("settings") != self._settings() or state.get("pose_rule") != self.pose_rule:
            raise ScaleNASError("sampler: the checkpoint's sampler settings differ from the config "
                                f"({state.get('settings')} vs {self._settings()}); resume with the same settings")
        self.seed = int(state["seed"])


#: samplers by ``Sampler.kind`` (the ``sampler.kind`` config key)
SAMPLERS = Registry("sampler", "sampler.kind", attr="kind")


@SAMPLERS.register
class GroupedSampler(Sampler):
    """Round-robin over 9 (fusion prob x depth range) groups plus a smallest and a largest group.

    Group order follows the reference code: g0 smallest (fusion ``smallest_fusion``, min depth),
    g1..g9 the product fusion_options x depth_options shifted by one (g9 = first combination),
    g10 largest (all edges, max depth). ``sandwich=False`` keeps only the 9 middle groups.
    The group index is ``step mod n_groups`` on the global step (``steps_per_cycle=None``, the default),
    or ``(step mod steps_per_cycle) mod n_groups`` to restart the cycle every ``steps_per_cycle`` steps
    as the reference does every epoch. A restart period shorter than the cycle never reaches the later
    groups (6 images at batch 4 trained only the smallest subnet), so it warns naming them.
    """

    kind = "grouped"

    def __init__(self, space: SearchSpace, seed: int = 0, pose_rule: bool = False,
                 fusion_options: Sequence[float] = (0.2, 0.5, 0.8),
                 depth_options: Sequence[Sequence[int]] | None = None, sandwich: bool = True,
                 smallest_fusion: float | None = None, steps_per_cycle: int | None = None):
        super().__init__(space, seed, pose_rule)
        depth_options = [list(d) for d in (depth_options or space.depth_pairs())]
        for d in depth_options:
            bad = [x for x in d if x not in space.depth_choices]
            if bad:
                raise ScaleNASError(f"sampler.depth_options: {bad} not among the space's depth choices "
                                    f"{list(space.depth_choices)}")
        if smallest_fusion is None:
            smallest_fusion = 0.0 if pose_rule else 0.1  # seg 0.1 / pose 0.0 in the reference
        combos = [Group(f"f{f:g}_d{''.join(map(str, d))}", float(f), tuple(d))
                  for f in fusion_options for d in depth_options]
        middle = [combos[g % len(combos)] for g in range(1, len(combos) + 1)]
        groups = middle
        if sandwich:
            lo, hi = min(space.depth_choices), max(space.depth_choices)
            groups = [Group("smallest", float(smallest_fusion), (lo,))] + middle + [Group("largest", 1.0, (hi,))]
        self.groups = groups
        self.fusion_options = [float(f) for f in fusion_options]
        self.depth_options = depth_options
        self.sandwich = sandwich
        self.smallest_fusion = float(smallest_fusion)
        self.steps_per_cycle = steps_per_cycle
        if steps_per_cycle and steps_per_cycle < len(groups):
            never = ", ".join(g.name for g in groups[steps_per_cycle:])
            warnings.warn(f"sampler.restart_every_epoch: an epoch has {steps_per_cycle} step(s), fewer than the "
                          f"{len(groups)} sampling groups, so groups {never} are never trained; set "
                          f"sampler.restart_every_epoch=false to cycle on the global step", UserWarning, stacklevel=2)

    @classmethod
    def from_cfg(cls, cfg, space, seed, pose_rule, steps_per_epoch):
        return cls(space, seed, pose_rule, cfg.fusion_options, cfg.depth_options, cfg.sandwich, cfg.smallest_fusion,
                   steps_per_epoch if cfg.restart_every_epoch else None)

    def group_index(self, step: int) -> int:
        s = step % self.steps_per_cycle if self.steps_per_cycle else step
        return s % len(self.groups)

    def sample_group(self, g: int, rng: random.Random) -> Arch:
        grp = self.groups[g]
        return self.space.sample(rng, grp.fusion_prob, grp.depths, pose_rule=self.pose_rule)

    def archs_for(self, step: int) -> list[tuple[Arch, str]]:
        g = self.group_index(step)
        return [(self.sample_group(g, step_rng(self.seed, step)), self.groups[g].name)]

    def steps_per_group(self, total_steps: int) -> dict[str, int]:
        """How many of steps ``0 .. total_steps-1`` train each group (counted, not sampled)."""
        n, cycle = len(self.groups), self.steps_per_cycle or total_steps
        full, rest = divmod(total_steps, cycle) if cycle else (0, 0)

        def hits(length: int, g: int) -> int:  # steps s < length with s % n == g
            return max(0, -(-(length - g) // n))

        return {grp.name: full * hits(cycle, g) + hits(rest, g) for g, grp in enumerate(self.groups)}

    def _settings(self) -> dict:
        return {"fusion_options": self.fusion_options, "depth_options": self.depth_options, "sandwich": self.sandwich,
                "smallest_fusion": self.smallest_fusion, "steps_per_cycle": self.steps_per_cycle}


@SAMPLERS.register
class UniformSampler(Sampler):
    """Baseline: every edge on with ``fusion_prob`` (0.5), every depth uniform over the choices."""

    kind = "uniform"

    def __init__(self, space: SearchSpace, seed: int = 0, pose_rule: bool = False, fusion_prob: float = 0.5):
        super().__init__(space, seed, pose_rule)
        self.fusion_prob = float(fusion_prob)

    @classmethod
    def from_cfg(cls, cfg, space, seed, pose_rule, steps_per_epoch):
        return cls(space, seed, pose_rule, cfg.fusion_prob)

    def archs_for(self, step: int) -> list[tuple[Arch, str]]:
        rng = step_rng(self.seed, step)
        return [(self.space.sample(rng, self.fusion_prob, None, self.pose_rule), "uniform")]

    def _settings(self) -> dict:
        return {"fusion_prob": self.fusion_prob}


@SAMPLERS.register
class SandwichSampler(UniformSampler):
    """BigNAS-style: largest + smallest + ``num_random`` uniform subnets per step, gradients accumulated."""

    kind = "sandwich"

    def __init__(self, space: SearchSpace, seed: int = 0, pose_rule: bool = False, fusion_prob: float = 0.5,
                 num_random: int = 2):
        super().__init__(space, seed, pose_rule, fusion_prob)
        self.num_random = int(num_random)

    @classmethod
    def from_cfg(cls, cfg, space, seed, pose_rule, steps_per_epoch):
        return cls(space, seed, pose_rule, cfg.fusion_prob, cfg.num_random)

    def archs_for(self, step: int) -> list[tuple[Arch, str]]:
        rng = step_rng(self.seed, step)
        out = [(self.space.largest(self.pose_rule), "largest"), (self.space.smallest(self.pose_rule), "smallest")]
        out += [(self.space.sample(rng, self.fusion_prob, None, self.pose_rule), "random")
                for _ in range(self.num_random)]
        return out

    def _settings(self) -> dict:
        return {"fusion_prob": self.fusion_prob, "num_random": self.num_random}


@SAMPLERS.register
class FixedSampler(Sampler):
    """One architecture at every step (``sampler.arch``): the supernet then trains that subnet alone,
    from the supernet's own initialisation, with the run's recipe. This is stand-alone training of
    the arch (the other paths never receive a gradient), used by ``scalenas study`` to compare
    inherited-weight scores with from-scratch ones under the same optimiser, schedule and data."""

    kind = "fixed"

    def __init__(self, space: SearchSpace, arch: Arch, seed: int = 0, pose_rule: bool = False):
        super().__init__(space, seed, pose_rule)
        self.arch = space.validate(arch, pose_rule, where="sampler.arch")

    @classmethod
    def from_cfg(cls, cfg, space, seed, pose_rule, steps_per_epoch):
        if cfg.arch is None:
            raise ScaleNASError("sampler.arch: sampler kind 'fixed' needs the architecture to train (an arch dict)")
        return cls(space, Arch.from_dict(cfg.arch, where="sampler.arch"), seed, pose_rule)

    def archs_for(self, step: int) -> list[tuple[Arch, str]]:
        return [(self.arch, "fixed")]

    def _settings(self) -> dict:
        return {"arch": self.arch.hash}
