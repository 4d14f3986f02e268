"""``scalenas extract``: a deployable model dir from a supernet checkpoint and an arch."""
from __future__ import annotations

import argparse

from scalenas.cli._target import parse_hw


def add_data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", action="append", default=[], metavar="ROOT|KEY=VALUE",
                   help="where the task's data is now: a dataset root (sets task.root) or "
                        "KEY=VALUE overrides of the task section (repeatable)")


def add_parser(sub):
    p = sub.add_parser(
        "extract", help="extract a standalone ScaleNet (model dir) from a supernet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load SUPERNET_CKPT, select an arch (ARCH.json, or --pick the best evaluated arch of a search "
                    "run under a budget), recalibrate BN (default on; the search run's calibration settings with "
                    "--pick, so the metric matches), extract the static ScaleNet, optionally fine-tune and "
                    "evaluate, measure latency, and write MODEL_DIR atomically:\n"
                    "  model.safetensors, model.json, MODEL_CARD.md, card.json (+ dataset_info.json for "
                    "segmentation).\n\n"
                    "--pick rule (scalenas.search.pareto_doc.pick, as 'scalenas search pick'): among the run's "
                    "feasible "
                    "evaluated archs within --max-gflops (MACs/2^30 unless --gflops-convention 1e9), --max-params-m "
                    "and --max-latency-ms, the best metric; ties go to the cheaper. Without a budget: the best "
                    "metric overall.")
    p.add_argument("checkpoint", metavar="SUPERNET_CKPT",
                   help="supernet checkpoint (.pt from train-supernet), or a shrink run's checkpoint (.pt from "
                        "'scalenas shrink': its network, no ARCH.json)")
    p.add_argument("arch", nargs="?", metavar="ARCH.json", help="arch file (or a model.json / preset-format JSON)")
    p.add_argument("-o", "--out", required=True, metavar="MODEL_DIR", help="output model directory")
    g = p.add_argument_group("pick from a search run")
    g.add_argument("--pick", metavar="RUN", help="search run directory (config.yaml, evaluations.jsonl, pareto.json)")
    g.add_argument("--max-gflops", type=float, metavar="X",
                   help="GFLOPs budget (effective: what the extracted net runs)")
    g.add_argument("--gflops-convention", choices=("2p30", "1e9"), default="2p30",
                   help="unit of --max-gflops: MACs/2^30 (ScaleNAS, default) or MACs/1e9 (HigherHRNet)")
    g.add_argument("--max-latency-ms", type=float, metavar="Y", help="latency budget (the search's measurement)")
    g.add_argument("--max-params-m", type=float, metavar="M", help="parameter budget in millions (effective)")
    add_model_dir_args(p)
    return p


def add_model_dir_args(p: argparse.ArgumentParser) -> None:
    """The stages after the arch is chosen (calibration, fine-tuning, evaluation, card), which
    ``scalenas shrink`` shares."""
    c = p.add_argument_group("BN calibration")
    c.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="keep the supernet's shared BN statistics (not recommended)")
    c.add_argument("--calib-images", type=int, metavar="N", help="calibration images (default: search run's, else 64)")
    c.add_argument("--calib-batch-size", type=int, metavar="N",
                   help="calibration batch size (default: search run's, else 16)")
    c.add_argument("--calib-seed", type=int, metavar="N", help="calibration image draw seed (default: search run's)")
    f = p.add_argument_group("fine-tuning and evaluation")
    f.add_argument("--finetune-epochs", type=int, default=0, metavar="N",
                   help="fine-tune the extracted net for N epochs with the supernet run's optimiser recipe "
                        "(or --finetune's)")
    f.add_argument("--finetune", metavar="CONFIG", dest="finetune_config",
                   help="fine-tune with the 'train' section of CONFIG instead (its train.epochs unless "
                        "--finetune-epochs), e.g. configs/finetune/scalenet_p_20ep.yaml: the released "
                        "ScaleNet-P models' 20 more epochs")
    f.add_argument("--finetune-lr", type=float, metavar="LR", help="learning rate for fine-tuning (default: the run's)")
    f.add_argument("--eval-split", choices=("search", "val", "test"), help="evaluate on this split and record it")
    f.add_argument("--eval-max-images", type=int, metavar="N",
                   help="evaluate on the first N images only (default: all; with --pick on the search's split, "
                        "as many as the search used)")
    add_data_arg(f)
    o = p.add_argument_group("card")
    o.add_argument("--input", type=parse_hw, metavar="HxW",
                   help="input size for the card's FLOPs and latency (default: the search's, else the task's "
                        "training input)")
    o.add_argument("--latency-iters", type=int, default=10, metavar="N", help="timed runs (0: do not measure)")
    o.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    o.add_argument("--name", help="model name (default: the directory name)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing model dir")


def model_dir_options(args, **kw):
    """``ExtractOptions`` from the options of :func:`add_model_dir_args` (and ``kw``)."""
    from scalenas.deploy.extract import ExtractOptions

    return ExtractOptions(
        calibrate=args.calibrate, calib_images=args.calib_images, calib_batch_size=args.calib_batch_size,
        calib_seed=args.calib_seed, finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
        finetune_config=args.finetune_config,
        eval_split=args.eval_split, eval_max_images=args.eval_max_images, input_hw=args.input,
        latency_iters=args.latency_iters, device=args.device, data=args.data, overwrite=args.overwrite,
        name=args.name, **kw)


def run(args) -> int:
    from scalenas.deploy.extract import check_before_loading, extract
    from scalenas.deploy.shrink import model_dir_from_shrink_checkpoint
    from scalenas.train.checkpoint import is_shrink_checkpoint, load_checkpoint

    opts = model_dir_options(args, checkpoint=args.checkpoint, out=args.out, arch_file=args.arch, pick_run=args.pick,
                             max_gflops=args.max_gflops, gflops_convention=args.gflops_convention,
                             max_latency_ms=args.max_latency_ms, max_params_m=args.max_params_m)
    check_before_loading(opts)  # a bad option costs no checkpoint load
    ck = load_checkpoint(args.checkpoint)
    if is_shrink_checkpoint(ck):  # one network with its own arch: no subnet to choose
        model_dir_from_shrink_checkpoint(opts, ck)
    else:
        extract(opts, ck=ck)
    return 0
