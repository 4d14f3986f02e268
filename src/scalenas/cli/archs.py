"""``scalenas archs``: write the special architectures of a space (largest, smallest, hrnet, presets, random
samples) as arch JSON files, without running a search."""
from __future__ import annotations

import argparse
import os

from scalenas.cli import split_config_and_overrides
from scalenas.deploy.arch_files import special_archs, write_arch_file
from scalenas.errors import ScaleNASError
from scalenas.space.heads import HEAD_KINDS
from scalenas.space.space import SearchSpace

USAGE = ("scalenas archs [CONFIG.yaml] [KEY=VALUE ...] [--width W] [--which largest,smallest,hrnet]\n"
         "                      [--random N] [--seed S] [--fusion-prob P] [--head KIND] -o DIR")

DESCRIPTION = """\
Write architectures of a search space as arch JSON files, DIR/<name>.json, each loadable by every
command that takes an arch (extract, info, draw): the space's largest and smallest subnets, HRNet as
a point of the space (depth 4, fusion at module ends), any preset that is a point of the space
(e.g. hrnet-w32, scalenet-s1 in the paper's space), and N random samples (random_0, random_1, ...).

The space is the 'space:' section of CONFIG (a training config; KEY=VALUE overrides apply, e.g.
space.depth_choices=[2,3,4]); without CONFIG, the paper's W32 space, or --width W. The pose rule
(only branch 0 feeds a pose head) is applied when the head is a pose head: --head, else the
config's task (pose-bottomup and pose-topdown name their heads). Each file holds the arch with its space and head (so
'scalenas info DIR/largest.json' counts it in its own space) and its origin (space point, preset or
random draw with its seed), which 'scalenas extract' copies into the model card.

  scalenas archs configs/demo_pose.yaml --which largest,smallest,hrnet --random 5 --seed 0 -o archs/
  scalenas extract SUPERNET.pt archs/hrnet.json -o models/hrnet
"""


def add_parser(sub):
    p = sub.add_parser("archs", help="write the largest/smallest/hrnet/preset/random archs of a space as JSON",
                       usage=USAGE, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rest", nargs="*", metavar="CONFIG.yaml|KEY=VALUE", help="a config with a 'space' section, "
                   "then KEY=VALUE overrides")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--width", type=int, metavar="W", help="branch-0 width (overrides space.width)")
    p.add_argument("--which", default="largest,smallest,hrnet", metavar="NAMES",
                   help="comma-separated: largest, smallest, hrnet, or preset names (default: "
                        "largest,smallest,hrnet; hrnet is skipped when the space has no depth 4)")
    p.add_argument("--random", type=int, default=0, metavar="N", help="also write N random samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the random samples (default 0)")
    p.add_argument("--fusion-prob", type=float, default=0.5, metavar="P",
                   help="probability of each cross-branch fusion edge in the random samples (default 0.5)")
    p.add_argument("--head", choices=HEAD_KINDS, help="head the archs are for (pose heads apply the pose rule)")
    return p


def run(args) -> int:
    from scalenas.config import apply_overrides, load_config

    config, overrides = split_config_and_overrides("archs", args.rest)
    cfg = load_config(config, overrides) if config else apply_overrides({}, overrides)
    section = cfg.get("space") or {}
    if not isinstance(section, dict):
        raise ScaleNASError(f"{config or 'overrides'}: 'space' must be a mapping")
    if args.width is not None:
        section = {**section, "width": args.width}
    space = SearchSpace.from_dict(section)
    task_name = str((cfg.get("task") or {}).get("name", ""))
    # the pose tasks are named after their heads (pose-bottomup, pose-topdown)
    head_kind = args.head or (task_name if task_name in HEAD_KINDS else "seg")
    pose_rule = head_kind.startswith("pose")
    which = [w.strip() for w in args.which.split(",") if w.strip()]
    if args.which == "largest,smallest,hrnet" and 4 not in space.depth_choices:
        which.remove("hrnet")
        print(f"note: no hrnet point (space.depth_choices {list(space.depth_choices)} has no depth 4)")
    named = special_archs(space, which, pose_rule, args.random, args.seed, args.fusion_prob, config)
    os.makedirs(args.out, exist_ok=True)
    for n in named:
        path = os.path.join(args.out, f"{n.name}.json")
        write_arch_file(path, n.arch, n.origin, space, head_kind)
        print(f"{path}  arch {n.arch.hash}  depths {n.arch.depth_string()}  {n.arch.num_edges()} fusion edges")
    return 0
