"""Demo phase 4: choose models along the front, extract them with BN recalibration (the search's
calibration settings), evaluate them and the hrnet point on the held-out test split, export the main
pick to ONNX with a parity check, and draw every architecture."""
from __future__ import annotations

import os
import shutil

from scalenas.space import Arch
from scalenas.deploy import model_dir as md
from scalenas.deploy.arch_files import write_arch_file
from scalenas.deploy.export import export_model_dir
from scalenas.deploy.extract import ExtractOptions, extract
from scalenas.deploy.runtime import build_model_task
from scalenas.search.pareto_doc import load_run
from scalenas.tasks.base import build_task
from scalenas.space.heads import HeadSpec
from scalenas.viz.arch_drawing import save_arch_drawing


def choose_picks(records: list[dict], hrnet_gflops: float) -> list[tuple[str, dict]]:
    """Searched (non-reference, feasible) archs: the best at most the hrnet point's GFLOPs, the best at
    most 3/4 of them, and the best overall; duplicates removed."""
    cands = [r for r in records if r.get("feasible", True) and r.get("kind") != "reference"]
    picks = []
    for name, cap in (("best<=hrnet", hrnet_gflops), ("best<=0.75hrnet", 0.75 * hrnet_gflops), ("best", None)):
        ok = [r for r in cands if cap is None or r["gflops_2p30"] <= cap + 1e-12]
        if ok:
            best = max(ok, key=lambda r: (r["metric"], -r["gflops_2p30"], r["hash"]))
            if best["hash"] not in {p[1]["hash"] for p in picks}:
                picks.append((name, best))
    return picks


def deploy_models(kind: str, tdir: str, ckpt_path: str, search_dir: str, search_cfg: dict, cfg) -> list[dict]:

    doc, records = load_run(search_dir)
    space = cfg.space.build()
    by_hash = {r["hash"]: r for r in records}
    hr = doc["references"]["hrnet"]
    pose_rule = build_task(cfg.task).head.pose_rule
    hr_arch = space.hrnet(pose_rule=pose_rule)
    chosen = [(name, r) for name, r in choose_picks(records, hr["gflops_2p30"])]
    chosen.append(("hrnet", {**by_hash[hr["hash"]], "arch": hr_arch.to_dict()}))
    models = []
    arch_dir = os.path.join(tdir, "archs")
    os.makedirs(arch_dir, exist_ok=True)
    for name, rec in chosen:
        arch = Arch.from_dict(rec["arch"])
        arch_file = os.path.join(arch_dir, f"{name.replace('<=', '_le_')}.json")
        origin = ({"kind": "space", "name": "hrnet", "width": space.width, "pose_rule": pose_rule,
                   "config": None} if name == "hrnet" else
                  {"kind": "search", "run_dir": os.path.abspath(search_dir), "record": rec.get("hash")})
        write_arch_file(arch_file, arch, origin)  # the model card then says where each arch came from
        mdir = os.path.join(tdir, "models", name.replace("<=", "_le_"))
        res = extract(ExtractOptions(checkpoint=ckpt_path, out=mdir, arch_file=arch_file, calibrate=True,
                                     calib_images=search_cfg["calib_images"],
                                     calib_batch_size=search_cfg["calib_batch_size"], eval_split="test",
                                     overwrite=True, name=f"demo-{kind}-{name}"), log=lambda m: None)
        card = res["card"]
        head = HeadSpec.from_dict(card["head"])
        drawing = save_arch_drawing(os.path.join(tdir, f"arch_{name.replace('<=', '_le_')}.png"), space, arch, head,
                                    card["input_hw"], title=f"{kind}: {name} ({arch.hash})")
        models.append({"name": name, "hash": arch.hash, "reference": name == "hrnet", "model_dir": mdir,
                       "arch_file": arch_file, "params": card["params"],
                       "gflops_2p30": card["flops"]["gflops_2p30"], "gflops_1e9": card["flops"]["gflops_1e9"],
                       "input_hw": card["input_hw"],
                       "latency_ms": (card.get("latency") or {}).get("median_ms"),
                       "metric_name": card["metric"]["name"] if card.get("metric") else rec.get("metric_name"),
                       "metric_test": card["metric"]["value"] if card.get("metric") else None,
                       "metric_search": rec["metric"], "drawing": drawing})
        print(f"[demo] {name}: {arch.hash}, {card['flops']['gflops_2p30']:.4f} GFLOPs (MACs/2^30), "
              f"test {models[-1]['metric_name']} {models[-1]['metric_test']:.2f}", flush=True)
    # ONNX export of the main pick (the best searched model within the hrnet point's FLOPs, else the first)
    main = next((m for m in models if m["name"] == "best<=hrnet"), models[0])
    exp = export_model_dir(main["model_dir"], "onnx", log=lambda m: None)
    main["onnx"] = {"path": exp["path"], "parity_max_abs": float(exp["parity"].max_abs)}
    print(f"[demo] exported {main['name']} to ONNX; parity max abs diff {main['onnx']['parity_max_abs']:.2e}",
          flush=True)
    # prediction overlays of the main pick on test images
    main["overlays"] = _overlays(main["model_dir"], os.path.join(tdir, "overlays"))
    shutil.copyfile(os.path.join(search_dir, "pareto.png"), os.path.join(tdir, "pareto.png"))
    return models


def _overlays(model_dir: str, out_dir: str) -> list[str]:
    lm = md.load_model(model_dir)
    task = build_model_task(lm.meta, model_dir, need_data=True)
    n = getattr(task.cfg, "vis_images", 4) or 4
    task.evaluate(lm.net, "test", device="cpu", max_images=n, out_dir=out_dir)
    # segmentation writes its overlays into out_dir, the pose tasks into out_dir/vis
    return sorted(os.path.join(d, f) for d, _, files in os.walk(out_dir) for f in files if f.endswith(".png"))
