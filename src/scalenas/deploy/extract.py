"""From a supernet checkpoint and an arch (a file, or picked from a search run) to a model dir.

Steps: load the supernet; set the arch; recalibrate BN (on by default, with the search run's
calibration settings when the arch is picked from a run, so the metric matches what the search
recorded); extract the static ScaleNet; optionally fine-tune (then recalibrate on the final weights);
measure latency; optionally evaluate; write the model dir atomically.

Reproducibility: calibration uses the search's Calibrator with the run's settings (images, batch
size, seed) in channels_last, and evaluation calls ``task.evaluate`` in channels_last, both exactly as
``scalenas.search.evaluator.Evaluator`` does; the extracted ScaleNet runs the same operators in the
same order as the supernet path, so ``scalenas eval`` gives the number the search recorded.

``--pick`` delegates the choice to ``scalenas.search.runner.pick`` (best metric among the run's
feasible evaluated archs under the budgets, ties to the cheaper), the rule ``scalenas search pick``
uses, and takes the run's task config (with the search's task overrides) as the one it evaluated.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch

from scalenas.deploy import model_dir as md
from scalenas.deploy.arch_files import arch_file_origin
from scalenas.deploy.card import build_card, render_markdown
from scalenas.deploy.runtime import measure_latency, normalisation_of, portable_task
from scalenas.errors import ScaleNASError
from scalenas.space.arch import Arch

GFLOPS_KEYS = {"2p30": "gflops_2p30", "1e9": "gflops_1e9"}


@dataclass
class ExtractOptions:
    checkpoint: str
    out: str
    arch_file: str | None = None
    pick_run: str | None = None
    max_gflops: float | None = None
    gflops_convention: str = "2p30"
    max_latency_ms: float | None = None
    max_params_m: float | None = None
    calibrate: bool = True
    calib_images: int | None = None
    calib_batch_size: int | None = None
    calib_seed: int | None = None
    finetune_epochs: int = 0
    finetune_lr: float | None = None
    eval_split: str | None = None
    eval_max_images: int | None = None
    input_hw: tuple[int, int] | None = None
    latency_iters: int = 10
    device: str = "cpu"
    data: list[str] = field(default_factory=list)
    overwrite: bool = False
    name: str | None = None
    seed: int = 0


# ------------------------------------------------------------------------------------- search runs
def read_run_config(run_dir: str) -> dict:
    """A search run's resolved ``config.yaml``: supernet, task (with the search's task overrides),
    input_hw, metric_name and the ``search`` section (calibration and evaluation settings)."""
    from scalenas.config import load_yaml

    if not os.path.isdir(run_dir):
        raise ScaleNASError(f"{run_dir}: search run directory not found")
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise ScaleNASError(f"{path}: not found; is {run_dir} a search run ('scalenas search')?")
    cfg = load_yaml(path)
    if not isinstance(cfg.get("search"), dict):
        raise ScaleNASError(f"{path}: no 'search' section")
    return cfg


def pick_from_run(run_dir: str, max_gflops: float | None, max_latency_ms: float | None = None,
                  max_params_m: float | None = None, convention: str = "2p30") -> tuple[Arch, dict, dict]:
    """(arch, its evaluation record, run config) for the best metric under the budgets.

    The choice is the search package's own ``scalenas.search.runner.pick`` (one rule for ``scalenas
    search pick`` and ``scalenas extract --pick``): every feasible evaluated arch of the run is a
    candidate, ties go to the cheaper. It takes GFLOPs as MACs/2^30; a 1e9-convention budget is
    converted."""
    from scalenas.search.runner import pick

    if convention not in GFLOPS_KEYS:
        raise ScaleNASError(f"--gflops-convention {convention!r}: use 2p30 (MACs/2^30) or 1e9 (MACs/1e9)")
    cfg = read_run_config(run_dir)
    budget = max_gflops * 1e9 / 2**30 if (max_gflops is not None and convention == "1e9") else max_gflops
    rec = pick(run_dir, max_gflops=budget, max_params_m=max_params_m, max_latency_ms=max_latency_ms)
    arch = Arch.from_dict(rec["arch"], where=f"{run_dir} record {rec.get('hash')}")
    if rec.get("hash") and rec["hash"] != arch.hash:
        raise ScaleNASError(f"{run_dir}: record hash {rec['hash']} does not match its arch ({arch.hash}); "
                            f"the run files were edited")
    return arch, rec, cfg


# -------------------------------------------------------------------------------------- extraction
def default_input_hw(task, head) -> tuple[int, int]:
    """The size FLOPs and latency are given at when none is asked for: the search's own rule (the
    task's input / crop / image size), else the usual size for the head."""
    if task is not None:
        try:
            return task.input_hw
        except ScaleNASError:
            pass
    return head.default_input_hw


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ScaleNASError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def calibration_settings(opts: ExtractOptions, search: dict | None) -> dict:
    """Explicit options win; then the search run's settings; then the search config's defaults."""
    from scalenas.search.config import SearchCfg

    d = SearchCfg()
    search = search or {}
    out, src = {}, set()
    for key, opt, skey in (("num_images", opts.calib_images, "calib_images"),
                           ("batch_size", opts.calib_batch_size, "calib_batch_size"),
                           ("seed", opts.calib_seed, "calib_seed")):
        if opt is not None:
            value, origin = opt, "command line"
        elif search.get(skey) is not None:
            value, origin = search[skey], "search run config"
        else:
            value, origin = getattr(d, skey), "defaults"
        out[key] = int(value)
        src.add(origin)
    out["source"] = " + ".join(sorted(src))
    return out


