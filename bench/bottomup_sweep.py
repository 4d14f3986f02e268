"""Why bottom-up pose does not generalise on a CPU: a controlled one-factor-at-a-time sweep.

Every run trains the same W16 bottom-up supernet (grouped sampling) on synthetic stick figures for the
same number of steps, changing one setting of a base configuration: the number of training images,
the augmentation strength, σ, the learning rate and its warm-up, the associative-embedding (tag) loss
weight, the image and input size, the batch size, the starting weights (a top-down supernet's), the heatmap
loss's background weight (DEKR's) and the heatmap loss itself (CenterNet's focal loss). Each run reports, for
the hrnet subnet after BN recalibration, AP on *unseen* validation images and AP on the images it trained on
(no augmentation): a large train/val gap says memorisation (more data or augmentation helps), two low numbers
say the run is too short or the signal too weak. Each is also scored with the ground truth's tags in place of
the network's, and with the ground truth's heatmaps in place of its heatmaps: which half of the output limits
AP; and where its heatmap peaks fall (on their own joint, the mirror joint, another joint or none; recall per
person height).

    python bench/bottomup_sweep.py --steps 2000                     # the full sweep (hours on 2 cores)
    python bench/bottomup_sweep.py --steps 300 --only base,lr_1e-3   # a subset
    python bench/bottomup_sweep.py --steps 2000 --out docs/results/bottomup-sweep   # JSON + .md
    python bench/bottomup_sweep.py --steps 2000 --only base --add-peaks   # the peaks table for an older run

Each finished run is written to OUT/runs/<name>.json, so an interrupted sweep continues where it stopped.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, print_table  # noqa: E402
from quickrun import quick_supernet_run  # noqa: E402
from task_supernet import init_checkpoint  # noqa: E402
from scalenas.utils.io import atomic_write_json, atomic_write_text  # noqa: E402
from scalenas.utils.markdown import markdown_table  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

SPACE = {"modules_per_stage": [1, 2, 1], "depth_choices": [2, 3, 4], "stem_channels": 16, "stage1_blocks": 1,
         "width": 16}
HHR_AUG = {"max_rotation": 30, "min_scale": 0.75, "max_scale": 1.5, "max_translate": 40, "flip_prob": 0.5}
WEAK_AUG = {"max_rotation": 0, "min_scale": 1.0, "max_scale": 1.0, "max_translate": 0, "flip_prob": 0.5}
NOROT_AUG = {**HHR_AUG, "max_rotation": 0}  # the synthetic people carry their own rotation (top-down lesson)
STRONG_AUG = {"max_rotation": 45, "min_scale": 0.5, "max_scale": 2.0, "max_translate": 60, "flip_prob": 0.5}
AUGMENTS = {"hhr": HHR_AUG, "weak": WEAK_AUG, "norot": NOROT_AUG, "strong": STRONG_AUG}  # settings' "augment"
BASE = {"train_images": 240, "size": 128, "sigma": 2.0, "lr": 3e-3, "tag_weight": 1e-3, "augment": "hhr",
        "sampler": "grouped", "background_weight": 1.0, "heatmap": "mse", "warmup": 20,
        "input": None,  # network input side; None: the image size
        "batch": 8, "init": None}  # init "topdown": start from topdown_init()'s supernet (else from scratch)

#: one factor at a time: name -> the settings that differ from BASE
VARIANTS = {
    "base": {},
    "images_60": {"train_images": 60}, "images_960": {"train_images": 960},
    "aug_weak": {"augment": "weak"}, "aug_strong": {"augment": "strong"}, "aug_norot": {"augment": "norot"},
    "sigma_1": {"sigma": 1.0}, "sigma_3": {"sigma": 3.0},
    "lr_1e-3": {"lr": 1e-3}, "lr_1e-2": {"lr": 1e-2},
    "tag_1e-4": {"tag_weight": 1e-4}, "tag_1e-2": {"tag_weight": 1e-2},
    "size_256": {"size": 256},
    # the same 128-px images (so the same validation people) enlarged to a 256 input: heatmaps of twice the
    # resolution, where size_256 also redraws the data at 256 px
    "input_256": {"input": 256},
    # the top-down bench's lesson (session 17): a long linear warm-up, alone and before a high Adam rate
    "warm_500": {"warmup": 500}, "lr_2e-2_warm_500": {"lr": 2e-2, "warmup": 500},
    # DEKR's heatmap loss: background pixels (outside every joint's Gaussian window) weighted down
    "bg_0.1": {"background_weight": 0.1}, "bg_0.01": {"background_weight": 0.01},
    # CenterNet's focal heatmap loss (the decoder reads the heatmaps as logits): with the base tag weight, which
    # is then small beside it (what the heatmaps alone gain), and with CornerNet's 0.1 for pull and push
    "focal": {"heatmap": "focal"}, "focal_tag_0.1": {"heatmap": "focal", "tag_weight": 0.1},
    # not a setting of the recipe: the hrnet subnet trained alone (the fixed sampler), which separates what
    # weight sharing costs from what the recipe does (its largest/smallest columns are untrained subnets)
    "hrnet_alone": {"sampler": "hrnet"},
    # more images per step at the same step count (and learning rate): whether the 2,000 steps starve on data
    "batch_16": {"batch": 16}, "batch_32": {"batch": 32},
    # not from scratch: the weights of a top-down supernet of the same space (topdown_init), as HigherHRNet starts
    # from ImageNet weights; whether features that know joints (at one scale) are what 2,000 steps lack
    "topdown_init": {"init": "topdown"},
    # not one factor: the levers that each moved the floor most (session 19), together
    "combined": {"init": "topdown", "batch": 16, "augment": "norot"},
    # and on four times the images: the 8,000-step run of "combined" memorises the 224 it has
    "combined_960": {"init": "topdown", "batch": 16, "augment": "norot", "train_images": 960},
    # images drawn at 256 px (size_256's lever, 4x the pixels a step, so batch 8 as there) with the top-down start
    # and no rotation, on 240 and on 960 images
    "combined_256": {"init": "topdown", "augment": "norot", "size": 256},
    "combined_256_960": {"init": "topdown", "augment": "norot", "size": 256, "train_images": 960},
    # the first rows at val AP ~10 (session 19): without the top-down start, and on four times the images again
    "norot_256_960": {"augment": "norot", "size": 256, "train_images": 960},
    "combined_256_3840": {"init": "topdown", "augment": "norot", "size": 256, "train_images": 3840},
}
#: bench/task_supernet.py's top-down recipe (warm-up, Adam, crops, its 4,000 256-px images) for the sweep's space,
#: at the 3,000 steps the published rows started from; the images are another draw than the sweep's (they share
#: no validation image)
TOPDOWN_STEPS = ["--steps", "3000"]


def input_side(s: dict) -> int:
    """The network's input side of settings ``s``: their ``input``, or the image size when that is None."""
    return s["input"] or s["size"]


