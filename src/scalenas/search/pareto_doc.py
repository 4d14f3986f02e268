"""The front of a search run as a document: ``pareto.json`` (rewritten every generation),
``pareto.png`` (every generation's front), and the readers of a finished run (``load_run``, ``pick``).

A front entry is the evaluation record of an arch cut down to what choosing a model needs: hash,
metric, costs in both GFLOPs conventions, latency, where it came from, and the arch itself.
"""
from __future__ import annotations

import io
import json
import os

from scalenas.errors import ScaleNASError
from scalenas.search.objectives import Constraints
from scalenas.search.runlog import JsonlLog
from scalenas.utils.io import atomic_write_bytes
from scalenas.viz.plots import plot_pareto

FORMAT = "scalenas.pareto/1"
PARETO_JSON, PARETO_PNG = "pareto.json", "pareto.png"
FLOPS_NOTE = ("effective params and multiply-adds (the extracted net's; compute that never reaches the head is "
              "not counted); gflops_2p30 = /2^30 (ScaleNAS), gflops_1e9 = /1e9")


def front_entry(rec: dict) -> dict:
    return {"hash": rec["hash"], "metric": rec["metric"], "params": rec["params"], "params_m": rec["params_m"],
            "gflops_2p30": rec["gflops_2p30"], "gflops_1e9": rec["gflops_1e9"], "latency_ms": rec["latency_ms"],
            "kind": rec["kind"], "generation": rec["generation"], "metrics": rec.get("metrics", {}),
            "arch": rec["arch"]}


def doc_header(metric_name: str, objectives, input_hw, constraints: Constraints, latency_info: dict | None) -> dict:
    """What a run's ``pareto.json`` says of its settings (the same for every generation)."""
    return {"format": FORMAT, "metric_name": metric_name, "objectives": [o.name for o in objectives],
            "input_hw": list(input_hw), "flops_note": FLOPS_NOTE, "constraints": constraints.to_dict(),
            "latency": latency_info}


def pareto_doc(header: dict, generation: int, log: JsonlLog, references: dict[str, str],
               front_hashes: list[str]) -> dict:
    """The document after ``generation``: settings, the reference points and the front, from the log."""
    refs = {}
    for name, h in references.items():
        r = log.get(h)
        if r is not None:
            refs[name] = {**{k: v for k, v in front_entry(r).items() if k != "arch"}, "feasible": r["feasible"]}
    return {**header, "generation": generation, "num_evaluated": len(log), "references": refs,
            "front": [front_entry(log[h]) for h in front_hashes]}


def plot_fronts(path: str, log: JsonlLog, fronts: list[list[str]], references: dict[str, str],
                metric_name: str) -> None:
    """``pareto.png``: every evaluated arch, the front of every generation and the reference points."""
    buf = io.BytesIO()
    plot_pareto(buf, list(log.records.values()), fronts, references, x="gflops_2p30", y="metric",
                x_label="GFLOPs (multiply-adds / 2^30)", y_label=metric_name,
                title=f"search front over {len(fronts)} generation(s), {len(log)} archs")
    atomic_write_bytes(path, buf.getvalue())


def load_run(run_dir: str) -> tuple[dict, list[dict]]:
    """(pareto.json document, all evaluation records) of a search run."""
    p = os.path.join(run_dir, PARETO_JSON)
    if not os.path.isfile(p):
        raise ScaleNASError(f"{run_dir}: no pareto.json (not a search run, or it has not finished a generation)")
    with open(p, encoding="utf-8") as f:
        doc = json.load(f)
    lp = os.path.join(run_dir, "evaluations.jsonl")
    records = list(JsonlLog(lp).records.values()) if os.path.exists(lp) else []
    return doc, records


def pick(run_dir: str, max_gflops: float | None = None, max_params_m: float | None = None,
         max_latency_ms: float | None = None) -> dict:
    """The best-metric arch under the given budgets (GFLOPs in the 2^30 convention).

    Candidates are every feasible evaluated arch of the run (the best one under a budget is a member
    of the Pareto front over metric and the budgeted costs), or the front of pareto.json when the log
    is missing. Ties go to the cheaper arch."""
    doc, records = load_run(run_dir)
    cands = [front_entry(r) for r in records if r.get("feasible", True)] or doc["front"]
    budget = Constraints(max_gflops=max_gflops, max_params_m=max_params_m, max_latency_ms=max_latency_ms)
    if max_latency_ms is not None and all(c.get("latency_ms") is None for c in cands):
        raise ScaleNASError(f"--max-latency-ms: {run_dir} has no latency figures (search.latency was none)")
    ok = [c for c in cands if budget.ok(c)]
    if not ok:
        cheapest = min(cands, key=lambda c: c["gflops_2p30"], default=None)
        raise ScaleNASError(f"{run_dir}: no evaluated arch fits the budget "
                            f"({', '.join(f'{k}={v}' for k, v in budget.to_dict().items() if v is not None)})"
                            + (f"; the cheapest has {cheapest['gflops_2p30']:.4g} GFLOPs, "
                               f"{cheapest['params_m']:.4g}M params" if cheapest else ""))
    return max(ok, key=lambda c: (c["metric"], -c["gflops_2p30"], -c["params"], c["hash"]))
