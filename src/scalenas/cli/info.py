"""``scalenas info``: params, GFLOPs (both conventions), depths and fusion edges of a model.

With no argument, lists every preset with its published and computed figures.
"""
from __future__ import annotations

import sys

from scalenas.cli._target import HRNASTarget, Target, add_target_args, resolve_hrnas_target, resolve_target
from scalenas.errors import ScaleNASError
from scalenas.nets.registry import get_preset, list_presets
from scalenas.space.hrnas_profile import hrnas_profile
from scalenas.space.profile import Profile, profile
from scalenas.utils.io import dumps_json


def add_parser(sub):
    p = sub.add_parser(
        "info", help="params, GFLOPs and structure of a preset or an arch file",
        description="Print params and GFLOPs (as MACs/2^30, the ScaleNAS/HRNet convention, and MACs/1e9, the "
                    "HigherHRNet convention; published convention, and effective: what the built net runs, without "
                    "a pose net's dead compute), the depth table (module x branch), blocks and active fusion edges. "
                    "TARGET is a preset name, an arch JSON, a model.json/preset-format JSON with a 'space', or an "
                    "official .npy mask. Without TARGET, list the presets with published vs computed figures.")
    p.add_argument("target", nargs="?", metavar="NAME|ARCH", help="preset name or arch file (omit to list presets)")
    add_target_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    return p


def _console():
    from rich.console import Console

    # Not a terminal (pipes, CI logs): a fixed width wide enough that the tables do not wrap.
    return Console(width=None if sys.stdout.isatty() else 130, highlight=False)


def target_info(t: Target, prof: Profile) -> dict:
    a = t.arch
    out = {"name": t.name, "arch_hash": a.hash, "head": t.head.kind, "head_spec": t.head.to_dict(),
           "input": f"{t.input_hw[0]}x{t.input_hw[1]}", "input_hw": list(t.input_hw), "space": t.space.to_dict(),
           "params": prof.params, "params_m": round(prof.params / 1e6, 4), "macs": prof.macs,
           "gflops_2p30": round(prof.gflops_2p30, 4), "gflops_1e9": round(prof.gflops_1e9, 4),
           "effective_params": prof.effective_params, "effective_params_m": round(prof.effective_params_m, 4),
           "effective_macs": prof.effective_macs, "effective_gflops_2p30": round(prof.effective_gflops_2p30, 4),
           "effective_gflops_1e9": round(prof.effective_gflops_1e9, 4),
           "blocks": a.num_blocks(), "edges": a.num_edges(), "edges_available": t.space.num_edges_available(a),
           "depths": [list(m.depth) for m in a.modules], "depth_string": a.depth_string()}
    if t.published:
        out["published"] = t.published
    if t.notes:
        out["notes"] = t.notes
    return out


def hrnas_info(t: HRNASTarget, prof: Profile) -> dict:
    """The figures of an hrnas-family target (HR-NAS's space): costs, blocks, hidden channels per stage."""
    slots, blocks = t.space.slots(), t.arch.blocks()
    per_stage = []
    for s in range(len(t.space.stages)):
        pairs = [(sl, b) for sl, b in zip(slots, blocks) if sl.stage == s]
        per_stage.append({"stage": s, "branches": len(t.space.stage_channels(s)),
                          "channels": list(t.space.stage_channels(s)),
                          "hidden": sum(sum(b.hidden) for _, b in pairs),
                          "hidden_max": sum(t.space.max_hidden(sl.cin) * len(t.space.kernel_sizes) for sl, _ in pairs),
                          "paths": sum(h > 0 for _, b in pairs for h in b.hidden)})
    return {"name": t.name, "family": "hrnas", "arch_hash": t.arch.hash, "head": t.head.kind,
            "head_spec": t.head.to_dict(), "input": f"{t.input_hw[0]}x{t.input_hw[1]}", "input_hw": list(t.input_hw),
            "space": t.space.to_dict(), "params": prof.params, "params_m": round(prof.params / 1e6, 4),
            "macs": prof.macs, "gflops_2p30": round(prof.gflops_2p30, 4), "gflops_1e9": round(prof.gflops_1e9, 4),
            "blocks": len(blocks), "hidden": t.arch.total_hidden(), "stages": per_stage}


