"""Search strategies: evolution (method §6.1) and a random-search baseline, behind one interface
(the topology-aware AutoShrink and GRAM live in ``graph_strategies``).

A strategy knows the search space and the objectives' names and directions, nothing else (no
datasets, no models; NNI/Archai style):

* ``ask() -> list[Arch]``: the next batch (generation 0: the initial population; then one
  generation of offspring). Every arch returned is new (never asked or told before, deduplicated by
  hash) and passes ``feasible(arch)`` (the hard constraints, checked before evaluation). An empty
  list means the strategy is finished.
* ``tell(results)``: ``[(arch, {objective name: value}), ...]``, in a deterministic order.
* ``state_dict()`` / ``load_state_dict()``: plain JSON (the RNG state as lists), so a search resumes
  exactly.

Budget accounting is the same for both strategies: ``initial`` archs at generation 0, then
``population`` per generation for ``generations`` generations (fewer only when constraints or a tiny
space leave no new feasible arch within ``max_tries`` draws).
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from scalenas.errors import ScaleNASError
from scalenas.search.objectives import Objective
from scalenas.search.pareto import pareto_front, select_by_layers
from scalenas.space.arch import Arch
from scalenas.space.space import SearchSpace
from scalenas.utils.io import lists_to_tuples, tuples_to_lists
from scalenas.utils.registry import Registry

if TYPE_CHECKING:
    from scalenas.search.config import SearchCfg

FUSION_GRID = (0.2, 0.35, 0.5, 0.65, 0.8)  # the reference's initial-population grid (random_seg_test.py)

#: the ``search:`` settings a strategy reads, in the order its state records them
SETTINGS = ("initial", "population", "parents", "generations", "crossover_prob", "bit_mutation_prob",
            "depth_mutation_prob", "freeze_last_module", "fusion_options", "depth_options", "max_tries")


class Strategy:
    """Base of the strategies (``ask``/``tell``/``state_dict``, see above); a subclass registers with
    ``@STRATEGIES.register`` under its ``name``.

    Args:
        space: the search space.
        objectives: the objectives' names and directions (their values arrive through ``tell``).
        settings: the validated ``search:`` section; the strategy reads the fields in ``SETTINGS``.
        seed: the seed of the strategy's own RNG.
        pose_rule: keep the last module's pose-rule masks (pose heads).
        feasible: the hard constraints; an arch failing them is never proposed.
    """

    name = ""
    #: the ``kind`` of the evaluation records of its batches after generation 0
    batch_kind = ""

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], settings: "SearchCfg",
                 seed: int = 0, pose_rule: bool = False, feasible: Callable[[Arch], bool] | None = None):
        self.space = space
        self.objectives = list(objectives)
        self.settings = settings
        self.pose_rule = pose_rule
        self.feasible = feasible or (lambda a: True)
        self.seed = int(seed)
        self.rng = random.Random(self.seed)
        self.generation = 0  # batches asked so far (0: nothing asked; 1: initial population asked; ...)
        self.history: list[tuple[Arch, dict[str, float]]] = []
        self.seen: set[str] = set()  # hashes asked or told: never proposed again
        self.told: set[str] = set()  # hashes in the history
        self.exhausted = False
        depth_options = settings.depth_options or space.depth_pairs()
        for d in depth_options:
            bad = [x for x in d if x not in space.depth_choices]
            if bad or not d:
                raise ScaleNASError(f"search.depth_options: {list(d)} is not a non-empty list of the space's depth "
                                    f"choices {list(space.depth_choices)}")
        self.grid = [(float(f), tuple(d)) for f in settings.fusion_options for d in depth_options]
        #: None (the config default): frozen for pose heads, as the reference never varies M7
        self.freeze_last_module = pose_rule if settings.freeze_last_module is None else settings.freeze_last_module

    # ---- interface ----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.exhausted or self.generation > self.settings.generations

    def ask(self) -> list[Arch]:
        if self.done:
            return []
        batch = self._propose()
        self.generation += 1
        if not batch:
            self.exhausted = True
        return batch

    def progress(self) -> str:
        """Where the run stands after the last ask, for the runner's progress line."""
        return f"generation {self.generation - 1}/{self.settings.generations}"

    def tell(self, results: Sequence[tuple[Arch, Mapping[str, float]]]) -> None:
        for arch, values in results:
            h = arch.hash
            missing = [o.name for o in self.objectives if o.name not in values]
            if missing:
                raise ScaleNASError(f"tell: arch {h} lacks objective value(s) {missing}")
            if h in self.told:
                continue
            self.told.add(h)
            self.seen.add(h)
            self.history.append((arch, {o.name: float(values[o.name]) for o in self.objectives}))

    def front(self) -> list[tuple[Arch, dict[str, float]]]:
        """The non-dominated members of everything told so far, cheapest first."""
        return [self.history[i] for i in pareto_front([v for _, v in self.history], self.objectives)]

    # ---- proposals ------------------------------------------------------------------------------
    def _propose(self) -> list[Arch]:
        raise NotImplementedError

    def _accept(self, arch: Arch, batch_hashes: set[str]) -> bool:
        h = arch.hash
        if h in self.seen or h in batch_hashes or not self.feasible(arch):
            return False
        batch_hashes.add(h)
        self.seen.add(h)
        return True

    def _sample_cell(self, cell: int) -> Arch:
        f, depths = self.grid[cell % len(self.grid)]
        return self.space.sample(self.rng, f, depths, pose_rule=self.pose_rule)

    def _random_batch(self, n: int, start_cell: int) -> list[Arch]:
        """``n`` new feasible archs from the fusion x depth grid, slot i from cell ``start_cell + i``.

        A slot first draws from its own cell (half the tries), then from random cells, so a FLOPs
        window that rules out a whole cell does not starve the batch."""
        out: list[Arch] = []
        hashes: set[str] = set()
        tries = self.settings.max_tries
        for i in range(n):
            for t in range(tries):
                cell = start_cell + i if t < max(1, tries // 2) else self.rng.randrange(len(self.grid))
                a = self._sample_cell(cell)
                if self._accept(a, hashes):
                    out.append(a)
                    break
        return out

    # ---- state ----------------------------------------------------------------------------------
    def _extra_state(self) -> dict:
        return {}

    def _load_extra(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {"strategy": self.name, "seed": self.seed, "generation": self.generation, "exhausted": self.exhausted,
                "rng": tuples_to_lists(self.rng.getstate()), "settings": self._settings_json(),
                "objectives": [o.name for o in self.objectives],
                "history": [{"arch": a.to_dict(), "values": v} for a, v in self.history],
                "seen": sorted(self.seen), **self._extra_state()}

    def _settings_json(self) -> dict:
        d = {k: getattr(self.settings, k) for k in SETTINGS}
        d["freeze_last_module"] = self.freeze_last_module
        d["fusion_options"] = [float(f) for f in d["fusion_options"]]
        d["depth_options"] = None if d["depth_options"] is None else [list(x) for x in d["depth_options"]]
        return d

    def load_state_dict(self, state: dict) -> None:
        if state.get("strategy") != self.name:
            raise ScaleNASError(f"strategy state: saved by {state.get('strategy')!r}, resuming {self.name!r}")
        if state.get("objectives") != [o.name for o in self.objectives]:
            raise ScaleNASError(f"strategy state: saved with objectives {state.get('objectives')}, "
                                f"resuming with {[o.name for o in self.objectives]}")
        self.seed = int(state["seed"])
        self.generation = int(state["generation"])
        self.exhausted = bool(state["exhausted"])
        self.rng.setstate(lists_to_tuples(state["rng"]))
        self.history = [(Arch.from_dict(h["arch"]), {k: float(v) for k, v in h["values"].items()})
                        for h in state["history"]]
        self.seen = set(state["seen"])
        self.told = {a.hash for a, _ in self.history}
        self._load_extra(state)


#: strategies by ``Strategy.name`` (the ``search.strategy`` config key)
STRATEGIES = Registry("strategy", "search.strategy", package="scalenas.search")


@STRATEGIES.register
class EvolutionStrategy(Strategy):
    """Pareto evolution (method §6.1): parents are the successive non-dominated layers of the whole
    history (the last one cut keeping its cheapest members); each child is a module-level crossover
    of a parent with a random parent, then bit mutation (and optional depth mutation)."""

    name = "evolution"
    batch_kind = "offspring"

    @property
    def frozen(self) -> tuple[int, ...]:
        return (self.space.num_modules - 1,) if self.freeze_last_module else ()

    def _propose(self) -> list[Arch]:
        s = self.settings
        if self.generation == 0 or not self.history:  # nothing told yet: (re)start from random samples
            return self._random_batch(s.initial if self.generation == 0 else s.population, self.generation)
        values = [v for _, v in self.history]
        parents = [self.history[i][0] for i in select_by_layers(values, self.objectives, s.parents)]
        out: list[Arch] = []
        hashes: set[str] = set()
        for i in range(s.population):
            parent = parents[i % len(parents)]
            for _ in range(s.max_tries):
                partner = parents[self.rng.randrange(len(parents))]
                child = self.space.crossover(parent, partner, self.rng, s.crossover_prob, self.frozen)
                child = self.space.mutate(child, self.rng, s.bit_mutation_prob, s.depth_mutation_prob, self.frozen,
                                          pose_rule=self.pose_rule)
                if self._accept(child, hashes):
                    out.append(child)
                    break
        return out


@STRATEGIES.register
class RandomSearch(Strategy):
    """Baseline: every batch is fresh random samples from the same fusion x depth grid, with the same
    constraints, deduplication and budget as evolution."""

    name = "random"
    batch_kind = "random"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.drawn = 0  # grid position, so cells stay balanced across batches

    def _propose(self) -> list[Arch]:
        n = self.settings.initial if self.generation == 0 else self.settings.population
        out = self._random_batch(n, self.drawn)
        self.drawn += n
        return out

    def _extra_state(self) -> dict:
        return {"drawn": self.drawn}

    def _load_extra(self, state: dict) -> None:
        self.drawn = int(state.get("drawn", 0))
