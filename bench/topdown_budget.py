"""What the top-down pose demo's training minutes can buy: the demo's supernet recipe next to the
alternatives, at the demo's training budget, on the demo's data.

Every row trains on the data of ``scalenas demo --task pose`` (240 synthetic 256x256 images, people of
0.15-0.95 of the image height, 128x96 crops from ground-truth boxes) with the demo's settings (W12 space,
Adam 5e-3 poly, batch 16; rotation 30 / scale 0.25 in the published rows, no rotation since) for the
demo's number of training steps on a quiet 2-core machine (its probe gives ~1,600), one torch thread per row,
and reports the val and test AP of the largest, smallest and hrnet subnets after BN recalibration on 64 crops
(flip test, pycocotools):

- ``supernet``: the demo's recipe (grouped sampling, method §5.1), all steps;
- ``teacher_kd``: the paper's segmentation recipe (method §5.2): the largest subnet trained alone for
  ``--teacher-steps``, then the supernet initialised from it and distilled from it (KD weight 0.5) for the
  steps that take about the same wall time (a distilled step runs the teacher too);
- ``hrnet_alone``: the hrnet subnet trained alone for all steps: what the demo's budget gives one network
  (the other two columns are untrained subnets of that run);
- ``supernet+finetune``: the ``supernet`` row's hrnet point extracted and fine-tuned (as the released
  ScaleNet-P models were, method §1) for ``--finetune-epochs`` with Adam ``--finetune-lr``.

    python bench/topdown_budget.py --out runs/topdown-budget --workers 2      # ~40 min on 2 cores
    python bench/topdown_budget.py --out runs/topdown-budget --publish docs/results/topdown-demo-budget  # JSON, md, png

Each finished row is written to OUT/rows/<name>.json, so a stopped run continues where it stopped.
"""
from __future__ import annotations

import argparse
import copy
from functools import partial
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import cached_rows, machine, publish, row_path  # noqa: E402
from quickrun import evaluate_points  # noqa: E402
from scalenas.demo.settings import POSE  # noqa: E402
from scalenas.utils.markdown import markdown_table  # noqa: E402
from scalenas.utils.runtime import setup_process  # noqa: E402

SUBNETS = ("largest", "smallest", "hrnet")
ROWS = ("supernet", "teacher_kd", "hrnet_alone", "supernet+finetune")


def run_config(args, run_dir: str, steps: int, **sections) -> dict:
    """The demo's pose run config (``demo.settings.POSE``) for ``steps`` steps, one thread, no checkpoints
    on the way; ``sections`` update its sections (sampler, model, train)."""
    s = copy.deepcopy(POSE)
    d = {"run_dir": run_dir, "seed": 0, "space": s["space"], "task": {**s["task"], "root": _data(args)},
         "model": s["model"], "sampler": s["sampler"], "search": {},
         "train": {**s["train"], "steps": steps, "ckpt_every": 0, "progress": False, "tensorboard": False,
                   "threads": 1, "workers": 1}}
    for key, update in sections.items():
        d[key] = {**d[key], **update}
    return d


def recipe() -> dict:
    """The demo's recipe as published with a bench's rows: its space, task and train sections."""
    return {k: POSE[k] for k in ("space", "task", "train")}


def _data(args) -> str:
    return os.path.join(os.path.abspath(args.out), "data")


def bench_parser(doc: str, files: str) -> argparse.ArgumentParser:
    """The arguments of every top-down bench (working folder, rows at a time, publishing); each adds its own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="working folder (data, runs, rows/*.json)")
    ap.add_argument("--workers", type=int, default=2, help="rows trained at a time, one torch thread each")
    ap.add_argument("--publish", default=None, metavar="PREFIX", help=f"write {files}")
    return ap


def run_and_report(args, run_rows, report) -> tuple[list[dict], str]:
    """A top-down bench's steps: the demo's data, its rows (each kept in OUT/rows), the report printed."""
    setup_process(1)
    make_data(args)
    rows = run_rows(args)
    md = report(args, rows)
    print(md)
    return rows, md


def make_data(args) -> None:
    from scalenas.data.synth_pose import generate

    if not os.path.exists(_data(args)):
        d = POSE["data"]
        print(generate(_data(args), train=d["train"], val=d["val"], test=d["test"], size=d["size"], seed=0,
                       heights=d["heights"]), flush=True)


def _train(cfg_dict: dict) -> tuple[str, float]:
    from scalenas.train.config import RunConfig
    from scalenas.train.engine import SupernetTrainer

    t0 = time.time()
    trainer = SupernetTrainer(RunConfig.model_validate(cfg_dict))
    res = trainer.train()
    trainer.close()
    return res["checkpoint"], time.time() - t0


def _scores(args, checkpoint: str, subnets=SUBNETS, splits=("val", "test"), task_cfg: dict | None = None) -> dict:
    """AP on ``splits`` of ``subnets`` of ``checkpoint``, each after BN recalibration; ``task_cfg``: a task
    section other than the demo's (e.g. another decoder)."""
    from scalenas.search.calibrate import Calibrator
    from scalenas.tasks.base import build_task
    from scalenas.train.checkpoint import load_supernet

    net, _ = load_supernet(checkpoint)
    task = build_task(task_cfg or run_config(args, "unused", 1)["task"])
    calib = Calibrator(task, num_images=64, batch_size=32)
    archs = {name: arch for name, arch in _archs().items() if name in subnets}
    return {split: evaluate_points(net, task, archs, split, calib) for split in splits}


