"""Strategies on their own: a fake, analytic objective over a space small enough to enumerate
(``search.known_front``)."""
import random

import pytest

from scalenas.config import validate_section
from scalenas.errors import ScaleNASError
from scalenas.search.config import SearchCfg
from scalenas.search.known_front import OBJ, SPACE, drive, true_front
from scalenas.search.known_front import values as fake_values
from scalenas.search.objectives import Constraints
from scalenas.search.strategies import STRATEGIES, EvolutionStrategy, RandomSearch
from scalenas.space.heads import HeadSpec
from scalenas.space.profile import profile
from scalenas.space.space import SearchSpace


def strategy_cfg(**settings) -> SearchCfg:
    """A ``search:`` section holding ``settings`` (strategies read theirs from the validated config)."""
    return validate_section(SearchCfg, settings, "search")


def test_evolution_recovers_the_known_front_and_beats_random():
    truth = true_front()
    assert 10 <= len(truth) <= 21
    # bit_mutation_prob 0.05 = one flip per child on 20 bits; the reference's 0.2 (tuned for ~300
    # bits) flips 4 of 20 and degenerates to a random walk on this small space.
    settings = strategy_cfg(initial=100, population=30, parents=30, generations=100, bit_mutation_prob=0.05,
                            depth_mutation_prob=0.0)
    found = {}
    for name in ("evolution", "random"):
        s = STRATEGIES.build(name, SPACE, OBJ, settings, seed=0)
        n = drive(s)
        assert n == 100 + 30 * 100  # same budget for both
        got = {a.hash for a, _ in s.front()}
        found[name] = len(got & truth) / len(truth)
    print(f"\ntrue front {len(truth)} archs of 2^20; recovered: evolution {found['evolution']:.0%}, "
          f"random search {found['random']:.0%} (3100 evaluations each)")
    assert found["evolution"] >= 0.9
    assert found["random"] <= found["evolution"] - 0.3


def test_never_asks_twice_and_budget():
    settings = strategy_cfg(initial=20, population=10, parents=10, generations=5, depth_mutation_prob=0.0)
    s = EvolutionStrategy(SPACE, OBJ, settings, seed=1)
    asked = []
    sizes = []
    while True:
        b = s.ask()
        if not b:
            break
        sizes.append(len(b))
        asked += [a.hash for a in b]
        s.tell([(a, fake_values(a)) for a in b])
    assert sizes == [20] + [10] * 5
    assert len(asked) == len(set(asked))
    assert s.done and s.generation == 6


def test_state_roundtrip_continues_exactly():
    import json

    settings = strategy_cfg(initial=12, population=8, parents=6, generations=6, depth_mutation_prob=0.0)
    a = EvolutionStrategy(SPACE, OBJ, settings, seed=5)
    b = EvolutionStrategy(SPACE, OBJ, settings, seed=5)
    for _ in range(3):
        for s in (a, b):
            batch = s.ask()
            s.tell([(x, fake_values(x)) for x in batch])
    state = json.loads(json.dumps(b.state_dict()))  # must be plain JSON
    c = EvolutionStrategy(SPACE, OBJ, settings, seed=999)
    c.load_state_dict(state)
    while not a.done:
        ba, bc = a.ask(), c.ask()
        assert [x.hash for x in ba] == [x.hash for x in bc]
        a.tell([(x, fake_values(x)) for x in ba])
        c.tell([(x, fake_values(x)) for x in bc])
    with pytest.raises(ScaleNASError, match="random"):
        RandomSearch(SPACE, OBJ, settings).load_state_dict(state)


@pytest.mark.parametrize("name", ["evolution", "random", "autoshrink", "gram"])
def test_hard_constraints_are_never_proposed(name):
    space = SearchSpace(width=8, modules_per_stage=(1, 2, 1), depth_choices=(1, 2, 3), stem_channels=16,
                        stage1_blocks=1)
    head = HeadSpec("seg", num_classes=4)
    costs = {}

    def cost(a):
        if a.hash not in costs:
            p = profile(space, a, head, (64, 64))
            costs[a.hash] = {"gflops_2p30": p.gflops_2p30, "params_m": p.params_m}
        return costs[a.hash]

    lo, hi = profile(space, space.smallest(), head, (64, 64)), profile(space, space.largest(), head, (64, 64))
    window = (lo.gflops_2p30 + 0.3 * (hi.gflops_2p30 - lo.gflops_2p30),
              lo.gflops_2p30 + 0.6 * (hi.gflops_2p30 - lo.gflops_2p30))
    cons = Constraints(max_gflops=window[1], min_gflops=window[0], max_params_m=0.8 * hi.params_m)
    settings = strategy_cfg(initial=30, population=10, parents=10, generations=4, max_tries=50)
    s = STRATEGIES.build(name, space, OBJ, settings, seed=2, feasible=lambda a: cons.ok(cost(a)))
    proposed = []
    rng = random.Random(0)
    while True:
        batch = s.ask()
        if not batch:
            break
        proposed += batch
        s.tell([(a, {"metric": rng.random(), "gflops": cost(a)["gflops_2p30"]}) for a in batch])
    assert len(proposed) > 50
    for a in proposed:
        assert cons.ok(cost(a)), cons.violations(cost(a))


