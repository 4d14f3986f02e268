"""From a supernet checkpoint and an arch (a file, or picked from a search run) to a model dir.

Stages (``extract`` calls them in order): ``choose`` the arch (a file, or picked from a run) and set
it active; ``calibrate`` BN (on by default, with the search run's calibration settings when the arch
is picked from a run, so the metric matches what the search recorded) and extract the static
ScaleNet; ``fine_tune`` (optional, then recalibrate on the final weights); ``evaluate`` (optional)
and ``measure`` latency; ``write`` the model dir atomically.

Reproducibility: calibration uses the search's Calibrator with the run's settings (images, batch
size, seed) in channels_last, and evaluation calls ``task.evaluate`` in channels_last, both exactly as
``scalenas.search.evaluator.Evaluator`` does; the extracted ScaleNet runs the same operators in the
same order as the supernet path, so ``scalenas eval`` gives the number the search recorded.

``--pick`` delegates the choice to ``scalenas.search.pareto_doc.pick`` (best metric among the run's
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

from scalenas.config import load_config, load_yaml, validate_section
from scalenas.deploy import model_dir as md
from scalenas.deploy.arch_files import arch_file_origin
from scalenas.deploy.card import build_card, render_markdown
from scalenas.deploy.finetune import finetune
from scalenas.deploy.runtime import (
    apply_task_overrides,
    measure_latency,
    normalisation_of,
    portable_task,
)
from scalenas.errors import ScaleNASError
from scalenas.search.calibrate import Calibrator
from scalenas.search.config import SearchCfg
from scalenas.search.pareto_doc import pick
from scalenas.space.arch import Arch
from scalenas.tasks.base import build_task
from scalenas.train.checkpoint import load_supernet
from scalenas.train.config import TrainCfg
from scalenas.utils.io import package_versions
from scalenas.utils.runtime import resolve_device

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
    #: a YAML whose ``train`` section is the fine-tuning recipe (configs/finetune/scalenet_p_20ep.yaml) instead of
    #: the supernet run's; its ``train.epochs`` is the length unless finetune_epochs is given
    finetune_config: str | None = None
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

    The choice is the search package's own ``scalenas.search.pareto_doc.pick`` (one rule for ``scalenas
    search pick`` and ``scalenas extract --pick``): every feasible evaluated arch of the run is a
    candidate, ties go to the cheaper. It takes GFLOPs as MACs/2^30; a 1e9-convention budget is
    converted."""
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


def calibration_settings(opts: ExtractOptions, search: dict | None) -> dict:
    """Explicit options win; then the search run's settings; then the search config's defaults."""
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


@dataclass
class Choice:
    """The arch to extract, where it came from, and the task config it is calibrated and evaluated on
    (the search's, with its task overrides, when picked from a run; then ``--data``)."""

    arch: Arch
    origin: dict
    task_cfg: dict
    record: dict | None = None  # its evaluation record, when picked from a search run
    run_cfg: dict | None = None  # that run's config.yaml

    @property
    def search(self) -> dict | None:
        return self.run_cfg["search"] if self.run_cfg else None


def extract(opts: ExtractOptions, log: Callable[[str], None] = print, ck: dict | None = None) -> dict:
    """Run the whole extraction: choose, calibrate, fine-tune, evaluate, write; returns
    {"model_dir", "meta", "card"} (``ck``: the checkpoint, when the caller has loaded it already)."""
    out_dir, recipe = check_before_loading(opts)
    if (opts.arch_file is None) == (opts.pick_run is None):
        raise ScaleNASError("give exactly one of ARCH.json or --pick RUN_DIR")
    device = resolve_device(opts.device)
    supernet, ck = load_supernet(opts.checkpoint, map_location=device, ck=ck)
    choice = choose(opts, supernet, ck["meta"], log)
    task = task_of(opts, choice.task_cfg, supernet.head_spec, log)
    calib, calibrator = calibrate(opts, supernet, task, device, log, choice.search)
    net = supernet.extract(choice.arch).eval()
    del supernet
    ft = fine_tune(opts, net, task, recipe or (ck.get("config") or {}).get("train"), calibrator, device, log)
    del calibrator
    metric = evaluate(opts, net, task, choice, calib is not None, device, log)
    input_hw, latency = measure(opts, net, task, choice, device, log)
    return write(opts, out_dir, net, choice, task, ck, calib=calib, ft=ft, metric=metric, input_hw=input_hw,
                 latency=latency, log=log)


def check_before_loading(opts: ExtractOptions) -> tuple[str, dict | None]:
    """(the model dir's absolute path, the fine-tuning recipe): what fails without loading anything,
    checked first so that a bad option costs no checkpoint load."""
    out_dir = os.path.abspath(opts.out)
    md.check_target(out_dir, opts.overwrite)
    return out_dir, finetune_recipe(opts.finetune_config) if opts.finetune_config else None


