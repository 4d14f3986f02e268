"""Successive halving against an evaluation that agrees with itself.

A study's stage 5 asks successive halving for Kendall tau >= 0.9 against full evaluation at >= 3x less
cost. On the synthetic tasks the full evaluation is itself noisy (the study's split-half tau), so that
aim cannot be judged there. This script scores a finished study's fidelity archs, on its grouped-s0
supernet with the study's calibration settings, on a much larger search split of *new* images of the
study's generator (another seed), and reports, against full evaluation on all of them:

- the split-half reliability (tau between the scores on two disjoint halves),
- tau of the scores on the first n images, for the rungs halving uses,
- successive halving (the study's units, so the search's own ``search.halving`` code path): tau and cost.

    python bench/halving_reliability.py STUDY_DIR --images 1000 -o docs/results/halving-seg-synth

Results go to OUT.json and OUT.md; the new data to STUDY_DIR/halving_data_<images>.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, print_table  # noqa: E402
from scalenas.study import stats  # noqa: E402
from scalenas.study.config import load_study_config  # noqa: E402
from scalenas.study.pipeline import make_data  # noqa: E402
from scalenas.study.plan import MAIN, Plan  # noqa: E402
from scalenas.study.report import halving_costs  # noqa: E402
from scalenas.study.units import halving_unit, scores_unit  # noqa: E402
from scalenas.utils.io import atomic_write_json, atomic_write_text  # noqa: E402
from scalenas.utils.markdown import markdown_table  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

CALIB_POOL = 64  # training images beside the held-out split: what BN calibration draws from


def new_data(study: str, cfg, images: int, seed: int) -> str:
    """``images`` new images of the study's generator (``seed``) held out as the search split, beside
    CALIB_POOL training images for calibration (generated once, by the study's own ``make_data``)."""
    if cfg.study.data is None:
        sys.exit("halving_reliability: error: the study has no study.data generator to draw new images from")
    root = os.path.join(study, f"halving_data_{images}_s{seed}")
    data = cfg.study.data.model_copy(update={"train": images + CALIB_POOL, "val": 1, "test": 1, "seed": seed})
    make_data(cfg.model_copy(update={"task": {**cfg.task, "root": root},
                                     "study": cfg.study.model_copy(update={"data": data})}), print)
    return root


def agreement(scores: list[float], full: list[float]) -> dict:
    """Rank agreement with full evaluation: tau and rho over every arch, and whether the best ones
    (what a search keeps) are the same."""
    return {"kendall_tau": stats.kendall_tau(scores, full), "spearman_rho": stats.spearman_rho(scores, full),
            "top1": stats.topk_overlap(scores, full, 1), "top3_overlap": stats.topk_overlap(scores, full, 3)}


def measure(study: str, cfg, plan: Plan, images: int, min_images: list[int], eta: int) -> dict:
    archs = [a["arch"] for a in plan.archs]

    def scores(max_images=None, first_image=0):
        p = {"supernet": f"supernet/{MAIN}", "archs": archs, "max_images": max_images, "first_image": first_image}
        return scores_unit(study, cfg, p, None)["metrics"]

    t0 = time.time()
    full = scores()
    half = images // 2
    halves = [scores(half, 0), scores(images - half, half)]
    rel = stats.rank_agreement([halves[1]], halves[0], cfg.study.bootstrap, cfg.study.bootstrap_seed, ks=())
    prefixes = []
    n = min(min_images)
    while n < images:
        prefixes.append({"images": n, **agreement(scores(n), full)})
        n *= eta
    calib = int(cfg.search.get("calib_images", 64))
    halving = []
    for m in min_images:
        p = {"supernet": f"supernet/{MAIN}", "archs": archs,
             "costs": [{"gflops_2p30": a["gflops"]} for a in plan.archs], "full_images": images, "min_images": m,
             "eta": eta}
        h = halving_unit(study, cfg, p, None)
        halving.append({**agreement(h["metrics"], full), "min_images": m, "eta": eta,
                        **halving_costs(h, len(archs), images, calib),
                        "eval_images": h["eval_images"], "metrics": h["metrics"]})
    return {"archs": len(archs), "images": images, "calib_images": calib, "full": full,
            "split_half": {"images": [half, images - half], "kendall_tau": rel["kendall_tau"]["value"],
                           "kendall_tau_ci95": rel["kendall_tau"]["ci95"],
                           "spearman_rho": rel["spearman_rho"]["value"], "metrics": halves},
            "prefixes": prefixes,
            "halving": halving,
            "wall_s": time.time() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", metavar="STUDY_DIR", help="a finished `scalenas study` folder")
    ap.add_argument("--images", type=int, default=1000, help="new search-split images (default 1000)")
    ap.add_argument("--seed", type=int, default=1000, help="generator seed of the new images (default 1000)")
    ap.add_argument("--min-images", default="16,48", help="first rung(s) of halving, comma-separated (default 16,48)")
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("-o", "--out", default=None, metavar="OUT", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    setup_process()
    cfg = load_study_config(os.path.join(args.study, "config.yaml"))
    root = new_data(args.study, cfg, args.images, args.seed)
    cfg = cfg.model_copy(update={"task": {**cfg.task, "root": root, "search_holdout": args.images}})
    plan = Plan.build(cfg)
    min_images = [int(v) for v in args.min_images.split(",") if v]
    r = measure(args.study, cfg, plan, args.images, min_images, args.eta)
    sh = r["split_half"]
    headers = ["scores", "images", "Kendall τ vs full", "Spearman ρ vs full", "best arch kept", "top-3 overlap"]
    rows = ([["first n images", p["images"], p["kendall_tau"], p["spearman_rho"], p["top1"], p["top3_overlap"]]
             for p in r["prefixes"]]
            + [["split half (A vs B)", f"{sh['images'][0]} vs {sh['images'][1]}", sh["kendall_tau"],
                sh["spearman_rho"], "", ""]]
            + [[f"successive halving (min {h['min_images']}, eta {h['eta']})", f"{h['cost_ratio']:.2f}x cheaper",
                h["kendall_tau"], h["spearman_rho"], h["top1"], h["top3_overlap"]] for h in r["halving"]])
    title = (f"{r['archs']} fidelity archs of {args.study} on supernet {MAIN}, BN calibrated on {r['calib_images']} "
             f"images; full evaluation = {args.images} new images (seed {args.seed}); {r['wall_s'] / 60:.1f} min "
             f"({machine()})")
    print_table(headers, rows, title)
    if args.out:
        atomic_write_json(args.out + ".json", {"study": os.path.abspath(args.study), "seed": args.seed, **r})
        md = [f"# Successive halving against a reliable evaluation\n\n{title}\n"]
        md += markdown_table(headers, rows, lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
        ci = sh["kendall_tau_ci95"]
        ci = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "undefined (ties)"
        md += [f"\nSplit-half 95% CI of τ: {ci}. "
               "Halving's cost ratio counts each arch's calibration once; an arch it drops keeps the score of the "
               "last rung it reached, so its tau over every arch is bounded by the first rung's; 'best arch kept' "
               "and 'top-3 overlap' say whether it keeps what full evaluation ranks best.\n"]
        atomic_write_text(args.out + ".md", "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
