"""A picture of one architecture, in the style of the ScaleNAS search-space figure.

Branches are rows at their resolutions (1/4 at the top .. 1/32 at the bottom, labelled with channels);
each block is a box; between two block steps, every active fusion edge is a line from the input
branch to the output branch, with an arrowhead and a fusion node where inputs are summed. Edges going
to a higher resolution (up: 1x1 conv + upsample) are solid orange; edges going to a lower resolution
(down: strided 3x3 convs) are dashed blue. Module boundaries are dotted lines, stages are shaded
bands, and the caption gives params and GFLOPs with their convention.

Uses matplotlib's object API with the Agg canvas only (no pyplot, no global backend switch), so it is
safe in servers and tests. The figure widens with the number of block steps, so the full 8-module
space stays readable.
"""
from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle

from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.profile import profile
from scalenas.space.space import SearchSpace

BRANCH_COLORS = ("#4c9f70", "#3b7dd8", "#9b59b6", "#d35400")  # 1/4, 1/8, 1/16, 1/32
UP_COLOR, DOWN_COLOR, TRANS_COLOR = "#e67e22", "#1f5fa8", "#7f8c8d"
STAGE_SHADES = ("#eef2f6", "#f7f3ea")

BLOCK_W, BLOCK_H = 0.5, 0.38  # data units; rows are 1 apart
FUSE_GAP = 0.9  # horizontal room for the fusion edges between two block steps
STEP = BLOCK_W + FUSE_GAP
MODULE_GAP, STAGE_GAP = 0.35, 1.1


def _layout(space: SearchSpace, arch: Arch):
    """x positions of every block step, module span and stage span."""
    x = 2.6  # after the stem + stage-1 box
    steps, modules, stages = [], [], []
    prev_nb = 2
    stage_start = x - 0.4
    for m, ma in enumerate(arch.modules):
        nb = ma.num_branches
        if nb > prev_nb:
            stages.append((prev_nb, stage_start, x - MODULE_GAP / 2))
            x += STAGE_GAP
            stage_start = x - 0.5
            prev_nb = nb
        x0 = x
        xs = []
        for _ in range(ma.num_steps):
            xs.append(x)
            x += STEP
        steps.append(xs)
        modules.append((x0 - BLOCK_W / 2 - 0.1, xs[-1] + BLOCK_W / 2 + FUSE_GAP - 0.05))
        x += MODULE_GAP
    stages.append((prev_nb, stage_start, x - MODULE_GAP / 2))
    return steps, modules, stages, x


def draw_arch(space: SearchSpace, arch: Arch, head: HeadSpec | str | None = "seg", input_hw=None,
              title: str | None = None) -> Figure:
    """Draw (space, arch); ``head``/``input_hw`` give the head box and the caption's params and GFLOPs."""
    head = HeadSpec.of(head) if head is not None else None
    steps, modules, stages, x_end = _layout(space, arch)
    nb_max = max(m.num_branches for m in arch.modules)
    fig, ax = _canvas(x_end, nb_max)
    _draw_rows(ax, space, arch, steps, stages, x_end, nb_max)
    _draw_stem(ax, space)
    for m in range(len(arch.modules)):
        _draw_module(ax, arch, m, steps[m], modules[m])
    if head is not None:
        _draw_head(ax, head, space.channels, x_end, nb_max)
    _legend(fig)
    _caption(fig, space, arch, head, input_hw, title)
    return fig


def _y(b: int) -> float:
    """Branch ``b``'s row (1/4 at the top)."""
    return -b


def _canvas(x_end: float, nb_max: int):
    """The figure, as wide as the block steps need, and its axes (room for the legend below and the
    caption above)."""
    width_units = x_end + 4.9
    fig = Figure(figsize=(min(max(8.0, 1.2 + 0.3 * width_units), 60.0), 2.4 + 1.05 * nb_max), dpi=120)
    FigureCanvasAgg(fig)
    h_in = 2.4 + 1.05 * nb_max
    ax = fig.add_axes((0.0, 0.45 / h_in, 1.0, 1 - 1.35 / h_in))
    ax.set_xlim(-1.9, x_end + 3.0)
    ax.set_ylim(-(nb_max - 1) - 0.75, 1.05)
    ax.axis("off")
    return fig, ax


