"""``scalenas shrink CONFIG [KEY=VALUE ...] [-o MODEL_DIR]``: HR-NAS's shrink search, to a model dir."""
from __future__ import annotations

import argparse

from scalenas.cli.extract import add_model_dir_args


def add_parser(sub):
    p = sub.add_parser(
        "shrink", help="HR-NAS's search: train an hrnas network and shrink it to a FLOPs target (a model dir)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an hrnas-family network (space.family: hrnas) from its largest arch on the task, with a\n"
                    "FLOPs-weighted L1 penalty on the BN gamma of its hidden channels (rho ramped over the warm-up);\n"
                    "every shrink.check_every steps the channels with |gamma| <= shrink.threshold are removed once\n"
                    "they save shrink.step_gflops, until shrink.target_gflops (within shrink.tolerance); training\n"
                    "runs to the end of its schedule (shrink.after_target: stop ends it at the target). Then BN\n"
                    "recalibration, optional fine-tuning and evaluation, and the model dir, as 'scalenas extract'\n"
                    "writes it (eval, export, predict work on it). run_dir holds config.yaml, train_log.jsonl,\n"
                    "tb/, checkpoints/ and shrink_summary.json. Example: configs/hrnas_seg_synth.yaml.")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("-o", "--out", metavar="MODEL_DIR", help="output model directory (default: RUN_DIR/model)")
    p.add_argument("--run-dir", help="training folder (overrides run_dir)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="'auto' continues from the newest complete checkpoint of run_dir; or a checkpoint path")
    add_model_dir_args(p)
    return p


def run(args) -> int:
    import os

    from scalenas.cli.extract import model_dir_options
    from scalenas.config import load_run_config
    from scalenas.deploy.shrink import shrink_to_model_dir
    from scalenas.train.shrink import ShrinkRunConfig

    cfg = load_run_config(ShrinkRunConfig, args.config, args.overrides, args.run_dir)
    out = args.out or os.path.join(cfg.run_dir, "model")
    res = shrink_to_model_dir(cfg, model_dir_options(args, checkpoint="", out=out), resume=args.resume)
    s = res["shrink"]
    print(f"shrink: {s['gflops']:.4f} GFLOPs (MACs/{s['gflops_convention']}) at {s['input_hw'][0]}x{s['input_hw'][1]}, "
          f"target {s['target_gflops']} {'reached' if s['reached'] else 'NOT reached'}, after {s['steps']} steps")
    return 0
