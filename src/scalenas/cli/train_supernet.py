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
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, its data and files, print the resolved schedule, precision, teacher, "
                        "pretrained weights and images per sampling group, then exit without training")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="with --dry-run: the number of processes to plan for (default: torchrun's WORLD_SIZE, or 1)")
    return p


def run(args) -> int:
    from scalenas.config import load_run_config, validate_section
    from scalenas.train.config import RunConfig
    from scalenas.train.engine import train_supernet

    cfg = load_run_config(RunConfig, args.config, args.overrides, args.run_dir)
    if cfg.search:
        # train cannot import search (layers), so the search section is checked here, before any
        # training: an error found only when the search starts would cost the whole training run
        from scalenas.search.config import SearchCfg

        validate_section(SearchCfg, cfg.search, "search")
    if args.dry_run:
        return _dry_run(cfg, args.processes)
    if args.processes is not None:
        from scalenas.errors import ScaleNASError

        raise ScaleNASError("--processes plans a --dry-run; a training run takes its processes from torchrun")
    res = train_supernet(cfg, resume=args.resume)
    if res.get("checkpoint"):
        loss = "no step run" if res["final_loss"] is None else f"last loss {res['final_loss']:.4f}"
        print(f"supernet checkpoint: {res['checkpoint']} (step {res['steps']}, {loss})")
    return 0


def _dry_run(cfg, processes: int | None) -> int:
    import os

    from scalenas.errors import ScaleNASError
    from scalenas.train.dryrun import dry_run

    world = processes if processes is not None else int(os.environ.get("WORLD_SIZE", "1"))
    if world < 1:
        raise ScaleNASError(f"--processes {world}: must be at least 1")
    lines = dry_run(cfg, world)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one copy of the plan
        print("\n".join(lines))
    return 0