def run_config(s: dict, data: str, run_dir: str, steps: int, every: int = 0, init: str | None = None) -> dict:
    """The run config of settings ``s``; ``every`` > 0 keeps a checkpoint every ``every`` steps (all of them);
    ``init``: the checkpoint the supernet starts from (its tensors of matching names and shapes)."""
    split = {"images": "images/{}", "annotations": "annotations/{}.json"}
    task = {"name": "pose-bottomup", "root": data, "keypoints": "coco", "input_size": input_side(s),
            "sigma": s["sigma"], "augment": AUGMENTS[s["augment"]],
            "loss": {"push_factor": s["tag_weight"], "pull_factor": s["tag_weight"],
                     "background_weight": s["background_weight"], "heatmap": s["heatmap"]},
            "search_holdout": 16, "workers": 0, "vis_images": 0,
            **{k: {a: b.format(k) for a, b in split.items()} for k in ("train", "val", "test")}}
    train = {"steps": steps, "batch_size": s["batch"], "workers": 2, "ckpt_every": every, "keep_last": 0,
             "progress": False,
             "tensorboard": False, "optimizer": {"name": "adam", "lr": s["lr"], "weight_decay": 0.0},
             "schedule": {"name": "poly", "warmup_steps": s["warmup"]}, "amp": "auto"}
    return {"run_dir": run_dir, "seed": 0, "space": SPACE, "task": task, "sampler": sampler(s["sampler"]),
            "train": train, **({"model": {"pretrained": init}} if init else {})}


def sampler(kind: str) -> dict:
    if kind == "hrnet":
        from scalenas.space.space import SearchSpace

        return {"kind": "fixed", "arch": SearchSpace(**SPACE).hrnet(True).to_dict()}
    return {"kind": kind, "smallest_fusion": 0.0}