def _draw_rows(ax, space: SearchSpace, arch: Arch, steps, stages, x_end: float, nb_max: int) -> None:
    """Stage bands and labels, branch labels on the left, and each branch's line from where it starts."""
    ch = space.channels
    for idx, (nb, x0, x1) in enumerate(stages):
        ax.add_patch(Rectangle((x0, -(nb - 1) - 0.5), x1 - x0, nb, color=STAGE_SHADES[idx % 2], zorder=0))
        ax.text((x0 + x1) / 2, 0.88, f"stage {nb}", ha="center", va="bottom", fontsize=9, weight="bold")
    for b in range(nb_max):
        ax.text(-1.85, _y(b), f"1/{4 * 2 ** b}\n{ch[b]} ch", ha="left", va="center", fontsize=8,
                color=BRANCH_COLORS[b])
    first_module_of = {}
    for m, ma in enumerate(arch.modules):
        for b in range(ma.num_branches):
            first_module_of.setdefault(b, m)
    for b in range(nb_max):
        m0 = first_module_of[b]
        x_start = 2.3 if b < 2 else steps[m0][0] - BLOCK_W
        ax.plot([x_start, x_end - MODULE_GAP + 0.1], [_y(b), _y(b)], color="#b0b7bf", lw=1.0, zorder=1)


def _draw_stem(ax, space: SearchSpace) -> None:
    """The stem + stage 1 box and transition 1."""
    ax.add_patch(FancyBboxPatch((-0.45, -0.3), 2.35, 0.6, boxstyle="round,pad=0.04", fc="#dfe6ec", ec="#6c7a89",
                                lw=0.8, zorder=3))
    ax.text(0.72, 0.0, f"stem {space.stem_channels} ch\nstage 1: {space.stage1_blocks}x\nBottleneck", ha="center",
            va="center", fontsize=6, zorder=4)
    ax.add_patch(FancyArrowPatch((1.9, -0.1), (2.45, _y(1)), arrowstyle="-|>", mutation_scale=7, color=TRANS_COLOR,
                                 lw=0.9, zorder=3))


def _draw_module(ax, arch: Arch, m: int, xs: list[float], span: tuple[float, float]) -> None:
    """Module ``m``: its transition when it adds a branch, label and boundary, and per block step the
    blocks, then the fusion edges and nodes after them."""
    ma = arch.modules[m]
    nb = ma.num_branches
    if m > 0 and nb > arch.modules[m - 1].num_branches:  # a new branch: strided conv from the previous lowest
        xt = xs[0] - BLOCK_W / 2 - 0.35
        ax.add_patch(FancyArrowPatch((xt - 0.45, _y(nb - 2)), (xt, _y(nb - 1)), arrowstyle="-|>",
                                     mutation_scale=7, color=TRANS_COLOR, lw=0.9, zorder=3))
    x0, x1 = span
    ax.text((x0 + x1) / 2, 0.55, f"M{m}\n" + "".join(str(d) for d in ma.depth), ha="center", va="bottom",
            fontsize=7, color="#333333")
    ax.plot([x1, x1], [0.5, -(nb - 1) - 0.45], ls=":", color="#8a939c", lw=0.8, zorder=1)
    for s, xb in enumerate(xs):
        for i in range(nb):
            if s < ma.depth[i]:
                ax.add_patch(Rectangle((xb - BLOCK_W / 2, _y(i) - BLOCK_H / 2), BLOCK_W, BLOCK_H,
                                       fc=BRANCH_COLORS[i], ec="white", lw=0.6, zorder=4))
        _draw_fusion(ax, ma, s, xb)


def _draw_fusion(ax, ma, s: int, xb: float) -> None:
    """The fusion edges after block step ``s`` (up: solid orange, down: dashed blue) and a node on
    every output branch that sums inputs."""
    xa, xf = xb + BLOCK_W / 2 + 0.06, xb + BLOCK_W / 2 + FUSE_GAP - 0.18
    for j in range(ma.num_branches):
        ins = ma.inputs(j, s)
        for k in ins:
            up = k > j
            ax.add_patch(FancyArrowPatch((xa, _y(k)), (xf, _y(j)), arrowstyle="-|>", mutation_scale=6,
                                         color=UP_COLOR if up else DOWN_COLOR, lw=0.7,
                                         ls="-" if up else (0, (3, 1.5)), alpha=0.85, shrinkB=2.5, zorder=2))
        if ins:
            ax.plot([xf], [_y(j)], marker="o", ms=3.2, mfc="white", mec="#333333", mew=0.7, zorder=5)


