"""``scalenas draw``: a picture of an architecture (branches x block steps, fusion edges, caption with cost)."""
from __future__ import annotations

from scalenas.cli._target import add_target_args, resolve_hrnas_target, resolve_target


def add_parser(sub):
    p = sub.add_parser(
        "draw", help="draw an architecture as an image",
        description="Draw a preset or an arch file in the style of the ScaleNAS search-space figure: branches as rows "
                    "(1/4..1/32 with channels), blocks as boxes, active fusion edges as arrows (up: solid orange, "
                    "down: dashed blue), module and stage boundaries, and params/GFLOPs in the caption.")
    p.add_argument("target", metavar="NAME|ARCH", help="preset name, arch JSON, model.json, or official .npy mask")
    p.add_argument("-o", "--output", help="image file; the format follows the extension (.png, .svg, .pdf); "
                                          "default NAME.png")
    add_target_args(p)
    p.add_argument("--title", help="title (default: the model name and arch hash)")
    p.add_argument("--dpi", type=int, default=120, help="resolution of raster output (default 120)")
    return p


def run(args) -> int:
    from scalenas.viz.arch_drawing import save_arch_drawing

    h = resolve_hrnas_target(args.target, args.head, args.input, args.width)
    if h is not None:
        from scalenas.viz.hrnas_drawing import save_hrnas_drawing

        out = args.output or f"{h.name}.png"
        title = args.title or f"{h.name}  (arch {h.arch.hash})"
        save_hrnas_drawing(out, h.space, h.arch, h.head, h.input_hw, title=title, dpi=args.dpi)
        print(f"wrote {out}")
        return 0
    t = resolve_target(args.target, args.head, args.input, args.width)
    out = args.output or f"{t.name}.png"
    title = args.title or f"{t.name}  (arch {t.arch.hash})"
    save_arch_drawing(out, t.space, t.arch, t.head, t.input_hw, title=title, dpi=args.dpi)
    print(f"wrote {out}")
    return 0
