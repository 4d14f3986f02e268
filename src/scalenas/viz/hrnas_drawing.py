"""A picture of an ``hrnas`` architecture: what shrinking kept.

Branches are rows (1/4 at the top); each stage is a band holding its fuse module (edges from input
branch to output branch, up edges solid orange, down and new-branch edges dashed blue, same-branch
grey; each edge is a block, drawn more opaque the more hidden channels it keeps) and then its blocks.
Every block is a box of one bar per kernel path, filled to the fraction of hidden channels kept
(empty frame: the path is removed). The caption gives params and GFLOPs with both conventions.
Agg canvas only (no pyplot), as ``viz/arch_drawing.py``.
"""
from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from scalenas.space.heads import HeadSpec
from scalenas.space.hrnas import HRNASArch, HRNASSpace, Slot
from scalenas.space.hrnas_profile import hrnas_profile
from scalenas.viz.arch_drawing import BRANCH_COLORS, DOWN_COLOR, STAGE_SHADES, TRANS_COLOR, UP_COLOR

BOX_W, BOX_H, GAP, FUSE_W = 0.6, 0.5, 0.15, 0.9


def _draw_block(ax, space: HRNASSpace, sl: Slot, hidden, x: float) -> None:
    y = -sl.branch
    bar_w = BOX_W / len(space.kernel_sizes)
    cap = space.max_hidden(sl.cin)
    for p, h in enumerate(hidden):
        x0 = x + p * bar_w
        ax.add_patch(Rectangle((x0, y - BOX_H / 2), bar_w, BOX_H, fill=False, lw=0.5, ec="#555555"))
        if h:
            ax.add_patch(Rectangle((x0, y - BOX_H / 2), bar_w, BOX_H * h / cap, color=BRANCH_COLORS[sl.branch % 4]))


def _draw_edge(ax, space: HRNASSpace, sl: Slot, hidden, x: float) -> None:
    """An edge block: its colour says the direction, its opacity the fraction of hidden channels kept."""
    color = UP_COLOR if sl.src > sl.branch else DOWN_COLOR if sl.src < sl.branch or sl.new else TRANS_COLOR
    kept = sum(hidden) / (space.max_hidden(sl.cin) * len(hidden))
    ax.add_patch(FancyArrowPatch((x, -sl.src), (x + FUSE_W, -sl.branch), arrowstyle="-|>", mutation_scale=7,
                                 lw=1.2, color=color, alpha=0.2 + 0.8 * kept, ls="-" if sl.src >= sl.branch else "--"))


def draw_hrnas(space: HRNASSpace, arch: HRNASArch, head: HeadSpec | str = "seg", input_hw=(512, 1024),
               title: str | None = None) -> Figure:
    head = HeadSpec.of(head)
    pairs = list(zip(space.slots(), arch.blocks()))
    widths = [max(space.stages[s][0]) for s in range(len(space.stages))]
    x_end = sum(FUSE_W + GAP + n * (BOX_W + GAP) + GAP for n in widths)
    nb = space.num_levels
    fig = Figure(figsize=(max(8.0, 1.1 * x_end), 1.6 + 0.8 * nb))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.05, 0.9, 0.7))
    x = 0.0
    for s, n in enumerate(widths):
        x1 = x + FUSE_W + GAP + n * (BOX_W + GAP) + GAP
        ax.add_patch(Rectangle((x, -nb + 0.4), x1 - x, nb + 0.2, color=STAGE_SHADES[s % 2], zorder=0))
        ax.text((x + x1) / 2, 0.75, f"stage {s}", ha="center", fontsize=8)
        for sl, blk in pairs:
            if sl.stage != s:
                continue
            if sl.kind == "fuse":
                _draw_edge(ax, space, sl, blk.hidden, x + GAP / 2)
            else:
                _draw_block(ax, space, sl, blk.hidden, x + FUSE_W + GAP + sl.index * (BOX_W + GAP))
        x = x1
    for b in range(nb):
        ax.text(-0.2, -b, f"1/{4 * 2 ** b}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-0.8, x_end + 0.1)
    ax.set_ylim(-nb + 0.3, 1.0)
    ax.axis("off")
    p = hrnas_profile(space, arch, head, input_hw)
    fig.text(0.5, 0.97, title or f"hrnas arch {arch.hash}", ha="center", va="top", fontsize=11, weight="bold")
    fig.text(0.5, 0.9, f"{p.params / 1e6:.2f}M params  |  {p.gflops_2p30:.2f} GFLOPs (MACs/2^30, ScaleNAS) = "
                       f"{p.gflops_1e9:.2f} (MACs/1e9)  |  {head.kind} head @ {input_hw[0]}x{input_hw[1]}  |  bars: "
                       f"hidden channels kept per kernel {list(space.kernel_sizes)}", ha="center", va="top", fontsize=8)
    return fig


def save_hrnas_drawing(path: str | os.PathLike, space: HRNASSpace, arch: HRNASArch, head: HeadSpec | str = "seg",
                       input_hw=(512, 1024), title: str | None = None, dpi: int = 120) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    draw_hrnas(space, arch, head, input_hw, title).savefig(path, dpi=dpi)
    return path
