"""The study's plots (PNG, matplotlib Agg): inherited vs stand-alone scores, hypervolume against
evaluations, Kendall tau against the images an evaluation uses, and the two search families' fronts."""
from __future__ import annotations

import io

from scalenas.study.markdown import fmt_stat
from scalenas.utils.io import atomic_write_bytes


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_fidelity(path: str, doc: dict) -> str:
    """One panel per sampler view: each arch's inherited score (mean over supernet seeds) against its
    stand-alone score, with tau (and the noise ceiling's) in the title."""
    plt = _figure()
    views = list(doc["fidelity"])
    ceiling = doc.get("noise_ceiling")
    ctau = "" if ceiling is None else f" (ceiling {fmt_stat(ceiling['kendall_tau']['value'], 2)})"
    fig, axes = plt.subplots(1, len(views), figsize=(4.2 * len(views), 4.0), dpi=110, squeeze=False)
    alone = [a["standalone"] for a in doc["archs"]]
    for ax, name in zip(axes[0], views):
        f = doc["fidelity"][name]
        inh = [sum(col) / len(col) for col in zip(*f["inherited"])]
        ax.scatter(alone, inh, s=22, c=[a["gflops"] for a in doc["archs"]], cmap="viridis")
        for a, x, y in zip(doc["archs"], alone, inh):
            if a["name"] in ("hrnet", "smallest", "largest"):
                ax.annotate(a["name"], (x, y), fontsize=7)
        ax.set_title(f"{name}: tau {fmt_stat(f['kendall_tau']['value'], 2)}{ctau}", fontsize=9)
        ax.set_xlabel(f"stand-alone {doc['metric']} (test)")
        ax.set_ylabel(f"inherited {doc['metric']} (search split)")
        ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_hv_curves(path: str, doc: dict) -> str:
    """Hypervolume of the search-split front against evaluations, mean over seeds with a ±std band."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for name, s in doc["strategies"].items():
        c = s["hv_vs_evaluations"]
        lo = [m - d for m, d in zip(c["mean"], c["std"])]
        hi = [m + d for m, d in zip(c["mean"], c["std"])]
        ax.plot(c["evaluations"], c["mean"], label=name)
        ax.fill_between(c["evaluations"], lo, hi, alpha=0.2)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (search split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_images(path: str, doc: dict) -> str:
    """Kendall tau against full evaluation as the search-split and calibration images vary."""
    plt = _figure()
    fi = doc["fidelity_vs_images"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for kind, label in (("search_images", "search-split images"), ("calib_images", "BN-calibration images")):
        ax.plot([r["images"] for r in fi[kind]], [r["kendall_tau"] for r in fi[kind]], "o-", label=label)
    ax.axhline(fi["halving"]["kendall_tau"], color="tab:red", ls="--",
               label=f"successive halving ({fi['halving']['cost_ratio']:.1f}x cheaper)")
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("images (log scale)")
    ax.set_ylabel("Kendall tau vs full evaluation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_families(path: str, doc: dict) -> str:
    """Both families' points, GFLOPs against the test metric (``bench/families_front.py``'s report)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    f = doc["scalenas"]["front"]
    ax.plot([p["gflops"] for p in f], [p["test_metric"] for p in f], "o-", label="ScaleNAS (evolution) front")
    hr = doc["scalenas"]["hrnet"]
    ax.plot([hr["gflops"]], [hr["test_metric"]], "s", color="tab:blue", mfc="none", label="ScaleNAS hrnet point")
    r = sorted(doc["hrnas"]["runs"], key=lambda x: x["gflops"])
    ax.plot([p["gflops"] for p in r], [p["test_metric"] for p in r], "^-", color="tab:orange",
            label="HR-NAS (shrink) targets")
    ax.set_xlabel("GFLOPs (MACs / 2^30)")
    ax.set_ylabel(f"test {doc['metric']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)
