"""One registry idiom: members by name, errors naming the key, the choices and the closest name."""
import subprocess
import sys

import pytest

from scalenas.errors import ScaleNASError
from scalenas.nets.heads import HEADS
from scalenas.space.heads import HEAD_KINDS
from scalenas.utils.registry import Registry


def _family():
    reg = Registry("widget", "model.widget", attr="kind")

    @reg.register
    class Round:
        kind = "round"

        def __init__(self, size):
            self.size = size

    @reg.register
    class Square:
        kind = "square"

    return reg, Round


def test_get_and_build_by_name():
    reg, Round = _family()
    assert reg.names() == ["round", "square"]
    assert reg.get("round") is Round
    assert reg.build("round", size=3).size == 3


def test_an_unknown_name_names_the_key_the_choices_and_the_closest():
    reg, _ = _family()
    with pytest.raises(ScaleNASError) as e:
        reg.get("rond")
    assert str(e.value) == "model.widget: unknown widget 'rond'; choose one of round, square (did you mean 'round'?)"
    with pytest.raises(ScaleNASError, match=r"choose one of round, square$"):
        reg.get("hexagon")


def test_a_name_taken_twice_or_missing_is_refused():
    reg, _ = _family()
    with pytest.raises(TypeError, match="registered twice"):
        @reg.register
        class OtherRound:
            kind = "round"

    with pytest.raises(TypeError, match="non-empty 'kind'"):
        @reg.register
        class Nameless:
            pass


def test_task_modules_register_without_an_import_list():
    # a fresh interpreter: the first lookup imports every module of scalenas.tasks
    code = "from scalenas.tasks import TASKS; print(','.join(TASKS.names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "pose-bottomup,pose-topdown,segmentation,synthetic-regression"


def test_every_head_kind_has_a_module():
    assert HEADS.names() == sorted(HEAD_KINDS)
