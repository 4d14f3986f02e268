import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from scalenas.errors import ScaleNASError
from scalenas.train import checkpoint as ckpt
from scalenas.train.config import RunConfig
from scalenas.train.engine import SupernetTrainer, train_supernet

HERE = os.path.dirname(__file__)


def _run_cli(cfg_path, *extra, **kw):
    return subprocess.Popen([sys.executable, "-m", "scalenas.cli", "train-supernet", str(cfg_path), "--resume", "auto",
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def test_kill_and_resume_is_bit_identical(tmp_path, make_cfg):
    """A run killed (SIGKILL) after a checkpoint and resumed ends bit-identical to an uninterrupted run."""
    steps = 24
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "cfg.yaml").write_text(yaml.safe_dump(make_cfg(d / "run", steps=steps, workers=2)))
    assert _run_cli(a / "cfg.yaml").wait() == 0
    p = _run_cli(b / "cfg.yaml")
    first = b / "run" / "checkpoints" / "step_00000008.pt"
    deadline = time.time() + 300
    while not first.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (b / "run" / "checkpoints" / f"step_{steps:08d}.pt").exists(), "the run finished before the kill"
    q = _run_cli(b / "cfg.yaml")
    assert q.wait() == 0, q.stderr.read().decode()
    wa = ckpt.load_checkpoint(str(a / "run" / "checkpoints" / f"step_{steps:08d}.pt"))
    wb = ckpt.load_checkpoint(str(b / "run" / "checkpoints" / f"step_{steps:08d}.pt"))
    assert wa["step"] == wb["step"] == steps
    la, lb = ([json.loads(x) for x in (d / "run" / "train_log.jsonl").read_text().splitlines()] for d in (a, b))
    assert [r["step"] for r in lb] == [r["step"] for r in la] == [10, 20, 24]  # no step logged twice
    assert [r["loss"] for r in lb] == [r["loss"] for r in la]
    for k, v in wa["model"].items():
        assert torch.equal(v, wb["model"][k]), k
    sa, sb = wa["optimizer"]["state"], wb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k, v in sa[i].items():
            assert torch.equal(v, sb[i][k]) if torch.is_tensor(v) else v == sb[i][k]


def test_checkpoint_contents_and_run_files(tmp_path, make_cfg):
    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=8, tensorboard=True, log_every=2))
    res = train_supernet(cfg)
    assert res["steps"] == 8 and len(res["losses"]) == 8
    state = torch.load(res["checkpoint"], weights_only=True)  # loads without pickle code execution
    for key in ("model", "optimizer", "scheduler", "sampler", "rng", "step", "config", "versions", "meta"):
        assert key in state
    assert state["meta"]["head"]["kind"] == "seg" and state["versions"]["torch"].startswith("2.13")
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["latest", "step_00000004.pt", "step_00000008.pt"]
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step_00000008.pt"
    logs = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [2, 4, 6, 8]
    assert {"loss", "lr", "group", "arch", "img_per_s", "mse"} <= set(logs[0])
    assert (tmp_path / "run" / "config.yaml").exists() and (tmp_path / "run" / "versions.json").exists()
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "run" / "tb"))
    net, _ = ckpt.load_supernet(res["checkpoint"])
    assert torch.equal(net.state_dict()["head.classifier.weight"], state["model"]["head.classifier.weight"])


def test_resume_auto_skips_a_corrupt_newest_checkpoint(tmp_path, make_cfg):
    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=8))
    train_supernet(cfg)
    newest = tmp_path / "run" / "checkpoints" / "step_00000008.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    unsafe = tmp_path / "run" / "checkpoints" / "step_00000009.pt"
    torch.save({"step": 9, "payload": _RunsCode(str(tmp_path / "pwned"))}, unsafe)
    path, skipped = ckpt.find_resume(str(tmp_path / "run"))
    assert path.endswith("step_00000004.pt")
    assert [os.path.basename(p) for p, _ in skipped] == ["step_00000009.pt", "step_00000008.pt"]
    assert "needs the global 'io.open'" in skipped[0][1] and "not a complete checkpoint (truncated" in skipped[1][1]
    with pytest.raises(ScaleNASError, match="step_00000008.pt"):
        ckpt.load_checkpoint(str(newest))
    # the resumed run says which checkpoints it skipped and why, one line each
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        SupernetTrainer(cfg, resume="auto")
    lines = out.getvalue().splitlines()
    assert lines[0] == f"resume: skipped {skipped[0][1]}" and lines[1] == f"resume: skipped {skipped[1][1]}"
    assert lines[2].startswith("resumed from") and lines[2].endswith("step_00000004.pt at step 4")
    assert not (tmp_path / "pwned").exists()