def dataset(root: str, s: dict) -> str:
    """The synthetic data of a variant's size and image count (generated once, shared by variants)."""
    from scalenas.data.synth_pose import generate

    path = os.path.join(root, f"data_{s['size']}_{s['train_images']}")
    if not os.path.exists(path):
        os.makedirs(root, exist_ok=True)
        # written aside, then renamed: a second sweep process started at the same time (disjoint --only
        # lists) must never read a half-written dataset; the loser of the rename drops its copy (same seed)
        tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".", dir=root)
        generate(tmp, train=s["train_images"], val=40, test=8, size=(s["size"], s["size"]), seed=0)
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp)
    return path


def work_dir(out: str, name: str, every: int = 0) -> str:
    """The run folder of variant ``name`` (a run that keeps a checkpoint every ``every`` steps has its own)."""
    return os.path.join(out, "work", f"{name}_every{every}" if every else name)


def topdown_init(root: str) -> dict:
    """The top-down supernet that ``init: topdown`` variants start from: ``bench/task_supernet.py``'s
    ``--init topdown`` head start with TOPDOWN_STEPS, run once under ROOT/topdown_init; its JSON record (val AP
    of its subnets, top-down, and its minutes: the price of the head start) with the checkpoint."""
    checkpoint, record = init_checkpoint("topdown", root, SPACE["width"], 0, pinned=TOPDOWN_STEPS)
    return {**record, "checkpoint": checkpoint}


def attribution(cfg: dict, checkpoint: str, images: int = 40) -> dict:
    """The hrnet subnet's AP on the first ``images`` training images (no augmentation) and on ``images``
    validation images, each also with the true tags in place of its own (its heatmaps decide) and with
    the true heatmaps (its tags decide), and the perfect network's: which half of the output limits AP;
    with, on the validation images, where its heatmap peaks fall (``peaks``)."""
    task, net = hrnet_subnet(cfg, checkpoint)
    out = {split: task.evaluate_attribution(net, split, max_images=images) for split in ("train", "val")}
    out["val"]["peaks"] = peaks(task, lambda iid, img: net, "val", images)
    return out


def hrnet_subnet(cfg: dict, checkpoint: str):
    """The task of run config ``cfg`` and the hrnet subnet of ``checkpoint``, BN recalibrated on 32 images,
    in eval mode (in train mode BN would normalise each decoded image by its own statistics)."""
    from scalenas.search.calibrate import Calibrator
    from scalenas.tasks.base import build_task
    from scalenas.train.checkpoint import load_supernet

    task = build_task(cfg["task"])
    net, _ = load_supernet(checkpoint)
    net.set_active(net.space.hrnet(True))
    Calibrator(task, num_images=32, batch_size=16).calibrate(net)
    return task, net.eval()


def add_peaks(run: dict, out: str, every: int = 0) -> dict:
    """A finished ``run`` made before the peaks table, with it: scored on the checkpoint its run kept."""
    from scalenas.train.checkpoint import list_checkpoints

    s = {**BASE, **run["settings"]}
    cfg = run_config(s, dataset(os.path.join(out, "data"), s), work_dir(out, run["name"], every), run["steps"])
    task, net = hrnet_subnet(cfg, list_checkpoints(cfg["run_dir"])[-1])
    run["attribution"]["val"]["peaks"] = peaks(task, lambda iid, img: net, "val")
    return run


HEIGHT_BINS = (20, 40)  # person height bins (px in the image, the labelled joints' vertical extent)
PEAK_RADIUS = 4.0       # px in the image: one heatmap pixel at 1/4 of the 128-px input