def _archs() -> dict:
    """The three subnets of the demo's pose space (pose rule)."""
    from scalenas.space.space import SearchSpace

    space = SearchSpace.from_dict(POSE["space"])
    return {"largest": space.largest(True), "smallest": space.smallest(True), "hrnet": space.hrnet(True)}


def row(args, name: str) -> dict:
    """Train and score one row (in its own process: one torch thread)."""
    setup_process(1)
    out = os.path.join(os.path.abspath(args.out), "runs", name)
    if name == "supernet":
        ckpt, wall = _train(run_config(args, out, args.steps))
        return {"steps": args.steps, "crops": args.steps * 16, "wall_s": wall, "checkpoint": ckpt,
                **_scores(args, ckpt)}
    if name == "hrnet_alone":
        hrnet = _archs()["hrnet"]
        ckpt, wall = _train(run_config(args, out, args.steps, sampler={"kind": "fixed", "arch": hrnet.to_dict()}))
        return {"steps": args.steps, "crops": args.steps * 16, "wall_s": wall, **_scores(args, ckpt)}
    if name == "teacher_kd":
        largest = _archs()["largest"]
        teacher, wall_t = _train(run_config(args, os.path.join(out, "teacher"), args.teacher_steps,
                                            sampler={"kind": "fixed", "arch": largest.to_dict()}))
        steps = args.student_steps
        ckpt, wall = _train(run_config(args, os.path.join(out, "student"), steps, model={"pretrained": teacher},
                                       train={"distill": {"teacher": teacher, "weight": 0.5}}))
        return {"steps": args.teacher_steps + steps, "crops": (args.teacher_steps + steps) * 16,
                "teacher_steps": args.teacher_steps, "wall_s": wall_t + wall,
                "teacher_val_ap": _scores(args, teacher, ("largest",), ("val",))["val"]["largest"],
                **_scores(args, ckpt)}
    if name == "supernet+finetune":
        return finetune_row(args, out)
    raise ValueError(name)


def finetune_row(args, out: str) -> dict:
    """The supernet row's hrnet point, extracted with BN recalibration and fine-tuned, on val and test."""
    from scalenas.deploy.arch_files import write_arch_file
    from scalenas.deploy.extract import ExtractOptions, extract
    from scalenas.deploy.model_dir import load_model
    from scalenas.deploy.runtime import build_model_task

    base = json.load(open(row_path(args.out, "supernet")))
    os.makedirs(out, exist_ok=True)
    arch_file = os.path.join(out, "hrnet.json")
    write_arch_file(arch_file, _archs()["hrnet"], {"kind": "space", "name": "hrnet"})
    t0 = time.time()
    model_dir = os.path.join(out, "model")
    r = extract(ExtractOptions(checkpoint=base["checkpoint"], out=model_dir, arch_file=arch_file, calibrate=True,
                               calib_images=64, calib_batch_size=32, finetune_epochs=args.finetune_epochs,
                               finetune_lr=args.finetune_lr, eval_split="val", latency_iters=1, overwrite=True),
                log=lambda m: None)
    wall = time.time() - t0
    lm = load_model(model_dir)
    test = build_model_task(lm.meta, model_dir, need_data=True).evaluate(lm.net, "test", device="cpu")
    res = {"val": {"hrnet": r["card"]["metric"]["value"]}, "test": {"hrnet": test["AP"]}}
    steps = r["card"]["finetune"]["steps"]
    return {"steps": base["steps"] + steps, "crops": base["crops"] + steps * 16, "finetune_steps": steps,
            "finetune_epochs": args.finetune_epochs, "finetune_lr": args.finetune_lr,
            "wall_s": base["wall_s"] + wall, **res}


def named_row(args, name: str) -> dict:
    return {"name": name, **row(args, name)}


