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


CEILING_ROW = "stand-alone seed 0 vs seed k (noise ceiling)"


def _stat_ci(d: dict | None) -> str:
    return "-" if d is None else f"{fmt_stat(d['value'])} {_ci(d['ci95'])}"


def _fidelity_table(doc: dict) -> list[str]:
    """One row per sampler view, then the noise ceiling (stand-alone against stand-alone; its "per
    seed" column lists the pairs (0, k))."""
    rows = []
    for name, f in doc["fidelity"].items():
        t = f["kendall_tau"]
        rows.append([name, _stat_ci(t), _stat_ci(f["spearman_rho"]), fmt_stat(f["top3_overlap"]["value"], 2),
                     fmt_stat(f["top5_overlap"]["value"], 2), ", ".join(fmt_stat(v, 2) for v in t["per_seed"]),
                     _stat_ci(f.get("kendall_tau_vs_mean"))])
    c = doc.get("noise_ceiling")
    if c is not None:
        rows.append([CEILING_ROW, _stat_ci(c["kendall_tau"]), _stat_ci(c["spearman_rho"]),
                     fmt_stat(c["top3_overlap"]["value"], 2), fmt_stat(c["top5_overlap"]["value"], 2),
                     ", ".join(f"{fmt_stat(v, 2)} (0 vs {p[1]})" for v, p in zip(c["kendall_tau"]["per_pair"],
                                                                                   c["pairs"])), "-"])
    return markdown_table(["sampler (view)", "Kendall τ [95% CI]", "Spearman ρ [95% CI]", "top-3 overlap",
                           "top-5 overlap", "τ per seed", "τ vs stand-alone seed mean [95% CI]"], rows)


def _sampler_table(doc: dict) -> list[str]:
    rows = []
    for name, s in doc["samplers"].items():
        equal = [(f"{name}, equal compute", s["equal_compute"])] if "equal_compute" in s else []
        for label, v in [(name, s)] + equal:
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
    h, sh = fi["halving"], fi.get("split_half")
    half = [] if sh is None else [
        "", f"Split-half reliability: the fidelity archs scored on two disjoint halves of the search split "
            f"({sh['images'][0]} and {sh['images'][1]} images, the same calibration) agree with τ "
            f"{fmt_stat(sh['kendall_tau'])} (95% CI {_ci(sh['kendall_tau_ci95'])}), ρ {fmt_stat(sh['spearman_rho'])}."]
    return markdown_table(["varied", "images", "Kendall τ vs full", "Spearman ρ vs full"], rows) + half + [
        "", f"Successive halving (min_images {h['min_images']}, eta {h['eta']}): τ {fmt_stat(h['kendall_tau'])} "
        f"against full evaluation, {h['cost_ratio']:.2f}x cheaper counting calibration "
        f"({h['eval_images_ratio']:.2f}x fewer scored images, {h['evaluations']} evaluations)."]


def _reliability(doc: dict) -> list[str]:
    """How far the ground truths themselves agree: the noise ceiling of the fidelity taus, and the
    split-half reliability of the full evaluation that halving's 0.9 is measured against."""
    out = []
    c = doc.get("noise_ceiling")
    if c is not None:
        ct = c["kendall_tau"]
        line = (f"- Noise ceiling: two stand-alone seeds of the same archs rank them with τ {fmt_stat(ct['value'])} "
                f"(95% CI {_ci(ct['ci95'])}); no inherited-weight ranking can be expected to agree with one "
                f"stand-alone seed better than that.")
        if ct["value"] is not None and math.isfinite(ct["value"]) and ct["value"] > 0:
            shares = [f"{name}'s τ {fmt_stat(f['kendall_tau']['value'], 2)} is "
                      f"{_share(f['kendall_tau']['value'], ct['value'])} of it"
                      for name, f in doc["fidelity"].items()]
            line += " " + "; ".join(shares) + "."
        else:
            line += " At this budget the stand-alone ranking is itself noise: the sampler taus cannot be read."
        out.append(line)
    sh = doc["fidelity_vs_images"].get("split_half")
    if sh is not None:
        out.append(f"- Reliability of the full evaluation: the fidelity archs' scores on two disjoint halves of the "
                   f"search split agree with τ {fmt_stat(sh['kendall_tau'])} (95% CI {_ci(sh['kendall_tau_ci95'])}); "
                   f"halving's τ ≥ 0.9 is measured against an evaluation that agrees with itself this well.")
    return out


def _share(v, ceiling: float) -> str:
    return UNDEFINED if v is None or not math.isfinite(v) else f"{100 * v / ceiling:.0f}%"


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
    out += _reliability(doc)
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
             f"({st['supernet']['images']} images seen) per sampler and seed. Stand-alone: every arch trained alone "
             f"from scratch with the same recipe for {st['standalone']['steps']} steps "
             f"({st['standalone']['images']} images seen), scored on the test split. Inherited scores: BN "
             f"recalibrated on {st['search']['calib_images']} images, scored on the {st['search_split_images']}-image "
             f"search split. Hypervolume on "
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