def choose(opts: ExtractOptions, supernet, ck_meta: dict, log) -> Choice:
    """The arch (from ARCH.json, or picked from a search run under the budgets), set active on the
    supernet, which checks it against the supernet's space and head."""
    head = supernet.head_spec
    task_cfg = dict(ck_meta["task"])
    if opts.pick_run:
        arch, rec, run_cfg = pick_from_run(opts.pick_run, opts.max_gflops, opts.max_latency_ms, opts.max_params_m,
                                           opts.gflops_convention)
        sn = run_cfg.get("supernet")
        if sn and os.path.abspath(sn) != os.path.abspath(opts.checkpoint):
            log(f"warning: the search run scored archs on supernet {sn}, not {opts.checkpoint}; its recorded "
                f"metric will not be reproduced")
        log(f"picked {arch.hash} from {opts.pick_run}: {run_cfg.get('metric_name', 'metric')} {rec.get('metric')}, "
            f"{rec.get('gflops_2p30')} GFLOPs (MACs/2^30), latency {rec.get('latency_ms')} ms")
        origin = {"kind": "search", "run_dir": os.path.abspath(opts.pick_run), "record": rec.get("hash")}
        # with the search's task overrides, as it evaluated
        choice = Choice(arch, origin, dict(run_cfg.get("task") or task_cfg), rec, run_cfg)
    else:
        arch = Arch.load(opts.arch_file)
        supernet.space.validate(arch, pose_rule=head.pose_rule, where=opts.arch_file)
        choice = Choice(arch, arch_file_origin(opts.arch_file), task_cfg)
    supernet.set_active(arch)  # validates the arch against the supernet's space and head
    choice.task_cfg = apply_task_overrides(choice.task_cfg, opts.data)
    return choice


def task_of(opts: ExtractOptions, task_cfg: dict, head, log):
    """The task, or None when it cannot be built and no stage needs it (the model dir then lacks the
    predict task config)."""
    need_task = opts.calibrate or _finetunes(opts) or opts.eval_split is not None
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
    return task


def calibrate(opts: ExtractOptions, net, task, device, log, search: dict | None = None) -> tuple[dict | None, object]:
    """Recalibrate the BN statistics of ``net`` (a supernet's active subnet, or a shrunk network) unless
    ``--no-calibrate``, with the settings of ``calibration_settings`` (``search``: the search run's section,
    when the net came from one); returns the settings used and the calibrator, which fine-tuning reuses."""
    if not opts.calibrate:
        return None, None
    calib = calibration_settings(opts, search)
    if search and calib["source"] != "search run config":
        log("warning: calibration settings differ from the search run's; the metric may not match its record")
    calibrator = make_calibrator(task, calib, device)
    net.to(device)
    n_bn = recalibrate(net, calibrator)
    log(f"recalibrated {n_bn} BN layers on {calib['num_images']} images (batch {calib['batch_size']}, "
        f"seed {calib['seed']})")
    return calib, calibrator


def _finetunes(opts: ExtractOptions) -> bool:
    return opts.finetune_epochs > 0 or opts.finetune_config is not None


def fine_tune(opts: ExtractOptions, net, task, train_cfg: dict | None, calibrator, device, log) -> dict | None:
    """Fine-tune the extracted net when asked (with the supernet run's ``train`` recipe, or that of
    ``--finetune CONFIG``), then recalibrate it on its final weights."""
    if not _finetunes(opts):
        return None
    ft = finetune(net, task, train_cfg, opts.finetune_epochs or None, device, opts.seed, opts.finetune_lr, log)
    if opts.finetune_config is not None:
        ft["config"] = os.path.abspath(opts.finetune_config)
    if calibrator is not None:  # statistics of the final weights, estimated exactly as before
        recalibrate(net, calibrator)
        ft["recalibrated"] = True
    return ft


def finetune_recipe(path: str) -> dict:
    """The ``train`` section of a fine-tuning config (``_base_`` and all, as ``load_config`` reads it),
    validated (``extract`` reads it before any model is loaded)."""
    cfg = load_config(path)
    if not isinstance(cfg.get("train"), dict):
        raise ScaleNASError(f"{path}: a fine-tuning config needs a 'train' section (epochs, batch_size, optimizer, "
                            f"schedule)")
    try:
        validate_section(TrainCfg, cfg["train"], "train")
    except ScaleNASError as e:
        raise ScaleNASError(f"{path}: {e}") from None
    return cfg["train"]


