"""``study.json``, ``study.md`` and the plots, from the unit results alone (so a resumed study
writes the same ``study.json``: no wall times in it; they go to ``timings.json``)."""
from __future__ import annotations

import os

import numpy as np

from scalenas.study import stats
from scalenas.study.markdown import fmt_stat, study_markdown
from scalenas.study.plan import MAIN, Plan
from scalenas.study.plots import plot_fidelity, plot_hv_curves, plot_images
from scalenas.study.units import load_result, unit_path
from scalenas.utils.io import atomic_write_json, atomic_write_text, package_versions, read_json


def write_report(plan: Plan, out: str, searched: dict | None, estimate_s: float) -> dict:
    doc = build_study(plan, out, searched)
    paths = {"json": os.path.join(out, "study.json"), "md": os.path.join(out, "study.md")}
    atomic_write_json(paths["json"], doc)
    timings = _timings(plan, out, searched, estimate_s)
    atomic_write_json(os.path.join(out, "timings.json"), timings)
    plots = {"fidelity": plot_fidelity(os.path.join(out, "fidelity.png"), doc),
             "hypervolume": plot_hv_curves(os.path.join(out, "hypervolume.png"), doc),
             "images": plot_images(os.path.join(out, "fidelity_vs_images.png"), doc)}
    atomic_write_text(paths["md"], study_markdown(doc, timings, {k: os.path.basename(v) for k, v in plots.items()}))
    return {**paths, "plots": plots}


def build_study(plan: Plan, out: str, searched: dict | None) -> dict:
    cfg = plan.cfg
    st = cfg.study
    by_seed = [[load_result(out, plan.standalone(a, s)["key"])["metric"] for a in plan.archs]
               for s in range(st.ceiling_seeds + 1)]
    alone = by_seed[0]
    doc = {"metric": _metric_name(cfg), "settings": _settings(plan),
           "archs": [{k: a[k] for k in ("name", "hash", "gflops")} | {"standalone": m}
                     for a, m in zip(plan.archs, alone)]}
    doc["fidelity"] = {s: _fidelity(plan, out, s, by_seed) for s in _sampler_views(plan)}
    doc["noise_ceiling"] = stats.noise_ceiling(by_seed, st.bootstrap, st.bootstrap_seed)
    doc["samplers"] = {s: _sampler(plan, out, s, doc["fidelity"]) for s in st.samplers}
    doc["strategies"] = _strategies(plan, out)
    doc["from_scratch"] = _from_scratch(plan, out, searched)
    doc["fidelity_vs_images"] = _images(plan, out)
    doc["aims"] = aims(doc)
    doc["versions"] = {k: v for k, v in package_versions().items() if k in ("scalenas", "torch", "scipy", "pymoo")}
    return doc


def _metric_name(cfg) -> str:
    from scalenas.tasks.base import build_task

    return build_task(cfg.task).metric_name