class _RunsCode:
    """Unpickling this calls open(path, "w"): a stand-in for arbitrary code execution."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loss_decreases_and_inactive_weights_are_untouched(tmp_path, make_cfg):
    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=30, ckpt_every=0))
    tr = SupernetTrainer(cfg)
    # a slot used by no subnet of this space stays exactly at its initial value (no decay, no momentum)
    res = tr.train()
    first, last = sum(res["losses"][:5]) / 5, sum(res["losses"][-5:]) / 5
    assert last < 0.7 * first


def test_nonfinite_loss_stops_with_step_and_arch(tmp_path, make_cfg):
    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=10))
    tr = SupernetTrainer(cfg)
    orig = tr.task.loss

    def bad_loss(out, batch):
        loss, parts = orig(out, batch)
        return (loss * float("nan") if tr.step == 5 else loss), parts

    tr.task.loss = bad_loss
    arch = tr.sampler.archs_for(5)[0][0]
    with pytest.raises(ScaleNASError, match=f"step 5 for subnet {arch.hash}"):
        tr.train()
    saved = ckpt.load_checkpoint(str(tmp_path / "run" / "checkpoints" / "step_00000005.pt"))
    assert saved["step"] == 5 and all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("variant", [
    {"sampler": {"kind": "sandwich", "num_random": 1}},
    {"sampler": {"kind": "uniform"}, "train": {"accumulate": 2, "grad_clip": 1.0, "amp": "bf16"}},
    {"train": {"distill": {"teacher": "largest", "weight": 0.5},
               "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
               "schedule": {"name": "multistep", "milestones": [3], "warmup_steps": 2}}},
])
def test_variants_run(tmp_path, make_cfg, variant):
    d = make_cfg(tmp_path / "run", steps=4, ckpt_every=0)
    for k, v in variant.items():
        d.setdefault(k, {}).update(v)
    res = train_supernet(RunConfig.model_validate(d))
    assert res["steps"] == 4 and all(map(lambda x: x == x, res["losses"]))


def test_teacher_from_checkpoint_and_pretrained_init(tmp_path, make_cfg):
    first = train_supernet(RunConfig.model_validate(make_cfg(tmp_path / "t", steps=4)))
    d = make_cfg(tmp_path / "s", steps=3, optimizer={"lr": 0.01})
    # a 4-step teacher has unsettled eval-mode BN statistics (huge outputs): test the mechanism only
    d["train"]["distill"] = {"teacher": first["checkpoint"], "weight": 1e-12}
    d["model"] = {"pretrained": first["checkpoint"]}
    tr = SupernetTrainer(RunConfig.model_validate(d))
    assert tr.init_report["loaded"] == len(tr.net.state_dict())
    res = tr.train()
    assert any(r for r in open(tmp_path / "s" / "train_log.jsonl") if '"kd"' in r)
    assert res["steps"] == 3


def test_schedules():
    from scalenas.train.config import ScheduleCfg
    from scalenas.train.optim import LRFactor

    poly = LRFactor(ScheduleCfg(name="poly", power=0.9), 100)
    assert poly(0) == 1.0 and abs(poly(50) - 0.5 ** 0.9) < 1e-12
    ms = LRFactor(ScheduleCfg(name="multistep", milestones=[10, 20], gamma=0.1), 30)
    assert ms(9) == 1.0 and abs(ms(10) - 0.1) < 1e-12 and abs(ms(25) - 0.01) < 1e-12
    wu = LRFactor(ScheduleCfg(name="constant", warmup_steps=10, warmup_factor=0.1), 30)
    assert abs(wu(0) - 0.1) < 1e-12 and abs(wu(5) - 0.55) < 1e-12 and wu(10) == 1.0


def _steps_in_tb(tb_dir, tag="loss/total"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_resume_from_an_earlier_checkpoint_truncates_the_logs(tmp_path, make_cfg):
    """A run that went on past the checkpoint it is resumed from (as a killed run does) leaves no
    duplicate step in train_log.jsonl or in the TensorBoard events."""
    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=8, log_every=1, tensorboard=True, keep_last=0))
    first = train_supernet(cfg)
    log = tmp_path / "run" / "train_log.jsonl"
    with open(log, "a") as f:
        f.write('{"step": 9, "loss": 0.')  # a half-written line of a killed run
    again = train_supernet(cfg, resume=str(tmp_path / "run" / "checkpoints" / "step_00000004.pt"))
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 9))
    # the resumed steps are logged by the second run, which reproduces the first exactly
    assert [r["loss"] for r in recs] == first["losses"][:4] + again["losses"]
    assert again["losses"] == first["losses"][4:]
    tb = _steps_in_tb(tmp_path / "run" / "tb")
    assert [s for s, _ in tb] == list(range(1, 9))
    assert [v for _, v in tb] == pytest.approx(first["losses"], rel=1e-6)


def test_zero_steps_saves_the_untrained_supernet(tmp_path, make_cfg):
    """train.steps=0: a step-0 checkpoint of the initial weights, that search and extract accept."""
    from scalenas.cli import main as cli_main

    d = make_cfg(tmp_path / "run", steps=0)
    d["task"].update(num_search=8, num_val=4, num_test=4)
    cfg = RunConfig.model_validate(d)
    res = train_supernet(cfg)
    assert res["steps"] == 0 and res["losses"] == [] and res["checkpoint"].endswith("step_00000000.pt")
    state = ckpt.load_checkpoint(res["checkpoint"])
    torch.manual_seed(cfg.seed)  # the engine's initialisation, rebuilt
    fresh = SupernetTrainer(cfg).net.state_dict()
    assert state["step"] == 0 and all(torch.equal(v, fresh[k]) for k, v in state["model"].items())
    assert not (tmp_path / "run" / "train_log.jsonl").read_text()
    out = tmp_path / "search"
    assert cli_main(["search", res["checkpoint"], "initial=2", "population=2", "parents=2", "generations=0",
                     "calib_images=4", "calib_batch_size=4", "workers=1", "-o", str(out), "--quiet"]) == 0
    evaluated = [json.loads(x) for x in (out / "evaluations.jsonl").read_text().splitlines() if x.strip()]
    assert sum(r["kind"] == "initial" for r in evaluated) == 2
    assert json.loads((out / "pareto.json").read_text())["front"]
    arch = tmp_path / "arch.json"
    from scalenas.space.space import SearchSpace

    arch.write_text(SearchSpace.from_dict(cfg.space.model_dump()).smallest().to_json())
    assert cli_main(["extract", res["checkpoint"], str(arch), "-o", str(tmp_path / "model"), "--calib-images", "4",
                     "--calib-batch-size", "4", "--latency-iters", "0"]) == 0
    assert json.loads((tmp_path / "model" / "model.json").read_text())["arch_hash"]


def test_run_header_names_the_threads_and_restores_them(tmp_path, make_cfg, capsys, monkeypatch):
    from scalenas.utils.runtime import usable_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=1, threads=1, workers=0))
    train_supernet(cfg)
    lines = capsys.readouterr().out.splitlines()
    assert f"threads: 1 (cores {usable_cores()}, loader workers 0, bf16: no)" in lines
    assert "precision: fp32 (train.amp none)" in lines
    assert torch.get_num_threads() == before  # the training rule does not leak into the caller


def test_training_loader_workers_are_capped_at_the_cores(tmp_path, make_cfg, capsys, monkeypatch):
    """train.workers 4 on a 2-core share starts 2 loader workers (more only queue, and torch's warning would
    break a worker error's one line); the header says what was configured."""
    from scalenas.train import data, engine
    from scalenas.utils import runtime

    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(engine, "usable_cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    made, real = [], data.make_loader

    def spy(dataset, collate, batch_sampler, seed, workers, **kw):
        made.append(workers)
        return real(dataset, collate, batch_sampler, seed, 0, **kw)  # the count is what is tested

    monkeypatch.setattr(engine, "make_loader", spy)
    train_supernet(RunConfig.model_validate(make_cfg(tmp_path / "run", steps=1, threads=1, workers=4)))
    assert made == [2]
    assert "threads: 1 (cores 2, loader workers 2 of 4 configured, bf16: no)" in capsys.readouterr().out.splitlines()


def test_time_steps_times_engine_steps_and_leaves_nothing(tmp_path, make_cfg):
    """The demo's step timing: real engine steps (a trainer in a scratch folder), one time per step,
    the caller's run folder untouched and its thread count restored."""
    from scalenas.train.engine import time_steps

    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=1, threads=1))
    prev = torch.get_num_threads()
    times = time_steps(cfg, 3)  # more steps than the config's: the scratch run is lengthened
    assert len(times) == 3 and all(0 < t < 60 for t in times)
    assert not os.path.exists(tmp_path / "run")
    assert torch.get_num_threads() == prev