@torch.no_grad()
def peaks(task, forward_for: Callable, split: str, images: int = 40) -> dict:
    """Where the heatmaps' peaks fall on the first ``images`` of ``split`` (``forward_for(image_id, image)``:
    the forward to decode that image with, e.g. the network's for every image): the decoder's candidates (maps
    aggregated over flips, peak NMS, value above the detection threshold), each counted as on its own joint
    (within PEAK_RADIUS px of a labelled joint of its type), on the mirror joint, on another joint, or on
    neither; and per person-height bin the share of labelled joints with a candidate of their type within
    PEAK_RADIUS (recall). Tells blurred or misplaced maps from people too small for the heatmap."""
    from scalenas.data.pose_transforms import to_image_coords
    from scalenas.tasks.pose_decode import aggregate, peak_nms

    idx, dc, flip = task.index(split), task.decode_config(), task.info.flip_index
    where = {"own": 0, "mirror": 0, "other_joint": 0, "neither": 0}
    found = {b: [0, 0] for b in _height_bins()}
    for iid in task.split_ids(split)[:images]:
        img = idx.load_image(iid)
        maps = aggregate(forward_for(iid, img), img, task.info.num_joints, flip, dc)
        cand = peak_nms(maps.heatmaps, dc.nms_kernel).numpy()
        people = idx.people(iid)                                          # (P, K, 3) image coordinates
        labelled = people[..., 2] > 0
        bins = [_height_bin(np.ptp(p[m, 1])) for p, m in zip(people, labelled)]  # each person has a joint
        for j in range(cand.shape[0]):
            ys, xs = np.nonzero(cand[j] > dc.detection_threshold)
            xy = to_image_coords(np.stack([xs, ys], 1).astype(np.float64), maps.center, maps.scale_vec,
                                 maps.size_wh)
            own, mirror = _near(xy, people[labelled[:, j], j]), _near(xy, people[labelled[:, flip[j]], flip[j]])
            other = _near(xy, people[labelled])
            where["own"] += int(own.sum())
            where["mirror"] += int((mirror & ~own).sum())
            where["other_joint"] += int((other & ~own & ~mirror).sum())
            where["neither"] += int((~other & ~own & ~mirror).sum())
            for p in np.nonzero(labelled[:, j])[0]:
                hit = bool(len(xy)) and np.linalg.norm(xy - people[p, j, :2], axis=1).min() <= PEAK_RADIUS
                found[bins[p]][0] += int(hit)
                found[bins[p]][1] += 1
    return {**where, "recall_by_height": {b: {"found": f, "joints": n} for b, (f, n) in found.items()}}


