"""Pareto bookkeeping over objective dicts (method §6.1 step 2), on pymoo's non-dominated sorting.

Everything here works on lists of ``{objective name: value}`` dicts in a fixed order (the history
order), so results are deterministic: ties are broken by cost, then by position.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from scalenas.search.objectives import Objective


def min_matrix(values: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> np.ndarray:
    """(n, m) array of the objectives as quantities to minimise (maximised ones negated)."""
    return np.array([[o.to_min(float(v[o.name])) for o in objectives] for v in values], dtype=np.float64
                    ).reshape(len(values), len(objectives))


def _cost_order(values, objectives, idx) -> list[int]:
    """``idx`` sorted cheapest first: by the cost objectives in the configured order, then by the
    metric (best first), then by position."""
    costs = [o for o in objectives if not o.maximize]
    gains = [o for o in objectives if o.maximize]
    return sorted(idx, key=lambda i: tuple(values[i][o.name] for o in costs)
                  + tuple(-values[i][o.name] for o in gains) + (i,))


def pareto_layers(values: Sequence[Mapping[str, float]], objectives: Sequence[Objective],
                  n_stop: int | None = None) -> list[list[int]]:
    """Successive non-dominated layers (indices into ``values``), each sorted cheapest first.

    Equal objective vectors do not dominate each other, so duplicates share a layer. With ``n_stop``,
    sorting stops once at least that many points are ranked.
    """
    if not len(values):
        return []
    F = min_matrix(values, objectives)
    fronts = NonDominatedSorting().do(F, n_stop_if_ranked=n_stop)
    return [_cost_order(values, objectives, [int(i) for i in f]) for f in fronts]


def pareto_front(values: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the first non-dominated layer, cheapest first."""
    layers = pareto_layers(values, objectives, n_stop=1)
    return layers[0] if layers else []


def select_by_layers(values: Sequence[Mapping[str, float]], objectives: Sequence[Objective], k: int) -> list[int]:
    """``k`` indices taken layer by layer; the layer that does not fit whole is cut keeping its cheapest
    members, as the reference's ``select_masks`` does."""
    out: list[int] = []
    for layer in pareto_layers(values, objectives, n_stop=k):
        room = k - len(out)
        if room <= 0:
            break
        out.extend(layer[:room])
    return out