def _draw_head(ax, head: HeadSpec, ch, x_end: float, nb_max: int) -> None:
    hx = x_end + 0.1
    rows = range(nb_max) if head.kind == "seg" else range(1)
    top, bot = 0.3, -(max(rows)) - 0.3
    ax.add_patch(FancyBboxPatch((hx, bot), 2.3, top - bot, boxstyle="round,pad=0.04", fc="#fdebd0",
                                ec="#b9770e", lw=0.8, zorder=3))
    label = {"seg": f"seg head\nconcat {sum(ch)} ch\n{head.num_classes} classes, 1/4",
             "pose-topdown": f"top-down\n{head.num_joints} heatmaps\n1/4",
             "pose-bottomup": f"HigherHRNet\n{2 * head.num_joints} @1/4\n{head.num_joints} @1/2"}[head.kind]
    ax.text(hx + 1.15, (top + bot) / 2, label, ha="center", va="center", fontsize=6, zorder=4)


def _legend(fig: Figure) -> None:
    handles = [Patch(fc=BRANCH_COLORS[0], ec="white", label="BasicBlock"),
               Line2D([], [], color=UP_COLOR, lw=1.2, label="fusion up (1x1 conv + upsample)"),
               Line2D([], [], color=DOWN_COLOR, lw=1.2, ls=(0, (3, 1.5)), label="fusion down (strided 3x3 convs)"),
               Line2D([], [], ls="", marker="o", mfc="white", mec="#333333", label="sum + ReLU"),
               Line2D([], [], color=TRANS_COLOR, lw=1.2, label="transition (new branch)")]
    fig_w = fig.get_size_inches()[0]
    fig.legend(handles=handles, loc="lower center", ncol=5 if fig_w >= 11 else 3, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 0.0))


def _caption(fig: Figure, space: SearchSpace, arch: Arch, head: HeadSpec | None, input_hw, title: str | None) -> None:
    """The title, then the costs (with a head and an input size) and the arch's depths and edges."""
    avail = space.num_edges_available(arch)
    lines = [f"depths {arch.depth_string()}   |   {arch.num_blocks()} blocks   |   "
             f"{arch.num_edges()}/{avail} fusion edges active"]
    if head is not None and input_hw is not None:
        p = profile(space, arch, head, input_hw)
        lines.insert(0, f"{p.params / 1e6:.1f}M params   |   {p.gflops_2p30:.1f} GFLOPs (MACs/2^30, ScaleNAS) = "
                        f"{p.gflops_1e9:.1f} (MACs/1e9)   |   {head.kind} head @ {input_hw[0]}x{input_hw[1]}")
        if (p.effective_params, p.effective_macs) != (p.params, p.macs):  # a pose net's dead compute
            lines[0] += (f"   |   built net (no dead compute): {p.effective_params / 1e6:.2f}M, "
                         f"{p.effective_gflops_2p30:.2f} GFLOPs")
    top = 1 - 0.2 / fig.get_size_inches()[1]  # 0.2 inch margin, whatever the height
    fig.text(0.5, top, title or f"arch {arch.hash}", ha="center", va="top", fontsize=11, weight="bold")
    for n, line in enumerate(lines):  # caption lines below the title, 0.2 inch apart
        fig.text(0.5, top - (0.3 + 0.2 * n) / fig.get_size_inches()[1], line, ha="center", va="top", fontsize=8)


def save_arch_drawing(path: str | os.PathLike, space: SearchSpace, arch: Arch, head: HeadSpec | str | None = "seg",
                      input_hw=None, title: str | None = None, dpi: int = 120) -> str:
    """Draw and write to ``path`` (format from the extension: .png, .svg, .pdf). Returns the path."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig = draw_arch(space, arch, head, input_hw, title)
    fig.savefig(path, dpi=dpi)
    return path