def test_pose_rule_and_frozen_last_module():
    space = SearchSpace(width=8, modules_per_stage=(1, 1, 2), depth_choices=(1, 2, 3), stem_channels=16,
                        stage1_blocks=1)
    settings = strategy_cfg(initial=10, population=10, parents=5, generations=3, freeze_last_module=True,
                            bit_mutation_prob=0.3, depth_mutation_prob=0.3)
    s = EvolutionStrategy(space, OBJ, settings, seed=0, pose_rule=True)
    first = s.ask()
    lasts = {a.modules[-1] for a in first}
    rng = random.Random(1)
    s.tell([(a, {"metric": rng.random(), "gflops": a.num_edges()}) for a in first])
    for _ in range(3):
        batch = s.ask()
        for a in batch:
            space.validate(a, pose_rule=True)
            assert a.modules[-1] in lasts  # the last module only ever comes from the initial population
        s.tell([(a, {"metric": rng.random(), "gflops": a.num_edges()}) for a in batch])


def test_depth_mutation_changes_depths_and_can_be_off():
    space = SearchSpace(width=8, modules_per_stage=(1, 1, 1), depth_choices=(1, 2, 3), stem_channels=16,
                        stage1_blocks=1)

    def depths_seen(p):
        settings = strategy_cfg(initial=4, population=30, parents=4, generations=1, depth_options=((2,),),
                                crossover_prob=0.0, depth_mutation_prob=p)
        s = EvolutionStrategy(space, OBJ, settings, seed=0)
        b = s.ask()
        s.tell([(a, {"metric": float(i), "gflops": float(i)}) for i, a in enumerate(b)])
        return {d for a in s.ask() for m in a.modules for d in m.depth}

    assert depths_seen(0.0) == {2}  # the reference: depth changes only through crossover
    assert depths_seen(0.3) > {2}


def test_settings_validation():
    with pytest.raises(ScaleNASError, match="bit_mutation_prob"):
        strategy_cfg(bit_mutation_prob=1.5)
    with pytest.raises(ScaleNASError, match="depth_options"):
        EvolutionStrategy(SPACE, OBJ, strategy_cfg(depth_options=((7,),)))
    with pytest.raises(ScaleNASError, match="unknown strategy"):
        STRATEGIES.build("bayes", SPACE, OBJ, strategy_cfg())


def test_search_cfg_builds_its_strategy():
    cfg = strategy_cfg(strategy="random", seed=4, initial=3)
    s = cfg.build_strategy(SPACE, OBJ, pose_rule=True)
    assert type(s) is RandomSearch and s.seed == 4 and s.settings is cfg
    assert s.freeze_last_module  # None in the config: frozen for pose heads
    assert len(s.ask()) == 3
    assert not strategy_cfg(freeze_last_module=False).build_strategy(SPACE, OBJ, pose_rule=True).freeze_last_module
    with pytest.raises(ScaleNASError, match=r"search.strategy: unknown strategy 'evolutoin'; choose one of "
                                            r"autoshrink, evolution, gram, random \(did you mean 'evolution'\?\)"):
        strategy_cfg(strategy="evolutoin")


def test_the_registry_knows_every_strategy_from_the_registry_module_alone():
    """Members in other modules register on the first lookup (the registry imports ``scalenas.search``'s
    modules), so a fresh process that imports only ``search.strategies`` sees all of them."""
    import subprocess
    import sys

    code = ("import sys; from scalenas.search.strategies import STRATEGIES; "
            "assert 'scalenas.search.graph_strategies' not in sys.modules; print(' '.join(STRATEGIES.names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["autoshrink", "evolution", "gram", "random"]