def _print_hrnas(info: dict) -> None:
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{info['name']}[/bold]  hrnas arch {info['arch_hash']}  |  {info['head']} head  |  input "
              f"{info['input']}  |  kernels {info['space']['kernel_sizes']}, "
              f"expansion {info['space']['expand_ratio']:g}")
    con.print(f"params {info['params'] / 1e6:.2f}M ({info['params']:,})   GFLOPs {info['gflops_2p30']:.2f} "
              f"(MACs/2^30, ScaleNAS/HRNet)   {info['gflops_1e9']:.2f} (MACs/1e9)   blocks {info['blocks']}")
    t = Table(title="hidden channels kept per stage (all blocks, all kernel paths)", title_justify="left")
    for col in ("stage", "branches", "channels", "hidden kept", "of", "paths"):
        t.add_column(col, justify="right")
    for r in info["stages"]:
        t.add_row(str(r["stage"]), str(r["branches"]), "/".join(map(str, r["channels"])), str(r["hidden"]),
                  str(r["hidden_max"]), str(r["paths"]))
    con.print(t)


def _dead_note(prof: Profile) -> str:
    dead = prof.params - prof.effective_params
    if not dead and prof.macs == prof.effective_macs:
        return "no dead compute"
    dead_g = (prof.macs - prof.effective_macs) / 2**30
    return (f"without {dead:,} params and {dead_g:.2f} GFLOPs (MACs/2^30) of dead compute that the published "
            f"convention above counts")


def _published_gflops(prof: Profile, published: dict) -> float:
    return prof.gflops_1e9 if published.get("gflops_convention") == "MACs/1e9" else prof.gflops_2p30


def _print_target(t: Target, info: dict, prof: Profile) -> None:
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{t.name}[/bold]  arch {info['arch_hash']}  |  {t.head.kind} head  |  input {info['input']}  "
              f"|  width {t.space.width} (channels {', '.join(map(str, t.space.channels))})")
    s = Table(show_header=False, box=None, pad_edge=False)
    s.add_column(style="bold")
    s.add_column()
    s.add_row("params", f"{prof.params / 1e6:.2f}M ({prof.params:,})")
    s.add_row("GFLOPs", f"{prof.gflops_2p30:.2f} (MACs/2^30, ScaleNAS/HRNet)   {prof.gflops_1e9:.2f} "
                        f"(MACs/1e9, HigherHRNet)")
    s.add_row("effective", f"{prof.effective_params / 1e6:.2f}M params ({prof.effective_params:,}), "
                           f"{prof.effective_gflops_2p30:.2f} (MACs/2^30) {prof.effective_gflops_1e9:.2f} (MACs/1e9) "
                           f"GFLOPs: what the built net runs ({_dead_note(prof)})")
    s.add_row("blocks", f"{info['blocks']} (HRNet: 104)")
    s.add_row("fusion edges", f"{info['edges']} active / {info['edges_available']} available at these depths")
    if t.published:
        pub = t.published
        s.add_row("published", f"{pub.get('params_M')}M / {pub.get('gflops')} GFLOPs ({pub.get('gflops_convention')})"
                               f"; computed {prof.params / 1e6:.1f}M / {_published_gflops(prof, pub):.1f}")
    for n in t.notes:
        s.add_row("note", n)
    con.print(s)

    nb_max = max(m.num_branches for m in t.arch.modules)
    d = Table(title="depth per module x branch (blocks), cross edges active/available", title_justify="left")
    d.add_column("module")
    d.add_column("stage", justify="right")
    for b in range(nb_max):
        d.add_column(f"1/{4 * 2 ** b} ({t.space.channels[b]}ch)", justify="right")
    d.add_column("edges", justify="right")
    for m, ma in enumerate(t.arch.modules):
        cells = [str(x) for x in ma.depth] + [""] * (nb_max - ma.num_branches)
        avail = (ma.num_branches - 1) * sum(ma.depth)
        d.add_row(f"M{m}", str(t.space.stage_of(m)), *cells, f"{ma.num_edges()}/{avail}")
    con.print(d)