def make_calibrator(task, calib: dict, device):
    """The search evaluator's calibrator (same cached batches, device and memory format), so a
    subnet calibrated here has the statistics it had when the search scored it."""
    from scalenas.search.calibrate import Calibrator

    cal = Calibrator(task, calib["num_images"], calib["batch_size"], calib["seed"], device, channels_last=True)
    calib["num_images"] = cal.num_images  # the train split may hold fewer images than asked for
    return cal


@torch.no_grad()
def recalibrate(model: torch.nn.Module, calibrator) -> int:
    """Recalibrate a supernet with its arch active, or a ScaleNet, in channels_last as the search
    evaluator runs it; the model is left in contiguous format."""
    model.to(memory_format=torch.channels_last)
    try:
        return calibrator.calibrate(model)
    finally:
        model.to(memory_format=torch.contiguous_format)


@torch.no_grad()
def evaluate_net(net: torch.nn.Module, task, split: str, device, max_images: int | None = None) -> dict:
    """``task.evaluate`` exactly as the search evaluator calls it (fp32, channels_last, eval mode), so a
    model dir reproduces the metric the search recorded for its arch."""
    net.to(device).to(memory_format=torch.channels_last)
    try:
        return task.evaluate(net, split, device, max_images)
    finally:
        net.to(memory_format=torch.contiguous_format)


