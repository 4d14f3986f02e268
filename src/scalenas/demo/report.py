"""The demo report: a Markdown page with the models table, the Pareto plot, drawings and overlays."""
from __future__ import annotations

import os
import shutil

from scalenas.demo.settings import HEADINGS
from scalenas.utils.io import atomic_write_json, atomic_write_text


def _f(v, nd=2):
    return "n/a" if v is None else f"{v:.{nd}f}"


#: below this test metric (both mIoU and AP are percentages) the subnets' differences are noise
MEANINGFUL_METRIC = 5.0


def undertrained_note(models: list[dict]) -> str | None:
    """A warning when every model's test metric is too low for a comparison to mean anything."""
    best = max((m["metric_test"] for m in models if m["metric_test"] is not None), default=None)
    if best is None or best >= MEANINGFUL_METRIC:
        return None
    name = models[0]["metric_name"]
    return (f"**Caution**: every test {name} here is below {MEANINGFUL_METRIC:g} (best {best:.2f}): the supernet "
            f"trained too briefly for its subnets' differences to be more than noise, so the line above is not "
            f"evidence either way. Re-run with a larger --budget-minutes (on a CPU, bottom-up pose needs far "
            f"longer than segmentation or top-down pose).")


def verdict(models: list[dict]) -> tuple[bool, str]:
    """Does a searched model match or beat the hrnet point's test metric at no more GFLOPs?"""
    hr = next(m for m in models if m["reference"])
    ok = [m for m in models if not m["reference"] and m["gflops_2p30"] <= hr["gflops_2p30"] + 1e-12
          and m["metric_test"] >= hr["metric_test"]]
    name = hr["metric_name"]
    if ok:
        best = max(ok, key=lambda m: m["metric_test"])
        return True, (f"**Yes**: searched model `{best['hash']}` reaches test {name} {best['metric_test']:.2f} at "
                      f"{best['gflops_2p30']:.4f} GFLOPs, against the hrnet point's {hr['metric_test']:.2f} at "
                      f"{hr['gflops_2p30']:.4f} GFLOPs (MACs/2^30).")
    return False, (f"**No**, not within this demo's budget: no searched model reached the hrnet point's test {name} "
                   f"({hr['metric_test']:.2f} at {hr['gflops_2p30']:.4f} GFLOPs) at no more GFLOPs. A supernet "
                   f"trained this briefly ranks subnets noisily; run with a larger --budget-minutes.")


def write_report(out: str, results: dict, budget_minutes: float, seconds: float) -> str:
    lines = ["# ScaleNAS demo report", "",
             f"Budget {budget_minutes:.1f} min; wall time {seconds / 60:.1f} min. Everything below was produced by "
             "`scalenas demo` from generated data: a supernet trained with grouped sampling, an evolutionary "
             "search with BN recalibration on a split held out from training, and the chosen models extracted "
             "without retraining and evaluated on the held-out **test** split.", ""]
    summary = {}
    first_pareto = None
    for kind, r in results.items():
        models = r["models"]
        rel = lambda p: os.path.relpath(p, out)  # noqa: E731
        name = models[0]["metric_name"]
        h, w = models[0]["input_hw"]
        lines += [f"## {HEADINGS[kind]}", "",
                  f"Supernet: {r['train_steps']} steps, seed {r['seed']} ({rel(r['supernet'])}); search: "
                  f"{r['search_cfg']['initial']} initial + {r['search_cfg']['generations']} generations of "
                  f"{r['search_cfg']['population']} ({rel(r['search_dir'])}). Params and GFLOPs are the "
                  f"extracted net's (effective: compute that never reaches the head is neither built nor counted); "
                  f"GFLOPs are multiply-adds / 2^30 (ScaleNAS convention) at {h}x{w}; latency is the median of "
                  "batch-1 CPU runs (PyTorch eager, channels_last) on this machine.", "",
                  f"| model | arch hash | params | GFLOPs | latency ms | search-split {name} | test {name} |",
                  "|---|---|---|---|---|---|---|"]
        for m in models:
            lines.append(f"| {m['name']} | `{m['hash']}` | {m['params']:,} | {m['gflops_2p30']:.4f} | "
                         f"{_f(m['latency_ms'])} | {_f(m['metric_search'])} | {_f(m['metric_test'])} |")
        ok, text = verdict(models)
        lines += ["", text, ""]
        caution = undertrained_note(models)
        if caution:
            lines += [caution, ""]
        main = next((m for m in models if m.get("onnx")), None)
        if main:
            where = rel(main['onnx']['path']) if main['onnx']['path'] else 'n/a'
            lines += [f"ONNX export of `{main['hash']}` ({where}): parity with PyTorch max abs diff "
                      f"{main['onnx']['parity_max_abs']:.2e} (tolerance 1e-4 × max(1, max |output|)).", ""]
        lines += [f"### Pareto front ({kind})", "", f"![pareto]({kind}/pareto.png)", "", "### Architectures", ""]
        for m in models:
            lines += [f"**{m['name']}** (`{m['hash']}`)", "", f"![{m['name']}]({rel(m['drawing'])})", ""]
        if main and main.get("overlays"):
            lines += ["### Predictions on test images", ""]
            lines += [f"![overlay]({rel(p)})" for p in main["overlays"]] + [""]
        summary[kind] = {"models": models, "searched_matches_hrnet": ok, "undertrained": caution is not None,
                         "train_steps": r["train_steps"], "seed": r["seed"], "search": r["search_cfg"]}
        if first_pareto is None:
            first_pareto = os.path.join(r["dir"], "pareto.png")
    if first_pareto:
        shutil.copyfile(first_pareto, os.path.join(out, "pareto.png"))
    lines += ["## Reproduce", "", "```", "make demo            # or: scalenas demo -o demo-out", "```",
              "Re-running with the same `-o` resumes an interrupted demo.", ""]
    path = os.path.join(out, "report.md")
    atomic_write_text(path, "\n".join(lines))
    atomic_write_json(os.path.join(out, "report.json"), summary)
    return path
