"""Plots of a search: every evaluated arch, the Pareto front of each generation, and the reference
subnets (HRNet point, largest, smallest) marked."""
from __future__ import annotations

from typing import Mapping, Sequence

REF_STYLE = {"hrnet": ("*", "tab:red", 180), "largest": ("^", "tab:purple", 90), "smallest": ("v", "tab:green", 90)}


def _staircase(xs: Sequence[float], ys: Sequence[float]):
    """Points of a 2-D front as a step line (metric held until the next, costlier member)."""
    pts = sorted(zip(xs, ys))
    sx, sy = [], []
    for i, (x, y) in enumerate(pts):
        if i:
            sx.append(x)
            sy.append(pts[i - 1][1])
        sx.append(x)
        sy.append(y)
    return sx, sy


def plot_pareto(path: str, records: Sequence[Mapping], fronts: Sequence[Sequence[str]],
                references: Mapping[str, str] | None = None, x: str = "gflops_2p30", y: str = "metric",
                x_label: str | None = None, y_label: str | None = None, title: str | None = None) -> str:
    """Write a PNG: grey dots for all evaluations, one step line per generation's front (light to
    dark), the final front bold, reference subnets as labelled markers.

    ``records``: evaluation records (with ``hash``, ``x`` and ``y``); ``fronts``: per generation, the
    hashes on that generation's front; ``references``: name -> hash."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    by_hash = {r["hash"]: r for r in records}
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    pts = [r for r in records if r.get(x) is not None and r.get(y) is not None]
    ax.scatter([r[x] for r in pts], [r[y] for r in pts], s=8, c="0.75", label=f"evaluated ({len(pts)})", zorder=1)
    cmap = plt.get_cmap("viridis")
    n = len(fronts)
    for g, hashes in enumerate(fronts):
        members = [by_hash[h] for h in hashes if h in by_hash and by_hash[h].get(x) is not None]
        if not members:
            continue
        sx, sy = _staircase([m[x] for m in members], [m[y] for m in members])
        last = g == n - 1
        ax.plot(sx, sy, "-", color="black" if last else cmap(g / max(1, n - 1)), lw=2.0 if last else 0.9,
                alpha=1.0 if last else 0.6, zorder=3 if last else 2,
                label=f"front, generation {g}" if last or g == 0 else None)
        if last:
            ax.scatter([m[x] for m in members], [m[y] for m in members], s=18, c="black", zorder=4)
    for name, h in (references or {}).items():
        r = by_hash.get(h)
        if r is None or r.get(x) is None:
            continue
        marker, color, size = REF_STYLE.get(name, ("D", "tab:orange", 70))
        ax.scatter([r[x]], [r[y]], marker=marker, s=size, c=color, edgecolors="black", linewidths=0.6, zorder=5,
                   label=name)
    ax.set_xlabel(x_label or x)
    ax.set_ylabel(y_label or y)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