def extract(opts: ExtractOptions, log: Callable[[str], None] = print) -> dict:
    """Run the whole extraction; returns {"model_dir", "meta", "card"}."""
    from scalenas.deploy.runtime import apply_task_overrides
    from scalenas.train.checkpoint import load_supernet
    from scalenas.tasks.base import build_task
    from scalenas.utils.io import package_versions

    out_dir = os.path.abspath(opts.out)
    md.check_target(out_dir, opts.overwrite)  # fail before any expensive work
    if (opts.arch_file is None) == (opts.pick_run is None):
        raise ScaleNASError("give exactly one of ARCH.json or --pick RUN_DIR")
    device = resolve_device(opts.device)

    supernet, ck = load_supernet(opts.checkpoint, map_location=device)
    meta_ck = ck["meta"]
    head = supernet.head_spec
    rec, run_cfg, search = None, None, None
    task_cfg = dict(meta_ck["task"])
    if opts.pick_run:
        arch, rec, run_cfg = pick_from_run(opts.pick_run, opts.max_gflops, opts.max_latency_ms, opts.max_params_m,
                                           opts.gflops_convention)
        search = run_cfg["search"]
        task_cfg = dict(run_cfg.get("task") or task_cfg)  # with the search's task overrides, as it evaluated
        sn = run_cfg.get("supernet")
        if sn and os.path.abspath(sn) != os.path.abspath(opts.checkpoint):
            log(f"warning: the search run scored archs on supernet {sn}, not {opts.checkpoint}; its recorded "
                f"metric will not be reproduced")
        log(f"picked {arch.hash} from {opts.pick_run}: {run_cfg.get('metric_name', 'metric')} {rec.get('metric')}, "
            f"{rec.get('gflops_2p30')} GFLOPs (MACs/2^30), latency {rec.get('latency_ms')} ms")
        origin = {"kind": "search", "run_dir": os.path.abspath(opts.pick_run), "record": rec.get("hash")}
    else:
        arch = Arch.load(opts.arch_file)
        supernet.space.validate(arch, pose_rule=head.pose_rule, where=opts.arch_file)
        origin = arch_file_origin(opts.arch_file)
    supernet.set_active(arch)  # validates the arch against the supernet's space and head

    task_cfg = apply_task_overrides(task_cfg, opts.data)
    need_task = opts.calibrate or opts.finetune_epochs > 0 or opts.eval_split is not None
    task = None
    try:
        task = build_task(task_cfg)
    except ScaleNASError as e:
        if need_task:
            raise ScaleNASError(f"task of {opts.checkpoint}: {e} (point to the data with --data ROOT or "
                                f"--data KEY=VALUE, or pass --no-calibrate)") from None
        log(f"warning: cannot build the task ({e}); predict will need the dataset's task config")
    if task is not None and task.head != head:
        raise ScaleNASError(f"task {task_cfg.get('name')}: its head {task.head.to_dict()} does not match the "
                            f"supernet's {head.to_dict()} ({opts.checkpoint})")

    calib = calibration_settings(opts, search) if opts.calibrate else None
    if calib is not None and search and calib["source"] != "search run config":
        log("warning: calibration settings differ from the search run's; the metric may not match its record")
    calibrator = None
    if calib is not None:
        calibrator = make_calibrator(task, calib, device)
        supernet.to(device)
        n_bn = recalibrate(supernet, calibrator)
        log(f"recalibrated {n_bn} BN layers on {calib['num_images']} images (batch {calib['batch_size']}, "
            f"seed {calib['seed']})")
    net = supernet.extract(arch).eval()
    del supernet

    ft = None
    if opts.finetune_epochs > 0:
        from scalenas.deploy.finetune import finetune

        ft = finetune(net, task, (ck.get("config") or {}).get("train"), opts.finetune_epochs, device, opts.seed,
                      opts.finetune_lr, log)
        if calibrator is not None:  # statistics of the final weights, estimated exactly as before
            recalibrate(net, calibrator)
            ft["recalibrated"] = True
    del calibrator

    metric = None
    max_images = opts.eval_max_images
    if max_images is None and search and opts.eval_split == search.get("eval_split"):
        max_images = search.get("eval_max_images")  # the search scored on this many images of the split
    if opts.eval_split:
        metrics = evaluate_net(net, task, opts.eval_split, device, max_images)
        metric = {"name": task.metric_name, "value": float(metrics[task.metric_name]), "split": opts.eval_split,
                  "calibrated": calib is not None, "max_images": max_images,
                  "all": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}}
        log(f"{task.metric_name} on {opts.eval_split}: {metric['value']!r}")

    if opts.input_hw:
        input_hw = tuple(opts.input_hw)
    elif run_cfg and run_cfg.get("input_hw"):
        input_hw = tuple(run_cfg["input_hw"])
    else:
        input_hw = default_input_hw(task, head)
    latency = None
    if opts.latency_iters > 0:
        latency = measure_latency(net, input_hw, 1, opts.latency_iters, device=device)
        log(f"latency: {latency['median_ms']:.2f} ms median at {input_hw[0]}x{input_hw[1]} on {latency['device']}")

    net = net.cpu().eval()
    wbytes = md.weights_bytes(net, {"format": md.MODEL_FORMAT, "arch_hash": arch.hash})
    files: dict[str, bytes] = {md.WEIGHTS_FILE: wbytes}
    predict_cfg, extra = portable_task(task, task_cfg) if task is not None else (None, {})
    files.update(extra)
    search_card = None
    if rec is not None:
        search_card = {"run_dir": os.path.abspath(opts.pick_run), "metric": rec.get("metric"),
                       "metric_name": run_cfg.get("metric_name"), "split": search.get("eval_split"),
                       "max_images": search.get("eval_max_images"),
                       "budget": {"max_gflops": opts.max_gflops, "gflops_convention": opts.gflops_convention,
                                  "max_params_m": opts.max_params_m, "max_latency_ms": opts.max_latency_ms},
                       "record": {k: v for k, v in rec.items() if k not in ("arch", "metrics")}}
    meta = {
        "format": md.MODEL_FORMAT,
        "name": opts.name or os.path.basename(out_dir),
        "arch": arch.to_dict(),
        "arch_hash": arch.hash,
        "space": net.space.to_dict(),
        "head": head.to_dict(),
        "task": task_cfg,
        "predict_task": predict_cfg,
        "input_hw": [int(input_hw[0]), int(input_hw[1])],
        "normalisation": normalisation_of(task_cfg.get("name", "")),
        "outputs": output_names(head),
        "bn_momentum": float(meta_ck.get("bn_momentum", 0.1)),
        "calibration": {"enabled": calib is not None, **(calib or {}),
                        "after_finetune": bool(ft and ft.get("recalibrated"))},
        "finetune": ft,
        "metric": metric,
        "search": search_card,
        "weights": {"file": md.WEIGHTS_FILE, "sha256": hashlib.sha256(wbytes).hexdigest(),
                    "tensors": len(net.state_dict())},
        "provenance": {
            "supernet_checkpoint": os.path.abspath(opts.checkpoint),
            "supernet_sha256": md.sha256_file(opts.checkpoint),
            "supernet_step": ck.get("step"),
            "search_run": os.path.abspath(opts.pick_run) if opts.pick_run else None,
            "arch_file": os.path.abspath(opts.arch_file) if opts.arch_file else None,
            "arch_origin": origin,
            "arch_hash": arch.hash,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv) if sys.argv else None,
            "versions": package_versions(),
        },
    }
    card = build_card(meta, net.space, arch, head, latency, metric, search_card)
    files[md.META_FILE] = md.json_bytes(meta)
    files[md.CARD_JSON] = md.json_bytes(card)
    files[md.CARD_MD] = render_markdown(card).encode("utf-8")
    md.write_model_dir(out_dir, files, opts.overwrite)
    log(f"wrote {out_dir} ({card['params'] / 1e6:.3f}M params, {card['flops']['gflops_2p30']:.4f} GFLOPs "
        f"MACs/2^30 at {input_hw[0]}x{input_hw[1]})")
    return {"model_dir": out_dir, "meta": meta, "card": card}


def output_names(head) -> list[dict]:
    if head.kind == "seg":
        return [{"name": "logits", "shape": ["B", head.num_classes, "H/4", "W/4"]}]
    if head.kind == "pose-topdown":
        return [{"name": "heatmaps", "shape": ["B", head.num_joints, "H/4", "W/4"]}]
    return [{"name": "heatmaps_tags", "shape": ["B", 2 * head.num_joints, "H/4", "W/4"]},
            {"name": "heatmaps_half", "shape": ["B", head.num_joints, "H/2", "W/2"]}]
