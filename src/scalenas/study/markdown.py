"""``study.md``: the tables of ``study.json`` and a reading generated from the numbers (each of the
issue's aims said to be met or not, plainly, with the numbers and whether the gap is within the
seed-to-seed spread)."""
from __future__ import annotations

import math

from scalenas.utils.markdown import markdown_table


UNDEFINED = "undefined (ties)"  # a rank correlation with all ties on one side (e.g. a 4-image null) has no value


def fmt_stat(v, digits: int = 3) -> str:
    """A statistic, or UNDEFINED where it has none (NaN in memory, null in study.json)."""
    return UNDEFINED if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _ci(ci) -> str:
    return "undefined" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _ms(d: dict, digits: int = 3) -> str:
    m, s = d["mean"], d["std"]
    return UNDEFINED if fmt_stat(m) == UNDEFINED else f"{m:.{digits}f} ± {fmt_stat(s, digits)}"


def _fidelity_table(doc: dict) -> list[str]:
    rows = []
    for name, f in doc["fidelity"].items():
        t, r = f["kendall_tau"], f["spearman_rho"]
        rows.append([name, f"{fmt_stat(t['value'])} {_ci(t['ci95'])}", f"{fmt_stat(r['value'])} {_ci(r['ci95'])}",
                     fmt_stat(f["top3_overlap"]["value"], 2), fmt_stat(f["top5_overlap"]["value"], 2),
                     ", ".join(fmt_stat(v, 2) for v in t["per_seed"])])
    return markdown_table(["sampler (view)", "Kendall τ [95% CI]", "Spearman ρ [95% CI]", "top-3 overlap",
                           "top-5 overlap", "τ per seed"], rows)


def _sampler_table(doc: dict) -> list[str]:
    rows = []
    for name, s in doc["samplers"].items():
        for label, v in [(name, s)] + ([(f"{name}, equal compute", s["equal_compute"])] if "equal_compute" in s else []):
            rows.append([label, v["steps"], v["images_seen"], v["subnet_passes"], _ms(v["kendall_tau"]),
                         _ms(v["hypervolume"], 4)])
    return markdown_table(["sampler", "steps", "images seen", "subnet passes", "Kendall τ (mean ± std)",
                           "hypervolume, test (mean ± std)"], rows)


def _strategy_table(doc: dict) -> list[str]:
    rows = [[name, s["evaluations"], _ms(s["hypervolume"], 4), _ms(s["hypervolume_test"], 4)]
            for name, s in doc["strategies"].items()]
    return markdown_table(["strategy", "evaluations", "hypervolume, search split (mean ± std)",
                           "final front on test (mean ± std)"], rows)


def _scratch_table(doc: dict) -> list[str]:
    fs, m = doc["from_scratch"], doc["metric"]
    rows = []
    for name in ("searched", "hrnet"):
        v = fs[name]
        if v is None:
            rows.append([name, "-", "-", "none found at ≤ hrnet GFLOPs", "-"])
            continue
        rows.append([name, f"`{v['hash']}`", f"{v['gflops']:.4f}", _ms(v, 2),
                     ", ".join(f"{x:.2f}" for x in v["per_seed"])])
    return markdown_table(["arch", "hash", "GFLOPs (2^30)", f"test {m}, from scratch (mean ± std)", "per seed"], rows)


def _images_table(doc: dict) -> list[str]:
    fi = doc["fidelity_vs_images"]
    rows = []
    for kind, label in (("search_images", "search-split images"), ("calib_images", "BN-calibration images")):
        for r in fi[kind]:
            rows.append([label, r["images"], fmt_stat(r["kendall_tau"]), fmt_stat(r["spearman_rho"])])
    h = fi["halving"]
    return markdown_table(["varied", "images", "Kendall τ vs full", "Spearman ρ vs full"], rows) + [
        "", f"Successive halving (min_images {h['min_images']}, eta {h['eta']}): τ {fmt_stat(h['kendall_tau'])} "
        f"against full evaluation, {h['cost_ratio']:.2f}x cheaper counting calibration "
        f"({h['eval_images_ratio']:.2f}x fewer scored images, {h['evaluations']} evaluations)."]


def _reading(doc: dict) -> list[str]:
    out = []
    for a in doc["aims"]:
        verdict = "**met**" if a["met"] else "**not met**"
        out.append(f"- {a['aim']}: {verdict} ({a['numbers']}).")
    g = doc["fidelity"]["grouped"]["kendall_tau"]
    if g["ci95"] is not None and g["ci95"][0] < 0.6 < g["ci95"][1]:
        out.append("- The grouped τ interval contains 0.6: this study cannot tell whether the aim holds.")
    strat = doc["strategies"]
    if "random" in strat:
        e, r = strat["evolution"]["hypervolume"], strat["random"]["hypervolume"]
        if abs(e["mean"] - r["mean"]) <= max(e["std"], r["std"]):
            out.append("- Evolution and random search differ by less than one seed-to-seed standard deviation: "
                       "at this budget the strategies are not distinguishable.")
    h = doc["fidelity_vs_images"]["halving"]
    if h["cost_ratio_bound"] < 3:
        out.append(f"- Calibration is {100 / h['cost_ratio_bound']:.0f}% of a full evaluation's images here, so "
                   f"halving the scored images cannot cut the cost more than {h['cost_ratio_bound']:.1f}x; with a "
                   f"search split much larger than the calibration set (or larger images) that share is smaller.")
    fs = doc["from_scratch"]
    if fs["searched"] is not None:
        s, h = fs["searched"], fs["hrnet"]
        if abs(s["mean"] - h["mean"]) <= max(s["std"], h["std"]):
            out.append("- Searched and hrnet from scratch differ by less than one standard deviation over seeds: "
                       "no winner at this budget.")
    return out


def study_markdown(doc: dict, timings: dict, plots: dict) -> str:
    st = doc["settings"]
    lines = [f"# Does the search work? ({doc['metric']}, {st['archs']} archs, {st['seeds']} seeds)", "",
             f"Supernets: {st['supernet']['steps']} steps x batch {st['supernet']['batch_size']} "
             f"({st['supernet']['images']} images) per sampler and seed. Stand-alone: every arch trained alone from "
             f"scratch with the same recipe for {st['standalone']['steps']} steps ({st['standalone']['images']} "
             f"images), scored on the test split. Inherited scores: BN recalibrated on {st['search']['calib_images']} "
             f"images, scored on the {st['search_split_images']}-image search split. Hypervolume on "
             f"{st['hypervolume']['objectives']} with reference point {st['hypervolume']['reference_point']}. "
             f"Bootstrap: {st['bootstrap']['resamples']} resamples of the archs.", "",
             "## Reading", ""] + _reading(doc) + [
             "", "## 1. Ranking fidelity (inherited vs stand-alone)", ""] + _fidelity_table(doc) + [
             "", f"![fidelity]({plots['fidelity']})", "", "## 2. Sampler ablation", ""] + _sampler_table(doc) + [
             "", "## 3. Strategy ablation (grouped seed 0)", ""] + _strategy_table(doc) + [
             "", f"![hypervolume]({plots['hypervolume']})", "", "## 4. The architecture itself, from scratch", ""
             ] + _scratch_table(doc) + [
             "", "## 5. What a search evaluation needs", "", doc["fidelity_vs_images"]["reference"] + ".", ""
             ] + _images_table(doc) + [
             "", f"![images]({plots['images']})", "",
             f"Wall time: {timings['total_unit_s'] / 60:.1f} min of units (estimated at the start: "
             f"{timings['estimate_s'] / 60:.1f} min).", ""]
    return "\n".join(lines)
