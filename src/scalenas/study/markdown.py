"""``study.md``: the tables of ``study.json`` and a reading generated from the numbers (each of the
issue's aims said to be met or not, plainly, with the numbers and whether the gap is within the
seed-to-seed spread)."""
from __future__ import annotations


def _ci(ci) -> str:
    return "undefined" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _ms(d: dict, digits: int = 3) -> str:
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def _fidelity_table(doc: dict) -> list[str]:
    rows = ["| sampler (view) | Kendall τ [95% CI] | Spearman ρ [95% CI] | top-3 overlap | top-5 overlap | τ per seed |",
            "|---|---|---|---|---|---|"]
    for name, f in doc["fidelity"].items():
        t, r = f["kendall_tau"], f["spearman_rho"]
        rows.append(f"| {name} | {t['value']:.3f} {_ci(t['ci95'])} | {r['value']:.3f} {_ci(r['ci95'])} | "
                    f"{f['top3_overlap']['value']:.2f} | {f['top5_overlap']['value']:.2f} | "
                    f"{', '.join(f'{v:.2f}' for v in t['per_seed'])} |")
    return rows


def _sampler_table(doc: dict) -> list[str]:
    rows = ["| sampler | steps | images seen | subnet passes | Kendall τ (mean ± std) | hypervolume, test (mean ± std) |",
            "|---|---|---|---|---|---|"]
    for name, s in doc["samplers"].items():
        for label, v in [(name, s)] + ([(f"{name}, equal compute", s["equal_compute"])] if "equal_compute" in s else []):
            rows.append(f"| {label} | {v['steps']} | {v['images_seen']} | {v['subnet_passes']} | "
                        f"{_ms(v['kendall_tau'])} | {_ms(v['hypervolume'], 4)} |")
    return rows


def _strategy_table(doc: dict) -> list[str]:
    rows = ["| strategy | evaluations | hypervolume, search split (mean ± std) | final front on test (mean ± std) |",
            "|---|---|---|---|"]
    for name, s in doc["strategies"].items():
        rows.append(f"| {name} | {s['evaluations']} | {_ms(s['hypervolume'], 4)} | {_ms(s['hypervolume_test'], 4)} |")
    return rows


def _scratch_table(doc: dict) -> list[str]:
    fs, m = doc["from_scratch"], doc["metric"]
    rows = [f"| arch | hash | GFLOPs (2^30) | test {m}, from scratch (mean ± std) | per seed |", "|---|---|---|---|---|"]
    for name in ("searched", "hrnet"):
        v = fs[name]
        if v is None:
            rows.append(f"| {name} | - | - | none found at ≤ hrnet GFLOPs | - |")
            continue
        rows.append(f"| {name} | `{v['hash']}` | {v['gflops']:.4f} | {_ms(v, 2)} | "
                    f"{', '.join(f'{x:.2f}' for x in v['per_seed'])} |")
    return rows


def _images_table(doc: dict) -> list[str]:
    fi = doc["fidelity_vs_images"]
    rows = ["| varied | images | Kendall τ vs full | Spearman ρ vs full |", "|---|---|---|---|"]
    for kind, label in (("search_images", "search-split images"), ("calib_images", "BN-calibration images")):
        for r in fi[kind]:
            rows.append(f"| {label} | {r['images']} | {r['kendall_tau']:.3f} | {r['spearman_rho']:.3f} |")
    h = fi["halving"]
    rows += ["", f"Successive halving (min_images {h['min_images']}, eta {h['eta']}): τ {h['kendall_tau']:.3f} "
             f"against full evaluation, {h['cost_ratio']:.2f}x cheaper counting calibration "
             f"({h['eval_images_ratio']:.2f}x fewer scored images, {h['evaluations']} evaluations)."]
    return rows


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
