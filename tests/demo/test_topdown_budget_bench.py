"""``bench/topdown_budget.py``: its run configs are the demo's (validated, one thread, the rows' samplers)
and its report says what the rows measured; the training itself is the bench's (40 minutes)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))

import topdown_budget as tb  # noqa: E402

from scalenas.demo.settings import POSE  # noqa: E402
from scalenas.train.config import RunConfig  # noqa: E402


def _args(tmp_path):
    return argparse.Namespace(out=str(tmp_path), steps=1600, teacher_steps=600, student_steps=900,
                              finetune_epochs=15, finetune_lr=1e-3, workers=2, publish=None)


def test_run_configs_are_the_demos_with_one_thread(tmp_path):
    cfg = RunConfig.model_validate(tb.run_config(_args(tmp_path), str(tmp_path / "r"), 1600))
    assert cfg.train.steps == 1600 and cfg.train.threads == 1 and cfg.train.ckpt_every == 0
    assert cfg.train.optimizer.lr == POSE["train"]["optimizer"]["lr"] and cfg.train.batch_size == 16
    assert cfg.task["root"] == os.path.join(str(tmp_path), "data") and cfg.task["input_hw"] == [128, 96]
    kd = RunConfig.model_validate(tb.run_config(_args(tmp_path), "r", 900, model={"pretrained": "t.pt"},
                                                train={"distill": {"teacher": "t.pt", "weight": 0.5}}))
    # a section update keeps the rest of the section
    assert kd.model.pretrained == "t.pt" and kd.model.init == "kaiming"
    assert kd.train.distill.teacher == "t.pt" and kd.train.steps == 900


def _row(name, val, test, **extra):
    return {"name": name, "steps": 1600, "crops": 25600, "wall_s": 600.0, "val": val, "test": test, **extra}


def test_report_and_plot_say_what_the_rows_measured(tmp_path):
    three = lambda a, b, c: {"largest": a, "smallest": b, "hrnet": c}  # noqa: E731
    rows = [_row("supernet", three(32.3, 25.5, 23.3), three(24.3, 19.4, 17.9)),
            _row("teacher_kd", three(27.0, 22.8, 21.5), three(22.8, 17.8, 17.6), teacher_steps=600,
                 teacher_val_ap=27.3),
            _row("hrnet_alone", three(0.0, 0.0, 46.0), three(0.0, 0.0, 41.2)),
            _row("supernet+finetune", {"hrnet": 30.0}, {"hrnet": 25.7}, finetune_epochs=15, finetune_steps=405,
                 finetune_lr=1e-3)]
    md = tb.report(_args(tmp_path), rows)
    assert "| supernet+finetune | 1600 | 25600 | 10.0 | - | - | 30.00 | - | - | 25.70 |" in md
    assert "reaches test AP 41.20; inside the supernet" in md and "the same steps give it 17.90" in md
    assert "gives test AP 22.80 / 17.80 / 17.60 (largest / smallest / hrnet) against the demo recipe's " \
           "24.30 / 19.40 / 17.90" in md
    assert "for 15 epochs (405 steps, Adam 0.001) takes it from 17.90 to 25.70" in md
    assert os.path.getsize(tb.plot(str(tmp_path / "p.png"), rows)) > 5000
    # hrnet_alone's largest and smallest were never trained: no bar for them
    assert [tb._trained(rows[2], s) for s in tb.SUBNETS] == [False, False, True]
