"""Model cards: ``card.json`` (data) and ``MODEL_CARD.md`` (the same figures for people).

Every figure says how it was obtained: FLOPs name their convention, latency where and how it ran,
the metric on which split and after which calibration, and the provenance pins the supernet
checkpoint by SHA-256.
"""
from __future__ import annotations

import datetime as _dt

from scalenas.deploy.arch_files import describe_origin
from scalenas.space.hrnas import HRNASSpace
from scalenas.space.hrnas_profile import hrnas_profile
from scalenas.space.profile import profile

CARD_FORMAT = "scalenas.card/1"
FLOPS_CONVENTION = ("multiply-adds of convolutions and linear layers that run (BN, ReLU, upsampling and "
                    "additions not counted); gflops_2p30 = MACs / 2^30 (ScaleNAS / HRNet papers), "
                    "gflops_1e9 = MACs / 1e9 (HigherHRNet); effective: only what this network holds and runs")
PUBLISHED_NOTE = ("as the HRNet-family papers count: also the blocks and fusion edges of the arch whose results never "
                  "reach the head (a pose net's last module after branch 0's last fusion), which this network omits")


def flops_entry(space, arch, head, input_hw) -> dict:
    """The model's own (effective) figures, and the published convention's, which also counts the
    compute of a pose net's last module that never reaches the head (``space.liveness``)."""
    if isinstance(space, HRNASSpace):  # its network runs every block: effective = published
        p = hrnas_profile(space, arch, head, tuple(input_hw))
    else:
        p = profile(space, arch, head, tuple(input_hw))
    return {"params": p.effective_params, "params_m": round(p.effective_params_m, 4), "macs": p.effective_macs,
            "gflops_2p30": round(p.effective_gflops_2p30, 4), "gflops_1e9": round(p.effective_gflops_1e9, 4),
            "input_hw": [int(input_hw[0]), int(input_hw[1])], "convention": FLOPS_CONVENTION,
            "published_convention": {"params": p.params, "macs": p.macs, "gflops_2p30": round(p.gflops_2p30, 4),
                                     "gflops_1e9": round(p.gflops_1e9, 4), "note": PUBLISHED_NOTE}}


def build_card(meta: dict, space, arch, head, latency: dict | None, metric: dict | None,
               search: dict | None) -> dict:
    fl = flops_entry(space, arch, head, meta["input_hw"])
    return {
        "format": CARD_FORMAT,
        "name": meta.get("name"),
        "created": meta.get("provenance", {}).get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "task": meta["task"].get("name"),
        "head": head.to_dict(),
        "arch_hash": arch.hash,
        **_structure(space, arch),
        "input_hw": list(meta["input_hw"]),
        "params": fl["params"],
        "flops": fl,
        "latency": latency,
        "metric": metric,
        "search": search,
        "calibration": meta.get("calibration"),
        "finetune": meta.get("finetune"),
        "normalisation": meta.get("normalisation"),
        "provenance": meta.get("provenance"),
    }


def _structure(space, arch) -> dict:
    """What the card says of the arch's shape: depths and fusion edges (ScaleNAS), hidden channels (hrnas)."""
    if isinstance(space, HRNASSpace):
        blocks = arch.blocks()
        return {"family": "hrnas", "hidden_channels": arch.total_hidden(),
                "paths": sum(h > 0 for b in blocks for h in b.hidden), "blocks": len(blocks)}
    return {"depths": arch.depth_string(), "fusion_edges": arch.num_edges()}


def arch_origin(provenance: dict) -> dict | None:
    """The recorded origin; model dirs written before origins were recorded have only the run or file."""
    if provenance.get("arch_origin"):
        return provenance["arch_origin"]
    if provenance.get("search_run"):
        return {"kind": "search", "run_dir": provenance["search_run"]}
    if provenance.get("arch_file"):
        return {"kind": "file", "file": provenance["arch_file"]}
    return None


def _fmt(v, nd=4):
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _published_rows(fl: dict, h: int, w: int) -> list[str]:
    """The published convention's figures, where they differ from the model's own (pose nets)."""
    pub = fl.get("published_convention")
    if not pub or (pub["params"], pub["macs"]) == (fl["params"], fl["macs"]):
        return []
    return [f"| params, published convention (dead compute counted) | {pub['params'] / 1e6:.3f} M "
            f"({pub['params']:,}) |",
            f"| GFLOPs, MACs/2^30, published convention at {h}x{w} | {pub['gflops_2p30']:.4f} |"]


