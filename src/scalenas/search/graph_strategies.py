"""The seed authors' topology-aware strategies over the supernet's graph: AutoShrink and GRAM.

Our space is a graph of operations joined by edges (blocks per branch, fusion edges per step and per
branch pair), which is what both methods search over. Both sit behind the strategy contract of
``search/strategies.py``: they see archs and objective values only.

* **AutoShrink** (Zhang, Cheng et al., AAAI 2020: "progressively optimize the cell structure through
  edge shrinking"): a path from the largest subnet down to the smallest, one move at a time.
* **GRAM** (SwiftNet, Cheng et al. 2019: "node-wise search ... accumulates the knowledge learned in
  updates into a meta-graph ... structure-level pruning"): Gibbs-style node-wise resampling from a
  learned meta-graph, plus models pruned out of it at a ladder of budgets.

**The efficiency score** both use to rank candidates is ``metric - λ·ln(cost)``, with ``cost`` the
first cost objective (``gflops`` by default; with three objectives the third still counts in the
front, not in the score). A shrink step always moves to a smaller arch, so λ only decides *which*
smaller arch: λ = 0 keeps the most accurate candidate, which is nearly always the one that removed
the least compute, so the path crawls at the expensive end and spends its budget there; a large λ
keeps the biggest cut whatever it costs in accuracy. ``λ = None`` (the default) takes the slope of
the line joining the cheapest and the most expensive arch told so far (the smallest and the largest
subnets once evaluated) in (ln cost, metric): a candidate then scores above its parent exactly when
it gives up less metric per halving of the cost than the whole FLOPs range does on average. The
path neither favours one end of the range nor the other, so it spans the range at the pace the
range itself sets; the same line is GRAM's scalarisation (who beats the batch median).

**Budgets without a task.** GRAM's structure-level pruning needs the cost of an arch before it is
evaluated. Rather than widen the contract, it learns that cost from the objective values it is told:
FLOPs and parameters are exactly linear in the counts of blocks per (stage, branch) and of fusion
edges per (stage, output branch, input branch), since every module of a stage has the same widths
(latency nearly so), so a least-squares fit on the history predicts them; the pruned models are
then evaluated and their true costs join the front.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from scalenas.errors import ScaleNASError
from scalenas.search.pareto import select_by_layers
from scalenas.search.strategies import STRATEGIES, Strategy
from scalenas.space.arch import Arch

THETA_CLIP = 3.0  # edge logits stay in [-3, 3] (probabilities 0.05..0.95): resampling never stops exploring
GOLDEN = 0.6180339887498949  # the pruning ladder shifts by this fraction of a rung per batch: rungs never repeat


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _softmax(xs: Sequence[float]) -> list[float]:
    top = max(xs)
    e = [math.exp(x - top) for x in xs]
    return [x / sum(e) for x in e]


class _GraphStrategy(Strategy):
    """What AutoShrink and GRAM share: the cost objective, the efficiency score, lookups by hash."""

    @property
    def cost_name(self) -> str:
        return next(o.name for o in self.objectives if not o.maximize)

    def _settings_json(self) -> dict:
        return {**super()._settings_json(), self.name: getattr(self.settings, self.name).model_dump(mode="json")}

    def _by_hash(self) -> dict[str, tuple[Arch, dict[str, float]]]:
        return {a.hash: (a, v) for a, v in self.history}

    def _cost_range(self) -> tuple[float, float]:
        costs = [v[self.cost_name] for _, v in self.history]
        return min(costs), max(costs)

    def _lambda(self, fixed: float | None = None) -> float:
        """λ of the efficiency score: ``fixed`` when set, else the slope from the cheapest to the most
        expensive arch told so far in (ln cost, metric), never negative (module docstring)."""
        if fixed is not None:
            return fixed
        c = self.cost_name
        vals = [v for _, v in self.history]
        if not vals:
            return 0.0
        lo = min(vals, key=lambda v: (v[c], -v["metric"]))
        hi = max(vals, key=lambda v: (v[c], v["metric"]))
        if lo[c] <= 0 or hi[c] <= lo[c]:
            return 0.0
        return max(0.0, (hi["metric"] - lo["metric"]) / math.log(hi[c] / lo[c]))

    def _efficiency(self, values: dict[str, float], lam: float) -> float:
        cost = values[self.cost_name]
        if cost <= 0:
            raise ScaleNASError(f"search.strategy {self.name}: the efficiency score needs positive costs; "
                                f"objective {self.cost_name!r} is {cost:g}")
        return values["metric"] - lam * math.log(cost)


@STRATEGIES.register
class AutoShrink(_GraphStrategy):
    """Progressive shrinking from the largest subnet (``search.autoshrink``).

    Each step draws ``candidates`` (K) archs one move smaller than each current topology
    (``SearchSpace.shrink_moves``: one active fusion edge removed, or one branch a depth choice
    shallower), evaluates the new ones (known ones are scored from the history), and keeps the
    ``beam`` best as the next topologies: by the efficiency score (``score: efficiency``, λ =
    ``cost_weight``), or (``score: cost_step``) by the best metric among the candidates at or below
    the parent's next rung of a geometric ladder of ``cost_steps`` costs spanning the range seen
    (the best metric overall when none is). A path ends at the smallest subnet, at a cost at or
    below ``floor``, when no one-move-smaller arch is feasible, or once the evaluation budget
    (``initial + population * generations``, evolution's) is spent: a step is never cut short (the
    last may overrun by under K x beam archs), so a resume with more generations continues exactly
    as an uninterrupted run. ``kept`` lists the path.

    A largest subnet that breaks the hard constraints is shrunk by random moves, unevaluated, until
    it fits; that is the start. ``freeze_last_module`` is evolution's and is not read: the pose rule
    holds on every move.
    """

    name = "autoshrink"
    batch_kind = "shrink"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.started = False
        self.beam: list[Arch] = []  # the current topologies
        self.pending: list[list[str]] = []  # per beam member: hashes of the candidates drawn at the last step
        self.kept: list[str] = []  # every kept topology, in path order
        self.asked = 0

    @property
    def cfg(self):
        return self.settings.autoshrink

    @property
    def budget(self) -> int:
        return self.settings.initial + self.settings.population * self.settings.generations

    @property
    def done(self) -> bool:
        return self.exhausted or self.asked >= self.budget

    def progress(self) -> str:
        # a step asks about K x beam archs, far fewer than evolution's population, so the number of steps
        # has no fixed end (``generations`` is not one): the evaluation budget is what bounds the path
        return f"step {self.generation - 1} ({self.asked}/{self.budget} archs of the budget)"

    def path(self) -> list[tuple[Arch, dict[str, float]]]:
        """The kept topologies that were evaluated, in path order (the start may be the only unevaluated one)."""
        known = self._by_hash()
        return [known[h] for h in self.kept if h in known]

    def _propose(self) -> list[Arch]:
        hashes: set[str] = set()
        out: list[Arch] = []
        if not self.started:
            out = self._start(hashes)
        else:
            self._select()
        while self.beam:
            out += self._draw(hashes)
            if out or not any(self.pending):
                break
            self._select()  # every candidate was known already: take the next step at once
        self.asked += len(out)
        return out

    def _start(self, hashes: set[str]) -> list[Arch]:
        """The first topology (the largest subnet, shrunk at random until feasible), asked with the
        smallest subnet: the two ends give λ its slope and the cost ladder its range."""
        self.started = True
        a = self.space.largest(self.pose_rule)
        while not (a.hash in self.told or self.feasible(a)):
            moves = self.space.shrink_moves(a, self.pose_rule)
            if not moves:
                return []
            a = moves[self.rng.randrange(len(moves))]
        self.beam, self.kept = [a], [a.hash]
        ends = (a, self.space.smallest(self.pose_rule))
        return [x for x in ends if x.hash not in self.told and self._accept(x, hashes)]

    def _draw(self, hashes: set[str]) -> list[Arch]:
        """Up to K candidates per beam member in random order; returns those to evaluate."""
        out: list[Arch] = []
        self.pending = []
        for member in self.beam:
            moves = self.space.shrink_moves(member, self.pose_rule)
            self.rng.shuffle(moves)
            cands: list[str] = []
            for a in moves:
                if len(cands) >= self.cfg.candidates:
                    break
                h = a.hash
                if h in self.told or h in hashes:  # known, or drawn by another member of the beam
                    cands.append(h)
                elif self._accept(a, hashes):
                    cands.append(h)
                    out.append(a)
            self.pending.append(cands)
        return out

    def _select(self) -> None:
        """The next beam: the best-ranked evaluated candidates; ends paths at the floor."""
        known = self._by_hash()
        lam = self._lambda(self.cfg.cost_weight)
        ranked: dict[str, tuple] = {}
        for member, cands in zip(self.beam, self.pending):
            parent = known.get(member.hash)
            step = self._next_step(parent[1][self.cost_name]) if parent else math.inf
            for h in cands:
                if h in known and h not in ranked:
                    ranked[h] = self._rank_key(known[h][1], lam, step) + (h,)
        best = sorted(ranked, key=ranked.get)[:self.cfg.beam]
        self.beam = [known[h][0] for h in best]
        self.kept += best
        self.pending = []
        floor = self.cfg.floor
        if floor is not None:
            self.beam = [a for a in self.beam if known[a.hash][1][self.cost_name] > floor]

    def _rank_key(self, v: dict[str, float], lam: float, step: float) -> tuple:
        """Smaller is better; ties go to the cheaper arch, then to the hash (deterministic)."""
        c = v[self.cost_name]
        if self.cfg.score == "cost_step":
            return (c > step, -v["metric"], c)
        return (-self._efficiency(v, lam), c)

    def _next_step(self, cost: float) -> float:
        """The highest rung of the cost ladder strictly below ``cost`` (-inf when there is none)."""
        lo, hi = self._cost_range()
        n = self.cfg.cost_steps
        if lo > 0:
            rungs = [lo * (hi / lo) ** (i / n) for i in range(n + 1)]
        else:
            rungs = [lo + (hi - lo) * i / n for i in range(n + 1)]
        below = [r for r in rungs if r < cost * (1 - 1e-9)]
        return max(below, default=-math.inf)

    def _extra_state(self) -> dict:
        return {"started": self.started, "beam": [a.to_dict() for a in self.beam], "pending": self.pending,
                "kept": self.kept, "asked": self.asked}

    def _load_extra(self, state: dict) -> None:
        self.started = bool(state["started"])
        self.beam = [Arch.from_dict(d) for d in state["beam"]]
        self.pending = [list(c) for c in state["pending"]]
        self.kept = list(state["kept"])
        self.asked = int(state["asked"])


@STRATEGIES.register
class Gram(_GraphStrategy):
    """Meta-graph search with structure-level pruning (``search.gram``).

    The meta-graph holds a logit per fusion edge per step (``theta[m][j][s][k]``: input k into
    branch j of module m after step s) and logits over the depth choices per branch. Generation 0 is
    the grid's random batch, as evolution's. Each later batch holds:

    * ``budgets`` models pruned out of the meta-graph at a ladder of cost budgets spanning the costs
      seen (geometric rungs, shifted each batch): starting from the largest subnet, repeatedly drop
      the edge, or the last block of the branch, least worth keeping (edge probability, or the
      probability of a depth at least the current one) until the predicted cost fits;
    * Gibbs-style node-wise samples filling the rest: a parent from the Pareto layers of the history
      (as evolution's), then ``moves`` times: one node (the incoming edges of one output branch at one
      step, or one branch's depth; new steps' edges drawn too) resampled from the meta-graph,
      conditioned on the rest of the arch.

    After each batch told, candidates above the batch median of the efficiency score move the
    meta-graph toward their edges and depths, those below move it away:
    ``theta += lr * mean(sign * (bit - p))`` (the likelihood gradient with the median as baseline;
    ``sign`` is +1 above the median, -1 below). A Gibbs child is ranked by its gain over its parent
    among the other children and credits only the nodes it resampled (``_learn``): on the
    known-front problem, ranking every candidate whole against one batch median (the rest of a
    child is its parent's, which decides most of its score) recovered 62% of the front at 600
    evaluations, this 85% (5 seeds each).
    Budget: evolution's (``initial`` then ``population`` per generation). ``freeze_last_module``
    is not read; the pose rule always holds.
    """

    name = "gram"
    batch_kind = "gram"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        sp = self.space
        self.theta = [[[[0.0] * nb for _ in range(sp.max_depth)] for _ in range(nb)] for nb in sp.module_branches]
        self.depth_logits = [[[0.0] * len(sp.depth_choices) for _ in range(nb)] for nb in sp.module_branches]
        self.origin: dict[str, list] = {}  # asked Gibbs child -> [parent hash, resampled nodes], until told
        self._index = _feature_index(sp.module_branches)

    @property
    def cfg(self):
        return self.settings.gram

    # ---- proposals ----------------------------------------------------------------------------
    def _propose(self) -> list[Arch]:
        s = self.settings
        if self.generation == 0 or not self.history:
            return self._random_batch(s.initial if self.generation == 0 else s.population, self.generation)
        hashes: set[str] = set()
        out = self._pruned(hashes)[:s.population]
        return out + self._gibbs(s.population - len(out), hashes)

    def _pruned(self, hashes: set[str]) -> list[Arch]:
        """Structure-level pruning at ``budgets`` rungs; the new feasible models."""
        n = self.cfg.budgets
        if n == 0:
            return []
        path = self._prune_path()
        pred = np.stack([self._features(a) for a in path]) @ self._cost_model()
        lo, hi = self._cost_range()
        shift = (self.generation * GOLDEN) % 1.0
        out = []
        for i in range(n):
            t = (i + shift) / n
            budget = lo * (hi / lo) ** t if lo > 0 else lo + (hi - lo) * t
            fit = np.flatnonzero(pred <= budget)
            if len(fit) and self._accept(path[int(fit[0])], hashes):
                out.append(path[int(fit[0])])
        return out

    def _prune_path(self) -> list[Arch]:
        """Largest to smallest subnet, each step dropping what the meta-graph least wants to keep."""
        sp, a = self.space, self.space.largest(self.pose_rule)
        path = [a]
        while True:
            best = None
            for m, ma in enumerate(a.modules):
                for j in range(ma.num_branches):
                    for s in range(ma.depth[j]):
                        if not sp.fixed_step(a, m, j, s, self.pose_rule):
                            for k in ma.inputs(j, s):
                                best = min(best or (math.inf,), (self._edge_keep(m, j, s, k), m, j, s, k))
                    lower = [d for d in sp.depth_choices if d < ma.depth[j]]
                    if lower:
                        best = min(best or (math.inf,), (self._depth_keep(m, j, ma.depth[j]), m, j, -1, lower[-1]))
            if best is None:
                return path
            _, m, j, s, k = best
            if s < 0:
                a = sp.with_depth(a, m, j, k, pose_rule=self.pose_rule)
            else:
                mask = a.modules[m].fuse[j][s]
                a = sp.with_mask(a, m, j, s, mask[:k] + "0" + mask[k + 1:], self.pose_rule)
            path.append(a)

    def _edge_p(self, m: int, j: int, s: int, k: int) -> float:
        """The probability of edge k -> j after step s of module m when sampling."""
        return _sigmoid(min(THETA_CLIP, max(-THETA_CLIP, self.theta[m][j][s][k])))

    def _edge_keep(self, m: int, j: int, s: int, k: int) -> float:
        """How much the meta-graph wants to keep an edge, on the scale of ``_depth_keep``: the unclipped
        logit's probability, so that edges sampled alike (clipped) still rank by all they have won."""
        return _sigmoid(self.theta[m][j][s][k])

    def _depth_keep(self, m: int, j: int, depth: int) -> float:
        """The meta-graph's probability that branch j of module m is at least ``depth`` deep."""
        probs = _softmax(self.depth_logits[m][j])
        return sum(p for d, p in zip(self.space.depth_choices, probs) if d >= depth)

    def _gibbs(self, n: int, hashes: set[str]) -> list[Arch]:
        """``n`` children of the Pareto layers' archs, each ``moves`` node-wise resamples away; records
        each child's parent and nodes (``origin``) for the credit assignment of ``_learn``.

        A slot that finds no new arch in a quarter of its tries resamples one node more (up to three
        more): once the parents' one-node neighbourhoods are all evaluated, the search widens instead
        of ending."""
        values = [v for _, v in self.history]
        parents = [self.history[i][0] for i in select_by_layers(values, self.objectives, self.settings.parents)]
        out: list[Arch] = []
        tries = self.settings.max_tries
        for i in range(n):
            for t in range(tries):
                child, nodes = parents[i % len(parents)], []
                for _ in range(self.cfg.moves + 4 * t // tries):
                    child, node = self._resample(child)
                    nodes.append(node)
                if self._accept(child, hashes):
                    out.append(child)
                    self.origin[child.hash] = [parents[i % len(parents)].hash, nodes]
                    break
        return out

    def _resample(self, a: Arch) -> tuple[Arch, list[int]]:
        """One node redrawn from the meta-graph: a step's incoming edges ``[m, j, s]``, or a branch's depth
        ``[m, j, -1, old depth]`` (new steps' edges drawn too)."""
        sp = self.space
        nodes = [(m, j, s) for m, ma in enumerate(a.modules) for j in range(ma.num_branches)
                 for s in range(-1 if len(sp.depth_choices) > 1 else 0, ma.depth[j])
                 if not sp.fixed_step(a, m, j, s, self.pose_rule)]
        m, j, s = nodes[self.rng.randrange(len(nodes))]
        if s >= 0:
            return sp.with_mask(a, m, j, s, self._draw_mask(m, j, s), self.pose_rule), [m, j, s]
        probs = _softmax(self.depth_logits[m][j])
        d = self.rng.choices(sp.depth_choices, weights=probs)[0]
        old = a.modules[m].depth[j]
        return sp.with_depth(a, m, j, d, [self._draw_mask(m, j, t) for t in range(old, d)], self.pose_rule), \
            [m, j, -1, old]

    def _draw_mask(self, m: int, j: int, s: int) -> str:
        return "".join("1" if k == j or self.rng.random() < self._edge_p(m, j, s, k) else "0"
                       for k in range(len(self.theta[m][j][s])))

    # ---- learning -----------------------------------------------------------------------------
    def tell(self, results) -> None:
        n0 = len(self.history)
        super().tell(results)
        self._learn(self.history[n0:])

    def _learn(self, batch: list[tuple[Arch, dict[str, float]]]) -> None:
        """Move the meta-graph toward the candidates above the batch median, away from those below.

        Two groups, each against its own median. A Gibbs child is scored by its gain over its parent
        (everything but the resampled nodes is the parent's, so the gain is the nodes' doing) and
        credits those nodes only; an arch without a parent (generation 0, pruned models) is scored
        as it is and credits all its nodes."""
        lam = self._lambda()
        known = self._by_hash()
        groups: dict[bool, list] = {True: [], False: []}
        for a, v in batch:
            org = self.origin.pop(a.hash, None)
            if org is not None and org[0] in known:
                gain = self._efficiency(v, lam) - self._efficiency(known[org[0]][1], lam)
                groups[True].append((a, gain, org[1]))
            else:
                groups[False].append((a, self._efficiency(v, lam), None))
        edge_g: dict[tuple, list[float]] = {}
        depth_g: dict[tuple, list[float]] = {}
        for members in groups.values():
            if len(members) < 2:
                continue
            med = float(np.median([sc for _, sc, _ in members]))
            for a, sc, nodes in members:
                self._gradients(a, (sc > med) - (sc < med), nodes, edge_g, depth_g)
        lr = self.cfg.lr
        for (m, j, s, k), g in edge_g.items():
            self.theta[m][j][s][k] += lr * sum(g) / len(g)
        for (m, j, c), g in depth_g.items():
            self.depth_logits[m][j][c] += lr * sum(g) / len(g)

    def _gradients(self, a: Arch, sign: int, nodes, edge_g: dict, depth_g: dict) -> None:
        """Append ``sign * (chosen - p)`` for the edges and depths of ``nodes`` (None: every node of ``a``)."""
        if nodes is None:
            steps = [(m, j, s) for m, ma in enumerate(a.modules) for j in range(ma.num_branches)
                     for s in range(ma.depth[j])]
            branches = [(m, j) for m, ma in enumerate(a.modules) for j in range(ma.num_branches)]
        else:
            steps = [tuple(n) for n in nodes if n[2] >= 0]
            steps += [(n[0], n[1], s) for n in nodes if n[2] < 0 for s in range(n[3], a.modules[n[0]].depth[n[1]])]
            branches = [(n[0], n[1]) for n in nodes if n[2] < 0]
        for m, j in branches:
            probs = _softmax(self.depth_logits[m][j])
            for c, (d, p) in enumerate(zip(self.space.depth_choices, probs)):
                depth_g.setdefault((m, j, c), []).append(sign * ((d == a.modules[m].depth[j]) - p))
        for m, j, s in steps:
            ma = a.modules[m]
            if s >= ma.depth[j] or self.space.fixed_step(a, m, j, s, self.pose_rule):
                continue
            for k in range(ma.num_branches):
                if k != j:
                    p = self._edge_p(m, j, s, k)
                    edge_g.setdefault((m, j, s, k), []).append(sign * ((ma.fuse[j][s][k] == "1") - p))

    # ---- the cost model -----------------------------------------------------------------------
    def _features(self, a: Arch) -> np.ndarray:
        blocks, edges = self._index
        x = np.zeros(1 + len(blocks) + len(edges))
        x[0] = 1.0
        for ma in a.modules:
            nb = ma.num_branches
            for j in range(nb):
                x[blocks[nb, j]] += ma.depth[j]
                for s in range(ma.depth[j]):
                    for k in ma.inputs(j, s):
                        x[edges[nb, j, k]] += 1.0
        return x

    def _cost_model(self) -> np.ndarray:
        """Least-squares coefficients of the cost objective on the arch features (module docstring)."""
        X = np.stack([self._features(a) for a, _ in self.history])
        y = np.array([v[self.cost_name] for _, v in self.history])
        return np.linalg.lstsq(X, y, rcond=None)[0]

    # ---- state --------------------------------------------------------------------------------
    def _extra_state(self) -> dict:
        return {"theta": self.theta, "depth_logits": self.depth_logits, "origin": self.origin}

    def _load_extra(self, state: dict) -> None:
        self.theta = [[[[float(x) for x in k] for k in s] for s in j] for j in state["theta"]]
        self.depth_logits = [[[float(x) for x in c] for c in j] for j in state["depth_logits"]]
        self.origin = {h: [o[0], [list(n) for n in o[1]]] for h, o in state["origin"].items()}


def _feature_index(module_branches: Sequence[int]) -> tuple[dict, dict]:
    """Feature positions (after the intercept): blocks per (stage, branch), edges per (stage, out, in).
    A stage is named by its branch count: every module of a stage has the same widths."""
    blocks: dict[tuple[int, int], int] = {}
    edges: dict[tuple[int, int, int], int] = {}
    for nb in sorted(set(module_branches)):
        for j in range(nb):
            blocks[nb, j] = 1 + len(blocks) + len(edges)
            for k in range(nb):
                if k != j:
                    edges[nb, j, k] = 1 + len(blocks) + len(edges)
    return blocks, edges