def test_resume_with_a_changed_schedule_refuses_naming_the_key(tmp_path, make_cfg):
    """A resumed run keeps the checkpoint's schedule (LambdaLR restores its milestones), so a changed
    one is refused, naming the key, before config.yaml records it."""
    d = make_cfg(tmp_path / "run", steps=4, schedule={"name": "multistep", "milestones": [3]})
    train_supernet(RunConfig.model_validate(d))
    recorded = (tmp_path / "run" / "config.yaml").read_text()
    d["train"]["schedule"]["milestones"] = [2]
    d["train"]["steps"] = 6
    with pytest.raises(ScaleNASError, match=r"step_00000004\.pt: train\.schedule\.milestones is \[2\] in the config "
                                            r"but \[3\] in the checkpoint; a resumed run keeps"):
        SupernetTrainer(RunConfig.model_validate(d), resume="auto")
    assert (tmp_path / "run" / "config.yaml").read_text() == recorded
    # poly's LR depends on the total: a changed train.steps is refused too
    p = make_cfg(tmp_path / "poly", steps=4)
    train_supernet(RunConfig.model_validate(p))
    p["train"]["steps"] = 6
    with pytest.raises(ScaleNASError, match=r"train\.steps is 6 in the config but 4 in the checkpoint; the poly LR "
                                            r"schedule depends on the total steps"):
        SupernetTrainer(RunConfig.model_validate(p), resume="auto")


