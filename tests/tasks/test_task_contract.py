"""The parts of the task contract every task shares: ``Task.input_hw`` (the size costs are counted at,
from the task's own config key), one ``root`` key for the dataset folder (pose's old ``data_root``
still read, with a deprecation warning naming it), and ``build_task`` by name."""
import warnings

import pytest

from scalenas.data.synth_seg import generate
from scalenas.deploy.extract import default_input_hw
from scalenas.deploy.runtime import apply_task_overrides
from scalenas.errors import ScaleNASError
from scalenas.space.heads import HeadSpec
from scalenas.tasks.base import Task, build_task


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("seg") / "synth")
    generate(root, train=2, val=1, test=1, size=(64, 64), seed=0)
    return root


def test_input_hw_is_each_tasks_own_size_key(seg_root):
    seg = build_task({"name": "segmentation", "root": seg_root, "crop_size": [256, 512]})
    pose = build_task({"name": "pose-bottomup", "input_size": 640})
    synth = build_task({"name": "synthetic-regression", "size": 96})
    assert (seg.input_hw, pose.input_hw, synth.input_hw) == ((256, 512), (640, 640), (96, 96))


class _NoSize(Task):
    name = "no-size"

    head = HeadSpec(kind="pose-topdown")
    build_dataset = loss = evaluate = None


def test_a_task_without_a_size_names_the_search_key_and_extract_falls_back_to_the_head():
    with pytest.raises(ScaleNASError, match=r"^search\.input_hw: task 'no-size' does not say its input size"):
        _NoSize().input_hw
    assert default_input_hw(_NoSize(), _NoSize.head) == (256, 192)
    assert default_input_hw(None, HeadSpec(kind="seg")) == (1024, 2048)
    assert HeadSpec(kind="pose-bottomup").default_input_hw == (512, 512)


@pytest.mark.parametrize("name", ["pose-bottomup", "pose-topdown"])
def test_pose_reads_root_and_the_old_data_root_with_one_deprecation_line(tmp_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new key warns about nothing
        assert build_task({"name": name, "root": str(tmp_path)}).cfg.root == str(tmp_path)
    with pytest.warns(FutureWarning) as rec:
        task = build_task({"name": name, "data_root": str(tmp_path)})
    assert task.cfg.root == str(tmp_path)
    (w,) = rec
    assert str(w.message) == "task.data_root is deprecated: rename it to task.root"
    # printed as one line: no source file, so no source line under it
    assert warnings.formatwarning(w.message, w.category, w.filename, w.lineno) == (
        "scalenas:0: FutureWarning: task.data_root is deprecated: rename it to task.root\n")
    with pytest.raises(ScaleNASError, match=r"task: .*data_root is the old name of root; give only root"):
        build_task({"name": name, "data_root": "/a", "root": "/b"})


def test_a_bare_data_path_sets_root_for_every_task():
    assert apply_task_overrides({"name": "pose-bottomup", "root": "/a"}, ["/b"])["root"] == "/b"
    assert apply_task_overrides({"name": "segmentation", "root": "/a"}, ["/b"])["root"] == "/b"
    with pytest.raises(ScaleNASError, match="--data /b: task 'synthetic-regression' reads no dataset folder"):
        apply_task_overrides({"name": "synthetic-regression"}, ["/b"])