def evaluate(opts: ExtractOptions, net, task, choice: Choice, calibrated: bool, device, log) -> dict | None:
    """The task metric on ``--eval-split`` (on as many images as the search scored when it is the
    search's split), or None."""
    if not opts.eval_split:
        return None
    max_images = opts.eval_max_images
    search = choice.search
    if max_images is None and search and opts.eval_split == search.get("eval_split"):
        max_images = search.get("eval_max_images")  # the search scored on this many images of the split
    metrics = evaluate_net(net, task, opts.eval_split, device, max_images)
    metric = {"name": task.metric_name, "value": float(metrics[task.metric_name]), "split": opts.eval_split,
              "calibrated": calibrated, "max_images": max_images,
              "all": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}}
    log(f"{task.metric_name} on {opts.eval_split}: {metric['value']!r}")
    return metric


def measure(opts: ExtractOptions, net, task, choice: Choice, device, log) -> tuple[tuple[int, int], dict | None]:
    """The input size the card's costs are given at (``--input``, else the search's, else the task's),
    and the latency there (None with ``--latency-iters 0``)."""
    if opts.input_hw:
        input_hw = tuple(opts.input_hw)
    elif choice.run_cfg and choice.run_cfg.get("input_hw"):
        input_hw = tuple(choice.run_cfg["input_hw"])
    else:
        input_hw = default_input_hw(task, net.head_spec)
    latency = None
    if opts.latency_iters > 0:
        latency = measure_latency(net, input_hw, 1, opts.latency_iters, device=device)
        log(f"latency: {latency['median_ms']:.2f} ms median at {input_hw[0]}x{input_hw[1]} on {latency['device']}")
    return input_hw, latency


def write(opts: ExtractOptions, out_dir: str, net, choice: Choice, task, ck: dict, *, calib, ft, metric, input_hw,
          latency, log) -> dict:
    """Weights, model.json, the model card (JSON and Markdown) and the portable task files, written
    atomically as one model dir."""
    net = net.cpu().eval()
    wbytes = md.weights_bytes(net, {"format": md.MODEL_FORMAT, "arch_hash": choice.arch.hash})
    files: dict[str, bytes] = {md.WEIGHTS_FILE: wbytes}
    predict_cfg, extra = portable_task(task, choice.task_cfg) if task is not None else (None, {})
    files.update(extra)
    search_card = _search_card(opts, choice)
    meta = _model_meta(opts, out_dir, net, choice, ck, predict_cfg, input_hw, calib, ft, metric, search_card, wbytes)
    card = build_card(meta, net.space, choice.arch, net.head_spec, latency, metric, search_card)
    files[md.META_FILE] = md.json_bytes(meta)
    files[md.CARD_JSON] = md.json_bytes(card)
    files[md.CARD_MD] = render_markdown(card).encode("utf-8")
    md.write_model_dir(out_dir, files, opts.overwrite)
    log(f"wrote {out_dir} ({card['params'] / 1e6:.3f}M params, {card['flops']['gflops_2p30']:.4f} GFLOPs "
        f"MACs/2^30 at {input_hw[0]}x{input_hw[1]})")
    return {"model_dir": out_dir, "meta": meta, "card": card}


def _search_card(opts: ExtractOptions, choice: Choice) -> dict | None:
    """What the card says of the search the arch was picked from (None for an arch file)."""
    rec, run_cfg, search = choice.record, choice.run_cfg, choice.search
    if rec is None:
        return None
    return {"run_dir": os.path.abspath(opts.pick_run), "metric": rec.get("metric"),
            "metric_name": run_cfg.get("metric_name"), "split": search.get("eval_split"),
            "max_images": search.get("eval_max_images"),
            "budget": {"max_gflops": opts.max_gflops, "gflops_convention": opts.gflops_convention,
                       "max_params_m": opts.max_params_m, "max_latency_ms": opts.max_latency_ms},
            "record": {k: v for k, v in rec.items() if k not in ("arch", "metrics")}}


def _model_meta(opts: ExtractOptions, out_dir: str, net, choice: Choice, ck: dict, predict_cfg, input_hw, calib, ft,
                metric, search_card, wbytes: bytes) -> dict:
    """``model.json``: what the model is, how it was made, and from what."""
    arch, head, task_cfg = choice.arch, net.head_spec, choice.task_cfg
    return {
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
        "bn_momentum": float(ck["meta"].get("bn_momentum", 0.1)),
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
            "arch_origin": choice.origin,
            "arch_hash": arch.hash,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv) if sys.argv else None,
            "versions": package_versions(),
        },
    }


def output_names(head) -> list[dict]:
    if head.kind == "seg":
        return [{"name": "logits", "shape": ["B", head.num_classes, "H/4", "W/4"]}]
    if head.kind == "pose-topdown":
        return [{"name": "heatmaps", "shape": ["B", head.num_joints, "H/4", "W/4"]}]
    return [{"name": "heatmaps_tags", "shape": ["B", 2 * head.num_joints, "H/4", "W/4"]},
            {"name": "heatmaps_half", "shape": ["B", head.num_joints, "H/2", "W/2"]}]