def _near(xy: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Which of the points ``xy`` (N, 2) lie within PEAK_RADIUS of one of ``joints`` (M, >= 2)."""
    return (np.linalg.norm(xy[:, None] - joints[None, :, :2], axis=2) <= PEAK_RADIUS).any(1)


def _height_bins() -> list[str]:
    lo, hi = HEIGHT_BINS
    return [f"<{lo}", f"{lo}-{hi}", f">={hi}"]


def _height_bin(h: float) -> str:
    return _height_bins()[sum(h >= b for b in HEIGHT_BINS)]


def one_run(name: str, out: str, steps: int, every: int = 0) -> dict:
    """Train variant ``name`` and score it; with ``every`` the attribution is also taken at every
    intermediate checkpoint (``trajectory``: one run's course, not shorter runs, whose schedules end sooner)."""
    from scalenas.train.checkpoint import CKPT_RE, list_checkpoints

    s = {**BASE, **VARIANTS[name]}
    data = dataset(os.path.join(out, "data"), s)
    init = topdown_init(out) if s["init"] == "topdown" else None
    cfg = run_config(s, data, work_dir(out, name, every), steps, every, init and init["checkpoint"])
    t0 = time.time()
    r = quick_supernet_run(copy.deepcopy(cfg), calib_images=32)
    wall = time.time() - t0
    attr = attribution(cfg, r["checkpoint"])
    out_run = {"name": name, "settings": s, "steps": steps, "val_ap": r["after"], "train_ap_hrnet": attr["train"]["AP"],
               "attribution": attr, "loss_first": r["losses"][0], "loss_last": r["losses"][-1], "wall_s": wall,
               **({"init": init} if init else {})}
    if every:
        steps_of = {int(CKPT_RE.search(p).group(1)): p for p in list_checkpoints(cfg["run_dir"])}
        out_run["trajectory"] = {str(k): attribution(cfg, p) for k, p in steps_of.items() if k < steps}
        out_run["trajectory"][str(steps)] = attr
    return out_run


def report(results: list[dict], steps: int) -> tuple[list[str], list[list]]:
    headers = ["variant", "changed", "val AP hrnet", "val AP largest", "val AP smallest", "train AP hrnet",
               "loss last", "min"]
    rows = [[r["name"], ", ".join(f"{k}={v}" for k, v in VARIANTS[r["name"]].items()) or "(base)", r["val_ap"]["hrnet"],
             r["val_ap"]["largest"], r["val_ap"]["smallest"], r["train_ap_hrnet"], r["loss_last"], r["wall_s"] / 60]
            for r in results]
    return headers, rows


def attribution_report(results: list[dict]) -> tuple[list[str], list[list]]:
    """One row per run and split: the hrnet subnet's AP as it is, with the true tags, with the true heatmaps,
    and the perfect network's."""
    headers = ["variant", "images", "AP", "AP with true tags", "AP with true heatmaps", "perfect network"]
    rows = [[r["name"], split, a["AP"], a["AP_true_tags"], a["AP_true_heatmaps"], a["AP_oracle"]]
            for r in results if "attribution" in r for split, a in r["attribution"].items()]
    return headers, rows


def peaks_report(results: list[dict]) -> tuple[list[str], list[list]]:
    """One row per run: where the hrnet subnet's heatmap candidates fall on the validation images (shares of
    them) and, per person height, the share of labelled joints with a candidate of their type nearby."""
    headers = ["variant", "candidates", "own joint", "mirror joint", "another joint", "neither",
               *[f"recall, people {b} px" for b in _height_bins()]]
    rows = []
    for r in results:
        p = r.get("attribution", {}).get("val", {}).get("peaks")
        if p:
            n = max(1, sum(p[k] for k in ("own", "mirror", "other_joint", "neither")))
            rec = [v["found"] / max(1, v["joints"]) for v in p["recall_by_height"].values()]
            rows.append([r["name"], n, p["own"] / n, p["mirror"] / n, p["other_joint"] / n, p["neither"] / n, *rec])
    return headers, rows


def trajectory_report(results: list[dict]) -> tuple[list[str], list[list]]:
    """One row per run and checkpoint: the hrnet subnet's AP on training and validation images, and on the
    validation images with the true tags and with the true heatmaps."""
    headers = ["variant", "step", "train AP", "val AP", "val AP with true tags", "val AP with true heatmaps"]
    rows = [[r["name"], int(step), a["train"]["AP"], a["val"]["AP"], a["val"]["AP_true_tags"],
             a["val"]["AP_true_heatmaps"]]
            for r in results if "trajectory" in r
            for step, a in sorted(r["trajectory"].items(), key=lambda kv: int(kv[0]))]
    return headers, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--only", default="", help="comma-separated variants (default: all): " + ", ".join(VARIANTS))
    ap.add_argument("--out", default="runs/bottomup_sweep")
    ap.add_argument("--every", type=int, default=0, help="also score a checkpoint every N steps of each run")
    ap.add_argument("--add-peaks", action="store_true",
                    help="add the peaks table to finished runs made before it, from the checkpoints they kept")
    args = ap.parse_args()
    setup_process()
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"bottomup_sweep: error: unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    results = []
    for name in names:
        tail = f"_every{args.every}" if args.every else ""
        path = os.path.join(args.out, "runs", f"{name}_{args.steps}{tail}.json")
        if not os.path.exists(path):  # finished runs are kept: an interrupted sweep continues
            atomic_write_json(path, one_run(name, args.out, args.steps, args.every))
        results.append(json.load(open(path)))
        val = results[-1].get("attribution", {}).get("val")  # runs before the attribution table have none
        if args.add_peaks and val is not None and "peaks" not in val:
            results[-1] = add_peaks(results[-1], args.out, args.every)
            atomic_write_json(path, results[-1])
        last = results[-1]
        print(f"{name}: val AP hrnet {last['val_ap']['hrnet']:.2f}, train AP {last['train_ap_hrnet']:.2f}",
              flush=True)
    headers, rows = report(results, args.steps)
    title = (f"bottom-up W16 supernet, {args.steps} steps, batch 8 (unless a row changes it), grouped sampling, "
             f"BN recalibrated on 32 train images; val = 40 unseen images, train = 40 training images without "
             f"augmentation ({machine()})")
    print_table(headers, rows, title)
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    md = [f"# Bottom-up sweep\n\n{title}\n"] + markdown_table(headers, rows, fmt)
    tables = [(attribution_report(results), "Which half of the output limits AP (hrnet subnet, 40 images of each "
               "split): its own heatmaps with the ground truth's tags, the ground truth's heatmaps with its own tags"),
              (peaks_report(results), f"Where the hrnet subnet's heatmap peaks fall on the validation images: the "
               f"decoder's candidates (flip-aggregated maps, peak NMS, above the detection threshold) within "
               f"{PEAK_RADIUS:g} px of a labelled joint of their own type, of the mirror type, of another type, or "
               "of none (shares), and per person height the share of labelled joints with a candidate of their "
               "type that near"),
              (trajectory_report(results), f"The hrnet subnet along each run, checkpoints every {args.every} steps "
               "(40 images of each split)")]
    for (t_headers, t_rows), t_title in tables:
        if t_rows:  # runs made before a table existed have nothing for it
            print_table(t_headers, t_rows, t_title)
            md += [f"\n{t_title}:\n"] + markdown_table(t_headers, t_rows, fmt)
    atomic_write_json(os.path.join(args.out, "sweep.json"), {"steps": args.steps, "base": BASE, "runs": results})
    atomic_write_text(os.path.join(args.out, "sweep.md"), "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
