"""The two search families' fronts on the synthetic segmentation task at equal training budget:
ScaleNAS (one grouped-sampling supernet trained S steps, evolutionary search, BN recalibration, the
front and the hrnet point scored on the test split) against HR-NAS (``shrink`` to K FLOPs targets,
each run S steps with the same batch, optimiser and schedule, recalibrated, scored on test).

    python bench/families_front.py -o runs/families [--workers 2] [--quick]

The recipe, data and search settings are configs/study_seg_synth.yaml's (64x64 synthetic images,
400 train of which 60 held out as the search split, 100 test; SGD lr 0.05, poly, batch 8; evolution
24 + 12 x 4 evaluations); the HR-NAS network and shrink settings are configs/hrnas_seg_synth.yaml's
(width multiplier 0.5), with ``train`` replaced by the study's recipe and S steps, the rho warm-up a
quarter of them, and rho 0.05 (``--rho``; see RHO). Both families train on the same 340 images (the
search split is held out of the shrink runs' training too). The K targets are
spread evenly over the ScaleNAS space's GFLOPs range (smallest to largest subnet: the range a front
can cover), known before any training, so the shrink runs and the supernet form one wave.
GFLOPs: multiply-adds / 2^30 at the crop size for both families.

Every unit (the supernet, the search, the hrnet score, each shrink run) is a study unit
(``scalenas.study.units``): its result is written atomically to ``DIR/units/``, a rerun skips the
finished ones, and ``--workers N`` runs a wave on N processes. The report goes to
docs/results/families-seg-synth.{json,md,png} (--quick: into DIR).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

from scalenas.config import load_config
from scalenas.errors import ScaleNASError
from scalenas.space.hrnas_profile import hrnas_profile
from scalenas.study.archs import gflops
from scalenas.study.config import load_study_config
from scalenas.study.parallel import run_units
from scalenas.study.plan import subnets_per_step
from scalenas.study.pipeline import check_or_write_config, make_data, say, with_data_root
from scalenas.study.plots import plot_families
from scalenas.study.stats import hypervolume
from scalenas.study.units import load_result, unit_path
from scalenas.tasks.base import build_task
from scalenas.train.shrink import HRNASSpaceCfg, floor_arch
from scalenas.utils.io import atomic_write_json, atomic_write_text, make_output_dir, read_json
from scalenas.utils.markdown import markdown_table
from scalenas.utils.runtime import setup_process

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
STUDY_CONFIG = os.path.join(REPO, "configs", "study_seg_synth.yaml")
HRNAS_CONFIG = os.path.join(REPO, "configs", "hrnas_seg_synth.yaml")
NAME = "families-seg-synth"
STEPS, TARGETS = 400, 3
#: hrnas_seg_synth's 0.02 halves the network in 300 of 600 steps; here the lowest target is about a
#: quarter of the starting network within STEPS steps, so the penalty pushes harder
RHO = 0.05
#: the test-suite size: the study's own quick sizes (32x32 images, a smaller space, tiny search)
QUICK_STEPS = 6


def shrink_config(cfg, steps: int, target: float, rho: float) -> dict:
    """hrnas_seg_synth's space, model and shrink settings with the study's training recipe and ``steps``."""
    raw = load_config(HRNAS_CONFIG, [])
    train = {**cfg.train.model_dump(mode="json"), "steps": steps, "epochs": None, "progress": False,
             "keep_last": 1}
    warmup = max(1, steps // 4)  # hrnas_seg_synth: a quarter of the run
    check = max(1, min(raw["shrink"]["check_every"], steps // 12))
    shrink = {**raw["shrink"], "rho": rho, "target_gflops": target, "gflops_convention": "2p30",
              "warmup_steps": warmup, "check_every": check}
    return {"seed": cfg.seed, "space": raw["space"], "model": raw["model"], "train": train, "shrink": shrink}


def hrnas_reach(space_dict: dict, head, hw) -> tuple[float, float]:
    """GFLOPs (2^30) of the hrnas network with every path removed and before shrinking."""
    sp = HRNASSpaceCfg.model_validate(space_dict).build()
    top = sp.largest()
    return tuple(hrnas_profile(sp, a, head, hw, validate=False).macs / 2**30 for a in (floor_arch(sp, top), top))


def targets(lo: float, hi: float, reach: tuple[float, float], k: int) -> list[float]:
    """``k`` targets evenly over [lo, hi] (both ends included), kept strictly inside the hrnas reach."""
    a, b = max(lo, reach[0] * 1.05), min(hi, reach[1] * 0.95)
    if a >= b:
        raise ScaleNASError(f"families: the ScaleNAS range [{lo:.4g}, {hi:.4g}] GFLOPs and what shrinking reaches "
                            f"[{reach[0]:.4g}, {reach[1]:.4g}] do not overlap")
    return [round(a + (b - a) * i / max(1, k - 1), 6) for i in range(k)] if k > 1 else [round((a + b) / 2, 6)]


def plan(cfg, steps: int, k: int, rho: float) -> dict:
    """The units of both families (plain data) and what the report needs to know about them."""
    task = build_task(cfg.task)
    space, head, hw = cfg.space.build(), task.head, tuple(task.input_hw)
    lo, hi = (gflops(space, a, head, hw) for a in (space.smallest(head.pose_rule), space.largest(head.pose_rule)))
    hrnet = space.hrnet(head.pose_rule)
    base = shrink_config(cfg, steps, 1.0, rho)
    reach = hrnas_reach(base["space"], head, hw)
    sn = {"key": "supernet/grouped-s0", "kind": "supernet",
          "params": {"key": "supernet/grouped-s0", "name": "grouped-s0", "sampler": "grouped", "seed": 0,
                     "images": steps * cfg.train.batch_size,
                     "subnets_per_step": subnets_per_step(cfg, "grouped", space, head.pose_rule)}}
    shrinks = [{"key": f"shrink/target-{t:.6f}", "kind": "shrink",
                "params": {"key": f"shrink/target-{t:.6f}", "config": shrink_config(cfg, steps, t, rho)}}
               for t in targets(lo, hi, reach, k)]
    search = {"key": "search/evolution-grouped-s0-s0", "kind": "search",
              "params": {"key": "search/evolution-grouped-s0-s0", "strategy": "evolution",
                         "supernet": "supernet/grouped-s0", "seed": 0}}
    score = {"key": "scores/hrnet-test", "kind": "scores",
             "params": {"supernet": "supernet/grouped-s0", "archs": [hrnet.to_dict()], "split": "test"}}
    return {"waves": [[sn] + shrinks, [search, score]], "scalenas_range": [lo, hi], "hrnas_reach": list(reach),
            "hrnet": {"hash": hrnet.hash, "gflops": gflops(space, hrnet, head, hw)}, "input_hw": list(hw),
            "metric": task.metric_name}


def unit_seconds(root: str, key: str) -> float:
    return float(read_json(unit_path(root, key), "study unit result")["seconds"])


def collect(root: str, p: dict, cfg, steps: int) -> dict:
    """Every number of the comparison, from the unit files."""
    (sn, *shrinks), (search, score) = p["waves"]
    sr = load_result(root, search["key"])
    front = sorted(({"hash": m["hash"], "gflops": m["gflops"], "test_metric": m["test_metric"],
                     "search_metric": m["search_metric"]} for m in sr["front"]), key=lambda m: m["gflops"])
    hr = {**p["hrnet"], "test_metric": load_result(root, score["key"])["metrics"][0]}
    runs = []
    for u in shrinks:
        r = load_result(root, u["key"])
        runs.append({k: r[k] for k in ("target_gflops", "gflops", "reached", "steps", "images", "shrink_events",
                                       "arch_hash", "test_metric", "train_seconds")}
                    | {"seconds": unit_seconds(root, u["key"])})
    bs = cfg.train.batch_size
    s = cfg.search
    sn_res = load_result(root, sn["key"])
    scalenas = {"supernet": {"steps": sn_res["steps"], "batch_size": bs, "images": sn_res["images"],
                             "seconds": unit_seconds(root, sn["key"])},
                "search": {"strategy": "evolution", "evaluations": len(sr["evaluations"]),
                           "seconds": unit_seconds(root, search["key"])},
                "front": front, "hrnet": hr}
    gmax = max([m["gflops"] for m in front] + [r["gflops"] for r in runs] + [hr["gflops"]])
    hv = {"scalenas": hypervolume([(m["test_metric"], m["gflops"]) for m in front], gmax),
          "hrnas": hypervolume([(r["test_metric"], r["gflops"]) for r in _nondominated(runs)], gmax)}
    return {"metric": p["metric"], "gflops_convention": "MACs/2^30", "input_hw": p["input_hw"],
            "settings": {"steps_per_training": steps, "batch_size": bs, "optimizer": cfg.train.optimizer.model_dump(
                mode="json"), "schedule": cfg.train.schedule.model_dump(mode="json"),
                "search": {k: s.get(k) for k in ("initial", "population", "parents", "generations", "calib_images")},
                "data": cfg.study.data.model_dump(mode="json") if cfg.study.data else None,
                "search_holdout": cfg.task.get("search_holdout"),
                "scalenas_range": p["scalenas_range"], "hrnas_reach": p["hrnas_reach"]},
            "scalenas": scalenas, "hrnas": {"runs": runs},
            "totals": {"scalenas": {"train_steps": sn_res["steps"],
                                    "seconds": scalenas["supernet"]["seconds"] + scalenas["search"]["seconds"]},
                       "hrnas": {"train_steps": sum(r["steps"] for r in runs),
                                 "seconds": sum(r["seconds"] for r in runs)}},
            "hypervolume_test": {**hv, "gflops_max": gmax}, "comparisons": matched(front, runs)}


def _nondominated(runs: list[dict]) -> list[dict]:
    def dominated(r):
        return any(o["test_metric"] >= r["test_metric"] and o["gflops"] <= r["gflops"]
                   and (o["test_metric"], o["gflops"]) != (r["test_metric"], r["gflops"]) for o in runs)

    return [r for r in runs if not dominated(r)]


def matched(front: list[dict], runs: list[dict]) -> list[dict]:
    """Per HR-NAS point: the best ScaleNAS front member at no more GFLOPs (None when none is that cheap)."""
    out = []
    for r in runs:
        ok = [m for m in front if m["gflops"] <= r["gflops"] + 1e-12]
        best = max(ok, key=lambda m: m["test_metric"]) if ok else None
        out.append({"hrnas_gflops": r["gflops"], "hrnas_metric": r["test_metric"],
                    "scalenas_gflops": best and best["gflops"], "scalenas_metric": best and best["test_metric"]})
    return out


def write_md(path: str, doc: dict, command: str) -> None:
    m, t = doc["metric"], doc["totals"]
    sc, st = doc["scalenas"], doc["settings"]
    rows = [["ScaleNAS front", f"`{f['hash']}`", f"{f['gflops']:.4f}", f"{f['test_metric']:.2f}", "-"]
            for f in sc["front"]]
    rows.append(["ScaleNAS hrnet point", f"`{sc['hrnet']['hash']}`", f"{sc['hrnet']['gflops']:.4f}",
                 f"{sc['hrnet']['test_metric']:.2f}", "-"])
    rows += [["HR-NAS shrink", f"`{r['arch_hash']}`", f"{r['gflops']:.4f}", f"{r['test_metric']:.2f}",
              f"{r['target_gflops']:.4f}{'' if r['reached'] else ' (not reached)'}"] for r in doc["hrnas"]["runs"]]
    h, w = doc["input_hw"]
    per_run = [r["seconds"] for r in doc["hrnas"]["runs"]]
    lines = [f"# The two families' fronts on the synthetic segmentation task ({h}x{w})", "",
             f"Made by `{command}`; every number is in `{NAME}.json`, the plot in `{NAME}.png`. GFLOPs are "
             f"multiply-adds / 2^30 at {h}x{w}; {m} on the test split after BN recalibration.", "",
             *markdown_table(["family / point", "arch hash", "GFLOPs", f"test {m}", "shrink target"], rows), "",
             "Training budget: " + f"each training runs {st['steps_per_training']} steps of batch "
             f"{st['batch_size']} with the same optimiser and schedule. ScaleNAS: one supernet "
             f"({sc['supernet']['steps']} steps, {sc['supernet']['seconds']:.0f} s) and one search "
             f"({sc['search']['evaluations']} evaluations, {sc['search']['seconds']:.0f} s), "
             f"{t['scalenas']['train_steps']} training steps in all. HR-NAS: one shrink run per target "
             f"({', '.join(f'{x:.0f} s' for x in per_run)}), "
             f"{t['hrnas']['train_steps']} training steps in all ({t['hrnas']['seconds']:.0f} s).", "",
             "## Reading", "", *reading(doc)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def reading(doc: dict) -> list[str]:
    """What the numbers say, generated from them."""
    m, hv = doc["metric"], doc["hypervolume_test"]
    out = []
    for c in doc["comparisons"]:
        if c["scalenas_metric"] is None:
            out.append(f"- HR-NAS at {c['hrnas_gflops']:.4f} GFLOPs ({m} {c['hrnas_metric']:.2f}): no ScaleNAS front "
                       f"member is that cheap.")
            continue
        d = c["hrnas_metric"] - c["scalenas_metric"]
        who = "HR-NAS" if d > 0 else "ScaleNAS"
        out.append(f"- At {c['hrnas_gflops']:.4f} GFLOPs, HR-NAS's shrunk network scores {c['hrnas_metric']:.2f} "
                   f"and the best ScaleNAS front member at no more GFLOPs ({c['scalenas_gflops']:.4f}) "
                   f"{c['scalenas_metric']:.2f}: {who} is ahead by {abs(d):.2f}.")
    missed = [r for r in doc["hrnas"]["runs"] if not r["reached"]]
    if missed:
        out.append(f"- {len(missed)} of {len(doc['hrnas']['runs'])} shrink runs ended above their target (not within "
                   f"5%: " + ", ".join(f"{r['gflops']:.4f} for {r['target_gflops']:.4f}" for r in missed)
                   + "): in this many steps the penalty did not drive enough channels to zero (--rho, --steps).")
    better = "ScaleNAS" if hv["scalenas"] > hv["hrnas"] else "HR-NAS"
    out.append(f"- Test-split hypervolume (GFLOPs normalised by {hv['gflops_max']:.4f}): ScaleNAS "
               f"{hv['scalenas']:.4f}, HR-NAS {hv['hrnas']:.4f}; {better}'s points cover the larger hypervolume.")
    t = doc["totals"]
    steps = t["hrnas"]["train_steps"] / max(1, t["scalenas"]["train_steps"])
    wall = t["hrnas"]["seconds"] / max(1e-9, t["scalenas"]["seconds"])
    out.append(f"- HR-NAS spent {steps:.1f}x the training steps (one training per point) and {wall:.1f}x the wall "
               f"time of ScaleNAS's supernet and search; ScaleNAS's points share one training and carry inherited "
               f"weights, HR-NAS's are each a network trained on its own. One seed each: no difference here is "
               f"shown to exceed what another seed would change.")
    return out


def check_finite(doc) -> None:
    """Every number of the report is finite (a NaN score would be a failed unit)."""
    if isinstance(doc, dict):
        for v in doc.values():
            check_finite(v)
    elif isinstance(doc, list):
        for v in doc:
            check_finite(v)
    elif isinstance(doc, float) and not math.isfinite(doc):
        raise ScaleNASError("families: a non-finite number in the report")


def run(out: str, quick: bool, workers: int, steps: int, k: int, report_dir: str | None, rho: float = RHO) -> dict:
    setup_process()
    cfg = load_study_config(STUDY_CONFIG, [], quick)
    out = os.path.abspath(make_output_dir(out, "families folder"))
    cfg = with_data_root(cfg, out)
    cfg_dict = cfg.model_dump(mode="json")
    # a folder holding units of other settings is refused (unit keys do not name the steps or targets)
    check_or_write_config(out, {**cfg_dict, "families": {"steps": steps, "targets": k, "rho": rho}})
    make_data(cfg, say)
    p = plan(cfg, steps, k, rho)
    t0 = time.perf_counter()
    for i, wave in enumerate(p["waves"]):
        say(f"wave {i + 1}: {len(wave)} unit(s) ({', '.join(u['key'] for u in wave)})")
        run_units(out, cfg_dict, wave, workers, None, say)
    doc = collect(out, p, cfg, steps)
    check_finite(doc)
    report_dir = report_dir or (out if quick else os.path.join(REPO, "docs", "results"))
    base = os.path.join(report_dir, NAME)
    atomic_write_json(base + ".json", doc)
    command = "python bench/families_front.py -o DIR" + (" --quick" if quick else "") + (
        f" --steps {steps}" if steps != STEPS and not quick else "") + (f" --rho {rho}" if rho != RHO else "")
    write_md(base + ".md", doc, command)
    plot_families(base + ".png", doc)
    say(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {base}.md")
    return {"json": base + ".json", "md": base + ".md", "png": base + ".png", "doc": doc}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="runs/families", metavar="DIR", help="work folder (units, runs, data)")
    ap.add_argument("--quick", action="store_true", help="the test-suite size (under a minute)")
    ap.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (default 1)")
    ap.add_argument("--steps", type=int, default=None, help=f"training steps of each training (default {STEPS})")
    ap.add_argument("--targets", type=int, default=TARGETS, metavar="K", help="HR-NAS shrink targets")
    ap.add_argument("--rho", type=float, default=RHO, help=f"shrink.rho of every shrink run (default {RHO})")
    ap.add_argument("--report-dir", default=None, help="where families-seg-synth.* go (default docs/results; "
                    "--quick: DIR)")
    a = ap.parse_args(argv)
    steps = a.steps or (QUICK_STEPS if a.quick else STEPS)
    try:
        res = run(a.output, a.quick, a.workers, steps, a.targets, a.report_dir, a.rho)
    except ScaleNASError as e:
        print(f"families_front: error: {e}", file=sys.stderr)
        return 2
    print(f"families: {res['json']}, {res['md']}, {res['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
