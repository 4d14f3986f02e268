"""``scalenas train-supernet CONFIG [KEY=VALUE ...]``: train a weight-sharing supernet.

Runs as one process, or under ``torchrun --nproc_per_node=N -m scalenas.cli train-supernet ...``
(or ``torchrun ... $(which scalenas) train-supernet ...``) for DDP on CPUs (gloo) or GPUs (nccl).
"""
from __future__ import annotations

import argparse


def add_parser(sub):
    p = sub.add_parser(
        "train-supernet", help="train a weight-sharing supernet with grouped sampling",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a ScaleNAS supernet on a task (segmentation, pose-bottomup, ...).\n\n"
                    "CONFIG is a YAML file (configs/*.yaml); KEY=VALUE pairs override it with dotted keys,\n"
                    "e.g. train.steps=2000 train.optimizer.lr=0.005 sampler.kind=uniform.\n"
                    "Every run writes config.yaml (resolved), versions.json, train_log.jsonl, tb/ and\n"
                    "checkpoints/ under run_dir. Multi-process: torchrun --nproc_per_node=N -m scalenas.cli\n"
                    "train-supernet CONFIG ...")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--run-dir", help="output folder (overrides run_dir)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="'auto' continues from the newest complete checkpoint of run_dir; or a checkpoint path")
    return p


def run(args) -> int:
    from scalenas.config import load_config, validate_section
    from scalenas.train.config import RunConfig
    from scalenas.train.engine import train_supernet

    data = load_config(args.config, args.overrides)
    if args.run_dir:
        data["run_dir"] = args.run_dir
    cfg = validate_section(RunConfig, data)
    if cfg.search:
        # train cannot import search (layers), so the search section is checked here, before any
        # training: an error found only when the search starts would cost the whole training run
        from scalenas.search.config import SearchCfg

        validate_section(SearchCfg, cfg.search, "search")
    res = train_supernet(cfg, resume=args.resume)
    if res.get("checkpoint"):
        loss = "no step run" if res["final_loss"] is None else f"last loss {res['final_loss']:.4f}"
        print(f"supernet checkpoint: {res['checkpoint']} (step {res['steps']}, {loss})")
    return 0