def test_resume_extends_a_finished_multistep_run_as_if_planned(tmp_path, make_cfg, capsys):
    """train.steps may grow on resume under a schedule that does not depend on it: the extended run
    equals one configured with the new total from the start, and says so."""
    sched = {"name": "multistep", "milestones": [3]}
    full = train_supernet(RunConfig.model_validate(make_cfg(tmp_path / "full", steps=6, schedule=sched)))
    d = make_cfg(tmp_path / "run", steps=4, schedule=sched)
    train_supernet(RunConfig.model_validate(d))
    d["train"]["steps"] = 6
    capsys.readouterr()
    more = train_supernet(RunConfig.model_validate(d), resume="auto")
    out = capsys.readouterr().out
    assert ("resume: train.steps changed from 4 to 6; the multistep schedule does not depend on it, so training "
            "runs to 6") in out.splitlines()
    assert more["steps"] == 6 and more["losses"] == full["losses"][4:]


def test_resume_with_another_process_count_refuses():
    with pytest.raises(ScaleNASError, match="ck.pt: saved by 2 processes, resumed by 1; the images per step"):
        ckpt.check_resume_config("ck.pt", {}, {}, saved_world=2, world=1)
    assert ckpt.check_resume_config("ck.pt", {"seed": 1}, {"seed": 1}, saved_world=1, world=1) is None
    with pytest.raises(ScaleNASError, match=r"ck.pt: sampler.fusion_options is \[0.5\] in the config but \[0.2\]"):
        ckpt.check_resume_config("ck.pt", {"sampler": {"kind": "grouped", "fusion_options": [0.2]}},
                                 {"sampler": {"kind": "grouped", "fusion_options": [0.5]}})


