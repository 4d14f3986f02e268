import pytest

from scalenas.errors import ScaleNASError
from scalenas.search.objectives import Constraints, objective_values, parse_objectives
from scalenas.search.pareto import pareto_front, pareto_layers, select_by_layers

OBJ2 = parse_objectives(["metric", "gflops"])
OBJ3 = parse_objectives(["metric", "gflops", "latency_ms"])


def v(metric, gflops, lat=None):
    d = {"metric": metric, "gflops": gflops}
    if lat is not None:
        d["latency_ms"] = lat
    return d


def test_layers_staircase_and_cut_keeps_cheapest():
    vals = [v(50, 1.0), v(60, 2.0), v(55, 2.5), v(70, 3.0), v(40, 1.5), v(58, 2.2), v(45, 2.9), v(65, 5.0)]
    layers = pareto_layers(vals, OBJ2)
    assert layers[0] == [0, 1, 3]  # the staircase, cheapest first
    assert layers[1] == [4, 5, 7]
    assert select_by_layers(vals, OBJ2, 4) == [0, 1, 3, 4]  # 2nd layer cut: its cheapest member kept
    assert select_by_layers(vals, OBJ2, 100) == sum(layers, [])
    assert pareto_front(vals, OBJ2) == [0, 1, 3]


def test_three_objectives():
    vals = [v(50, 1.0, 9.0), v(60, 2.0, 9.0), v(55, 2.5, 1.0), v(49, 1.1, 9.5)]
    assert pareto_front(vals, OBJ2) == [0, 1]
    assert pareto_front(vals, OBJ3) == [0, 1, 2]  # 2 is the fastest


def test_objective_parsing_and_constraints():
    with pytest.raises(ScaleNASError, match="metric"):
        parse_objectives(["gflops", "params"])
    with pytest.raises(ScaleNASError, match="unknown"):
        parse_objectives(["metric", "flops"])
    with pytest.raises(ScaleNASError, match="twice"):
        parse_objectives(["metric", "gflops", "gflops_2p30"])
    rec = {"metric": 1.0, "gflops_2p30": 2.0, "params_m": 3.0, "latency_ms": None}
    assert objective_values(rec, OBJ2) == {"metric": 1.0, "gflops": 2.0}
    with pytest.raises(ScaleNASError, match="latency_ms"):
        objective_values(rec, OBJ3)
    c = Constraints(max_gflops=2.5, min_gflops=1.0, max_params_m=3.0)
    assert c.ok(rec) and not c.ok({**rec, "params_m": 3.5})
    assert c.violations({**rec, "gflops_2p30": 0.5}) == ["gflops_2p30 0.5 < 1"]


def test_cost_objectives_are_the_effective_figures():
    # ScaleNet-P1 computes 90,496 params after branch 0's last fusion that its built net does not hold
    from scalenas.nets import get_preset
    from scalenas.search.costs import CostModel
    from scalenas.space import profile

    p = get_preset("scalenet-p1")
    c = CostModel(p.space, p.head, p.input_hw)(p.arch)
    prof = profile(p.space, p.arch, p.head, p.input_hw)
    assert (c["params"], c["macs"]) == (prof.effective_params, prof.effective_macs)
    assert (prof.params - c["params"], prof.macs - c["macs"]) == (90_496, 57_409_536)
    vals = objective_values({**c, "metric": 1.0}, parse_objectives(["metric", "params", "gflops"]))
    assert vals["gflops"] == prof.effective_gflops_2p30 < prof.gflops_2p30
    assert vals["params"] == prof.effective_params_m < prof.params_m