def _structure_rows(card: dict) -> list[str]:
    if card.get("family") == "hrnas":
        return [f"| hidden channels kept (all blocks) | {card['hidden_channels']:,} |",
                f"| kernel paths kept | {card['paths']} (in {card['blocks']} blocks) |"]
    return [f"| depths (module x branch) | `{card['depths']}` |", f"| active fusion edges | {card['fusion_edges']} |"]


def render_markdown(card: dict) -> str:
    fl = card["flops"]
    h, w = card["input_hw"]
    hrnas = card.get("family") == "hrnas"
    what = ("A static HR-NAS network shrunk during training (`scalenas shrink`)" if hrnas
            else "A static ScaleNet extracted from a ScaleNAS supernet")
    lines = [f"# {card.get('name') or 'ScaleNet'} (arch {card['arch_hash']})", "",
             f"{what} for the **{card['task']}** task ({card['head']['kind']} head).", "",
             "## Size", "",
             "| figure | value |", "|---|---|",
             f"| params | {fl['params'] / 1e6:.3f} M ({fl['params']:,}) |",
             f"| GFLOPs, MACs/2^30 (ScaleNAS/HRNet) at {h}x{w} | {fl['gflops_2p30']:.4f} |",
             f"| GFLOPs, MACs/1e9 (HigherHRNet) at {h}x{w} | {fl['gflops_1e9']:.4f} |",
             *_published_rows(fl, h, w),
             *_structure_rows(card), "",
             f"FLOPs convention: {fl['convention']}.", ""]
    lat = card.get("latency")
    lines += ["## Latency", ""]
    if lat:
        lines += [f"{lat['median_ms']:.2f} ms median (min {lat['min_ms']:.2f} ms, {lat['iters']} runs) for batch "
                  f"{lat['batch']} at {lat['input_hw'][0]}x{lat['input_hw'][1]}, {lat['backend']}, "
                  f"{lat['threads']} threads, on {lat['device']} (torch {lat['torch']}).", ""]
    else:
        lines += ["Not measured.", ""]
    lines += ["## Metric", ""]
    m = card.get("metric")
    if m:
        lines += [f"{m['name']} = {_fmt(m['value'])} on split `{m['split']}`"
                  + (" after BN recalibration" if m.get("calibrated") else " (no BN recalibration)")
                  + (", after fine-tuning" if card.get("finetune") else "") + ".", ""]
    else:
        lines += ["Not evaluated at extraction (run `scalenas eval MODEL_DIR --split val`).", ""]
    s = card.get("search")
    if s:
        lines += [f"The search ({s.get('run_dir')}) recorded {s.get('metric_name', 'metric')} = "
                  f"{_fmt(s.get('metric'))} for this arch on split `{s.get('split')}`.", ""]
    c = card.get("calibration") or {}
    lines += ["## BN calibration", ""]
    if c.get("enabled"):
        lines += [f"Running statistics re-estimated on {c['num_images']} training images (batches of "
                  f"{c['batch_size']}, seed {c['seed']}, training augmentation; settings from {c['source']}).", ""]
    else:
        lines += ["Off: the supernet's shared BN statistics are used as they are.", ""]
    ft = card.get("finetune")
    if ft:
        lines += ["## Fine-tuning", "",
                  f"{ft['epochs']} epoch(s), {ft['steps']} steps, {ft['optimizer']} lr {ft['lr']}, "
                  f"final loss {_fmt(ft.get('final_loss'))}.", ""]
    n = card.get("normalisation") or {}
    lines += ["## Input", "",
              f"Float (B, 3, H, W) with H and W multiples of 32 (any batch and size: the exported graphs are "
              f"dynamic). Normalisation: {n.get('kind')} ({n.get('input', '')})"
              + (f", mean {n['mean']}, std {n['std']}" if 'mean' in n else "") + ".", ""]
    p = card.get("provenance") or {}
    lines += ["## Provenance", "",
              f"- {'shrink run' if card.get('family') == 'hrnas' else 'supernet'} checkpoint: "
              f"`{p.get('supernet_checkpoint')}` (SHA-256 `{p.get('supernet_sha256')}`, "
              f"step {p.get('supernet_step')})",
              f"- arch: {describe_origin(arch_origin(p))}",
              f"- arch hash: `{card['arch_hash']}`",
              f"- created: {card.get('created')}",
              "- packages: " + ", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items()), ""]
    return "\n".join(lines)