def test_self_distillation_runs_no_teacher_pass_on_the_largest_groups_steps(tmp_path, make_cfg):
    """teacher: largest on a step that trains only the largest subnet: no teacher pass (its KD term is
    exactly 0), and the same losses and weights as with the pass."""
    runs = {}
    for skip in (True, False):
        d = make_cfg(tmp_path / f"run{skip}", steps=11, ckpt_every=0)
        d["train"]["distill"] = {"teacher": "largest", "weight": 0.5}
        tr = SupernetTrainer(RunConfig.model_validate(d))
        calls = []
        tr.net.register_forward_hook(lambda *a: calls.append(tr.step))
        if not skip:  # the former behaviour: a teacher pass on every step
            orig = tr._teacher_outputs
            tr._teacher_outputs = lambda img, archs: orig(img, [(None, "")])
        res = tr.train()
        largest = [s for s in range(11) if tr.sampler.archs_for(s)[0][0] == tr.space.largest(tr.head.pose_rule)]
        runs[skip] = (res["losses"], {k: v.clone() for k, v in tr.net.named_parameters()}, calls, largest)
        tr.close()
    (loss_a, w_a, calls_a, largest), (loss_b, w_b, calls_b, _) = runs[True], runs[False]
    # the tiny space has 5 sampling groups, the largest one last
    assert largest == [4, 9] == [s for s in range(11) if tr.sampler.archs_for(s)[0][1] == "largest"]
    assert [calls_a.count(s) for s in range(11)] == [1 if s in largest else 2 for s in range(11)]
    assert [calls_b.count(s) for s in range(11)] == [2] * 11  # before: a teacher pass on every step
    assert loss_a == loss_b
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)


def test_fp16_steps_use_a_grad_scaler_saved_in_the_checkpoint(tmp_path, make_cfg, monkeypatch):
    """The fp16 path (a pre-Ampere GPU's fallback), forced on the CPU: autocast in fp16, a grad scaler
    whose state the checkpoint keeps and a resume restores."""
    from scalenas.train import engine

    monkeypatch.setattr(engine, "resolve_amp", lambda req, dev: ("fp16", "forced for the test"))
    cfg = RunConfig.model_validate(make_cfg(tmp_path / "run", steps=2, ckpt_every=0, amp="auto", grad_clip=1.0))
    res = train_supernet(cfg)
    assert res["steps"] == 2 and all(x == x for x in res["losses"])
    saved = ckpt.load_checkpoint(res["checkpoint"])
    assert saved["scaler"]["scale"] > 0 and saved["world_size"] == 1
    tr = SupernetTrainer(cfg, resume="auto")
    tr._start_steps()
    assert tr._scaler.is_enabled() and tr._scaler.get_scale() == saved["scaler"]["scale"]
    tr.close()


@pytest.mark.parametrize("metric", ["crowdpose", "coco"])
def test_missing_optional_dependency_fails_at_start(tmp_path, make_cfg, monkeypatch, metric):
    """A CrowdPose-metric run without xtcocotools stops before the model or the data are built, not at
    its first evaluation days later; the same task with the COCO metric needs nothing optional."""
    monkeypatch.setitem(sys.modules, "xtcocotools", None)       # an import that fails, installed or not
    monkeypatch.setitem(sys.modules, "xtcocotools.coco", None)
    cfg = make_cfg(tmp_path / "run")
    cfg["task"] = {"name": "pose-bottomup", "root": str(tmp_path / "no-data"), "keypoints": "crowdpose",
                   "metric": metric, "input_size": 128, "workers": 0,
                   "train": {"images": "train", "annotations": "train.json"}}
    with pytest.raises(ScaleNASError) as e:
        SupernetTrainer(RunConfig.model_validate(cfg))
    msg = str(e.value)
    assert "\n" not in msg
    if metric == "crowdpose":
        assert "xtcocotools" in msg and "--no-binary xtcocotools" in msg
    else:                                                       # got as far as the (missing) data
        assert "xtcocotools" not in msg and "no-data" in msg