def preset_rows() -> list[dict]:
    rows = []
    for name in list_presets():
        p = get_preset(name)
        prof = profile(p.space, p.arch, p.head, p.input_hw)
        pub = p.published or {}
        conv = pub.get("gflops_convention", "MACs/2^30")
        g = prof.gflops_1e9 if conv == "MACs/1e9" else prof.gflops_2p30
        eff_g = prof.effective_gflops_1e9 if conv == "MACs/1e9" else prof.effective_gflops_2p30
        match = None
        if pub:
            match = (abs(prof.params / 1e6 - pub["params_M"]) <= 0.1 + 1e-9
                     and abs(g - pub["gflops"]) <= 0.1 + 1e-9)
        rows.append({"name": name, "task": p.task, "input": f"{p.input_hw[0]}x{p.input_hw[1]}",
                     "width": p.space.width, "params": prof.params, "params_m": round(prof.params / 1e6, 2),
                     "gflops": round(g, 2), "gflops_convention": conv, "published_params_m": pub.get("params_M"),
                     "published_gflops": pub.get("gflops"), "match": match, "arch_hash": p.arch.hash, "_g": g,
                     "effective_params": prof.effective_params,
                     "effective_params_m": round(prof.effective_params / 1e6, 2),
                     "effective_gflops": round(eff_g, 2), "_eg": eff_g})
    return rows


def _print_presets(rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="presets: computed vs published (params M / GFLOPs, convention per row)", title_justify="left")
    for col, just in (("name", "left"), ("task", "left"), ("input", "right"), ("W", "right"), ("params", "right"),
                      ("published", "right"), ("GFLOPs", "right"), ("published", "right"), ("convention", "left"),
                      ("", "center"), ("effective", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        mark = {True: "ok", False: "DIFF", None: "-"}[r["match"]]
        t.add_row(r["name"], r["task"], r["input"], str(r["width"]), f"{r['params'] / 1e6:.1f}",
                  "-" if r["published_params_m"] is None else f"{r['published_params_m']:.1f}", f"{r['_g']:.1f}",
                  "-" if r["published_gflops"] is None else f"{r['published_gflops']:.1f}", r["gflops_convention"],
                  mark, f"{r['effective_params'] / 1e6:.1f} / {r['_eg']:.1f}")
    con = _console()
    con.print(t)
    con.print("GFLOPs = conv multiply-adds (get_model_summary convention); MACs/2^30 for ScaleNAS/HRNet, "
              "MACs/1e9 for HigherHRNet. Effective: params / GFLOPs of what the built net runs (pose nets "
              "omit the dead compute the published convention counts). 'scalenas info NAME' for details.")


def hrnas_preset_rows() -> list[dict]:
    """The hrnas family's presets (HR-NAS's supernets before shrinking): nothing published to compare."""
    rows = []
    for name in list_presets("hrnas"):
        p = get_preset(name)
        prof = hrnas_profile(p.space, p.arch, p.head, p.input_hw)
        rows.append({"name": name, "task": p.task, "input": f"{p.input_hw[0]}x{p.input_hw[1]}",
                     "params": prof.params, "params_m": round(prof.params / 1e6, 2), "macs": prof.macs,
                     "gflops_2p30": round(prof.gflops_2p30, 2), "gflops_1e9": round(prof.gflops_1e9, 2),
                     "arch_hash": p.arch.hash})
    return rows


def _print_hrnas_presets(rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="hrnas family (HR-NAS's space): supernets before shrinking", title_justify="left")
    for col in ("name", "task", "input", "params (M)", "GFLOPs (MACs/2^30)", "GFLOPs (MACs/1e9)"):
        t.add_column(col, justify="left" if col in ("name", "task") else "right")
    for r in rows:
        t.add_row(r["name"], r["task"], r["input"], f"{r['params_m']:.2f}", f"{r['gflops_2p30']:.2f}",
                  f"{r['gflops_1e9']:.2f}")
    _console().print(t)


def run(args) -> int:
    if args.target is None:
        if args.head or args.input or args.width:
            raise ScaleNASError("--head/--input/--width need a NAME or ARCH argument")
        rows = preset_rows()
        hr = hrnas_preset_rows()
        if args.json:
            rows_out = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
            print(dumps_json({"presets": rows_out, "hrnas_presets": hr}, indent=None))
        else:
            _print_presets(rows)
            _print_hrnas_presets(hr)
        return 0
    h = resolve_hrnas_target(args.target, args.head, args.input, args.width)
    if h is not None:
        info = hrnas_info(h, hrnas_profile(h.space, h.arch, h.head, h.input_hw))
        print(dumps_json(info, indent=None)) if args.json else _print_hrnas(info)
        return 0
    t = resolve_target(args.target, args.head, args.input, args.width)
    prof = profile(t.space, t.arch, t.head, t.input_hw)
    info = target_info(t, prof)
    if args.json:
        print(dumps_json(info, indent=None))
    else:
        _print_target(t, info, prof)
    return 0