def run_rows(args) -> list[dict]:
    """The independent rows on ``--workers`` spawned processes, then the fine-tuning row (it starts from
    the supernet row's checkpoint)."""
    first = [n for n in ROWS if n != "supernet+finetune"]
    rows = cached_rows(args.out, {n: partial(named_row, args, n) for n in first}, args.workers)
    rows.update(cached_rows(args.out, {"supernet+finetune": partial(named_row, args, "supernet+finetune")}))
    return [rows[n] for n in ROWS]


def report(args, rows: list[dict]) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    table = [[r["name"], r["steps"], r["crops"], f"{r['wall_s'] / 60:.1f}",
              *[fmt(r[split].get(s)) for split in ("val", "test") for s in SUBNETS]] for r in rows]
    alone = next(r for r in rows if r["name"] == "hrnet_alone")
    sn, kd, ft = (next(r for r in rows if r["name"] == n) for n in ("supernet", "teacher_kd", "supernet+finetune"))
    lines = [f"# Top-down demo budget: what {args.steps} training steps of 16 crops buy", "",
             f"The demo's data and settings (`demo.settings.POSE`), one torch thread per row, {args.workers} rows at "
             f"a time ({machine()}). AP after BN recalibration on 64 crops, flip test, ground-truth boxes; "
             f"val: 40 images, test: 60. `hrnet_alone` trains only the hrnet subnet (its other columns are "
             f"untrained subnets).", "",
             *markdown_table(["row", "steps", "crops", "wall min", *[f"{sp} AP {s}" for sp in ("val", "test")
                                                                    for s in SUBNETS]], table), "",
             f"Reading: the hrnet subnet trained alone with the whole budget reaches test AP "
             f"{alone['test']['hrnet']:.2f}; inside the supernet, which trains one of 11 groups' subnets per step, "
             f"the same steps give it {sn['test']['hrnet']:.2f}. A demo bar of test AP 40 for the supernet's hrnet "
             f"point asks inherited weights to match a network trained alone with the same minutes.", "",
             f"Initialising the supernet from the largest subnet trained alone for {kd['teacher_steps']} steps "
             f"(val AP {kd['teacher_val_ap']:.2f}) and distilling from it (method §5.2) gives test AP "
             f"{_three(kd['test'])} (largest / smallest / hrnet) against the demo recipe's {_three(sn['test'])}. "
             f"Fine-tuning the extracted hrnet point for {ft['finetune_epochs']} epochs ({ft['finetune_steps']} "
             f"steps, Adam {ft['finetune_lr']:g}) takes it from {sn['test']['hrnet']:.2f} to "
             f"{ft['test']['hrnet']:.2f}.", ""]
    return "\n".join(lines)


def plot(path: str, rows: list[dict]) -> str:
    """Test AP per row, one bar per subnet (a row that did not train a subnet shows none)."""
    from scalenas.study.plots import _figure, _save

    plt = _figure()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.26
    for i, sub in enumerate(SUBNETS):
        xs = [j + (i - 1) * width for j, r in enumerate(rows) if _trained(r, sub)]
        ys = [r["test"][sub] for r in rows if _trained(r, sub)]
        ax.bar(xs, ys, width, label=sub)
    ax.axhline(40, color="k", ls="--", lw=1, label="issue 14's demo bar (test AP 40)")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows])
    ax.set_ylabel("test AP (60 unseen images)")
    ax.legend(fontsize=8, loc="upper left")
    return _save(plt, fig, path)


def _trained(r: dict, sub: str) -> bool:
    return sub in r["test"] and (r["name"] != "hrnet_alone" or sub == "hrnet")


def _three(ap: dict) -> str:
    return " / ".join(f"{ap[s]:.2f}" for s in SUBNETS)


def main():
    ap = bench_parser(__doc__, "PREFIX.json, PREFIX.md and PREFIX.png")
    ap.add_argument("--steps", type=int, default=1600, help="the demo's training steps (default 1600)")
    ap.add_argument("--teacher-steps", type=int, default=600)
    ap.add_argument("--student-steps", type=int, default=900)
    ap.add_argument("--finetune-epochs", type=int, default=15)
    ap.add_argument("--finetune-lr", type=float, default=1e-3)
    args = ap.parse_args()
    rows, md = run_and_report(args, run_rows, report)
    if args.publish:
        keep = {k: v for k, v in vars(args).items() if k not in ("out", "publish")}
        publish(args.publish, keep, {"rows": [{k: v for k, v in r.items() if k != "checkpoint"} for r in rows]}, md,
                partial(plot, rows=rows), "test AP")


if __name__ == "__main__":
    main()
