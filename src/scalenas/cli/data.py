"""``scalenas data``: generate the synthetic multi-scale datasets (the project's embedded data)."""
from __future__ import annotations

import argparse

from scalenas.errors import ScaleNASError


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 256x256") from None


def add_parser(sub):
    p = sub.add_parser("data", help="generate synthetic datasets",
                       description="Generate the synthetic multi-scale datasets used by the tests and the demo.")
    dsub = p.add_subparsers(dest="data_command", metavar="KIND", required=True)
    for kind, desc in (("synth-seg", "segmentation: textured objects of several classes, sizes spanning >= 1:20, "
                                     "written as an image + mask folder dataset with dataset_info.json"),
                       ("synth-pose", "bottom-up pose: articulated figures with the 17 COCO keypoints, 1-6 people, "
                                      "heights spanning >= 1:10, written as images + COCO keypoint JSON")):
        q = dsub.add_parser(kind, help=desc.split(":")[0], description=desc)
        q.add_argument("out", help="output folder")
        q.add_argument("--train", type=int, default=200, help="number of training images")
        q.add_argument("--val", type=int, default=50, help="number of validation images")
        q.add_argument("--test", type=int, default=50, help="number of test images")
        q.add_argument("--size", type=_hw, default=(256, 256), help="image size HxW (default 256x256)")
        q.add_argument("--seed", type=int, default=0, help="random seed (the output is a pure function of it)")
    return p


def run(args) -> int:
    if args.train < 1:  # the library allows it (an evaluation-only set); a command-line dataset is for training
        raise ScaleNASError(f"--train {args.train}: need at least one training image (training and BN "
                            f"calibration read the train split)")
    if args.data_command == "synth-seg":
        from scalenas.data.synth_seg import generate
    else:
        from scalenas.data.synth_pose import generate
    summary = generate(args.out, train=args.train, val=args.val, test=args.test, size=args.size, seed=args.seed)
    print(summary if isinstance(summary, str) else f"wrote {args.out}")
    return 0