def _settings(plan: Plan) -> dict:
    cfg, st = plan.cfg, plan.cfg.study
    bs = cfg.train.batch_size
    s = cfg.search
    return {"archs": len(plan.archs), "seeds": st.seeds, "samplers": list(st.samplers),
            "strategies": st.strategy_names(), "input_hw": list(plan.input_hw),
            "supernet": {"images": st.supernet_images, "steps": st.supernet_images // bs, "batch_size": bs},
            "standalone": {"images": st.standalone_images, "steps": st.standalone_images // bs, "batch_size": bs,
                           "split": "test", "seeds_fidelity_set": 1, "seeds_from_scratch": st.seeds,
                           "ceiling_seeds": st.ceiling_seeds},
            "search": {k: s.get(k) for k in ("initial", "population", "generations", "parents", "calib_images",
                                             "objectives")},
            "search_split_images": plan.search_images, "gflops_largest": plan.gflops_largest,
            "hypervolume": {"objectives": "(-metric/100, GFLOPs/GFLOPs(largest))",
                            "reference_point": list(stats.HV_REF)},
            "bootstrap": {"resamples": st.bootstrap, "seed": st.bootstrap_seed}}


def _sampler_views(plan: Plan) -> list[str]:
    """Sampler names, and ``<sampler>@compute`` for the equal-compute views, in plan order."""
    return list(dict.fromkeys(u["params"]["name"].rsplit("-s", 1)[0] for u in plan.supernets))


def _seeds(plan: Plan, view: str) -> list[str]:
    return [u["params"]["name"] for u in plan.supernets if u["params"]["name"].rsplit("-s", 1)[0] == view]


def _fidelity(plan: Plan, out: str, view: str, by_seed: list[list[float]]) -> dict:
    """Rank agreement of the view's inherited scores with stand-alone seed 0, and (``kendall_tau_vs_mean``,
    with the noise ceiling only) tau against the stand-alone mean over seeds 0..ceiling_seeds."""
    inh = [load_result(out, f"scores/inherited-{n}")["metrics"] for n in _seeds(plan, view)]
    st = plan.cfg.study
    doc = {**stats.rank_agreement(inh, by_seed[0], st.bootstrap, st.bootstrap_seed), "inherited": inh}
    doc["kendall_tau_vs_mean"] = None if len(by_seed) < 2 else stats.rank_agreement(
        inh, np.mean(by_seed, axis=0), st.bootstrap, st.bootstrap_seed, ks=())["kendall_tau"]
    return doc


def _front_hv(plan: Plan, res: dict, key: str) -> float:
    return stats.hypervolume([(f[key], f["gflops"]) for f in res["front"]], plan.gflops_largest)


def _sampler(plan: Plan, out: str, sampler: str, fidelity: dict) -> dict:
    def view(name: str) -> dict:
        runs = _seeds(plan, name)
        res = [load_result(out, plan.search("evolution", r, 0)["key"]) for r in runs]
        sup = [load_result(out, f"supernet/{r}") for r in runs]
        return {"hypervolume": stats.mean_std([_front_hv(plan, r, "test_metric") for r in res]),
                "kendall_tau": stats.mean_std(fidelity[name]["kendall_tau"]["per_seed"]),
                "steps": sup[0]["steps"], "images_seen": sup[0]["images"],
                "subnet_passes": sup[0]["steps"] * sup[0]["subnets_per_step"]}

    out_ = view(sampler)
    if f"{sampler}@compute" in fidelity:
        out_["equal_compute"] = view(f"{sampler}@compute")
    return out_


def _strategies(plan: Plan, out: str) -> dict:
    st = plan.cfg.study
    runs = {s: [load_result(out, plan.search(s, MAIN, seed)["key"]) for seed in range(st.seeds)]
            for s in st.strategy_names()}
    budget = min(len(r["evaluations"]) for rs in runs.values() for r in rs)  # equal evaluations for all
    out_ = {}
    for s, rs in runs.items():
        curves = np.array([stats.hv_curve([(e["metric"], e["gflops"]) for e in r["evaluations"][:budget]],
                                          plan.gflops_largest) for r in rs])
        out_[s] = {"hypervolume": stats.mean_std(curves[:, -1]), "evaluations": budget,
                   "hypervolume_test": stats.mean_std([_front_hv(plan, r, "test_metric") for r in rs]),
                   "hv_vs_evaluations": {"evaluations": list(range(1, budget + 1)),
                                         "mean": curves.mean(0).tolist(),
                                         "std": (curves.std(0, ddof=1) if len(rs) > 1 else 0 * curves[0]).tolist()}}
    return out_


def _from_scratch(plan: Plan, out: str, searched: dict | None) -> dict:
    st = plan.cfg.study

    def runs(arch: dict) -> dict:
        metrics = [load_result(out, plan.standalone(arch, s)["key"])["metric"] for s in range(st.seeds)]
        return {**stats.mean_std(metrics), "hash": arch["hash"], "gflops": arch["gflops"]}

    hrnet = plan.arch_of("hrnet")
    doc = {"hrnet": runs(hrnet), "searched": None,
           "rule": "best search-split metric of evolution seed 0 on grouped seed 0 at GFLOPs <= hrnet's, "
                   "hrnet excluded"}
    if searched is not None:
        doc["searched"] = {**runs(searched), "search_metric": searched["search_metric"], "arch": searched["arch"]}
    return doc


def _images(plan: Plan, out: str) -> dict:
    full = load_result(out, f"scores/inherited-{MAIN}")["metrics"]

    def agree(metrics) -> dict:
        return {"kendall_tau": stats.kendall_tau(metrics, full), "spearman_rho": stats.spearman_rho(metrics, full)}

    cfg = plan.cfg
    doc = {"reference": f"{len(plan.archs)} fidelity archs on supernet {MAIN}, scored on all {plan.search_images} "
                        f"search images after calibration on {cfg.search.get('calib_images', 64)} images",
           "search_images": [{"images": n, **agree(load_result(out, f"scores/images-{n}")["metrics"])}
                             for n in plan.eval_image_counts()]
           + [{"images": plan.search_images, "kendall_tau": 1.0, "spearman_rho": 1.0}],
           "calib_images": [{"images": c, **agree(load_result(out, f"scores/calib-{c}")["metrics"])}
                            for c in plan.calib_counts()]
           + [{"images": int(cfg.search.get("calib_images", 64)), "kendall_tau": 1.0, "spearman_rho": 1.0}]}
    doc["split_half"] = _split_half(plan, out)
    h = load_result(out, "halving/main")
    doc["halving"] = {**agree(h["metrics"]), "min_images": cfg.study.halving.min_images, "eta": cfg.study.halving.eta,
                      **halving_costs(h, len(plan.archs), plan.search_images, int(cfg.search.get("calib_images", 64))),
                      "evaluations": h["evaluations"], "eval_images": h["eval_images"]}
    return doc


def halving_costs(h: dict, archs: int, full_images: int, calib_images: int) -> dict:
    """What a halving unit's result ``h`` saved against scoring ``archs`` archs on all ``full_images``."""
    full_cost = archs * (full_images + calib_images)
    return {"eval_images_ratio": archs * full_images / h["images_scored"],
            # calibrated once per arch: the evaluator keeps each arch's BN statistics between rungs
            "cost_ratio": full_cost / (h["images_scored"] + archs * calib_images),
            # what calibration alone allows: no halving of the scored images can cut more
            "cost_ratio_bound": full_cost / (archs * calib_images)}


def _split_half(plan: Plan, out: str) -> dict | None:
    """Rank agreement of the fidelity archs' scores on the two halves of the search split (the same
    supernet and calibration as the full scoring): how reliable the full evaluation is."""
    halves = [load_result(out, f"scores/half-{i}")["metrics"] for i in range(len(plan.split_halves()))]
    if not halves:
        return None
    st = plan.cfg.study
    agree = stats.rank_agreement(halves[1:], halves[0], st.bootstrap, st.bootstrap_seed, ks=())
    return {"images": [n for _, n in plan.split_halves()], "first_image": [f for f, _ in plan.split_halves()],
            "kendall_tau": agree["kendall_tau"]["value"], "spearman_rho": agree["spearman_rho"]["value"],
            "kendall_tau_ci95": agree["kendall_tau"]["ci95"], "metrics": halves}


def aims(doc: dict) -> list[dict]:
    """The issue's aims, each with ``met`` (a bool) and the numbers it was judged on."""
    fid, smp, strat, fs = doc["fidelity"], doc["samplers"], doc["strategies"], doc["from_scratch"]
    out = []
    g = fid["grouped"]["kendall_tau"]
    out.append({"aim": "Kendall tau >= 0.6 for grouped sampling", "met": g["value"] >= 0.6,
                "numbers": f"tau {fmt_stat(g['value'])}, 95% CI {_ci(g['ci95'])}"})
    if "uniform" in smp:
        gt, ut = smp["grouped"]["kendall_tau"]["mean"], smp["uniform"]["kendall_tau"]["mean"]
        gh, uh = smp["grouped"]["hypervolume"]["mean"], smp["uniform"]["hypervolume"]["mean"]
        out.append({"aim": "grouped >= uniform in tau", "met": gt >= ut,
                    "numbers": f"{fmt_stat(gt)} vs {fmt_stat(ut)}"})
        out.append({"aim": "grouped >= uniform in hypervolume", "met": gh >= uh, "numbers": f"{gh:.4f} vs {uh:.4f}"})
    if "random" in strat:
        e, r = strat["evolution"]["hypervolume"], strat["random"]["hypervolume"]
        out.append({"aim": "evolution above random in hypervolume at equal evaluations", "met": e["mean"] > r["mean"],
                    "numbers": f"{e['mean']:.4f} +- {e['std']:.4f} vs {r['mean']:.4f} +- {r['std']:.4f} "
                               f"({strat['evolution']['evaluations']} evaluations)"})
    s, h = fs["searched"], fs["hrnet"]
    out.append({"aim": "searched arch >= hrnet from scratch at no more GFLOPs",
                "met": s is not None and s["mean"] >= h["mean"],
                "numbers": "no searched arch at <= hrnet GFLOPs" if s is None else
                f"{s['mean']:.2f} +- {s['std']:.2f} ({s['gflops']:.4f} GFLOPs) vs {h['mean']:.2f} +- {h['std']:.2f} "
                f"({h['gflops']:.4f} GFLOPs)"})
    hv = doc["fidelity_vs_images"]["halving"]
    out.append({"aim": "successive halving: tau >= 0.9 against full evaluation at >= 3x less cost",
                "met": hv["kendall_tau"] >= 0.9 and hv["cost_ratio"] >= 3,
                "numbers": f"tau {fmt_stat(hv['kendall_tau'])}, cost {hv['cost_ratio']:.2f}x less with calibration "
                           f"({hv['eval_images_ratio']:.2f}x in scored images)"})
    return out


def _ci(ci) -> str:
    return "undefined" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _timings(plan: Plan, out: str, searched, estimate_s: float) -> dict:
    units = plan.wave_a() + plan.wave_b() + plan.wave_c(searched)
    secs = {u["key"]: read_json(unit_path(out, u["key"]))["seconds"] for u in units}
    return {"estimate_s": estimate_s, "units_s": secs, "total_unit_s": sum(secs.values())}
