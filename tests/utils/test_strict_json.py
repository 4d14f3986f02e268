"""Every JSON the project writes is strict (RFC 8259): no NaN / Infinity tokens, null instead."""
import json
import math

import numpy as np
import pytest

from scalenas.utils.io import atomic_write_json, dumps_json, strict_jsonable


def strict_loads(text: str):
    """Python's json accepts NaN/Infinity by default; this reader refuses them as other languages do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_metrics_are_written_as_null(tmp_path):
    metrics = {"AP": 12.5, "APM": float("nan"), "ARM": np.float32("nan"), "APL": np.float64(3.25),
               "per_size_iou": [float("inf"), -float("inf"), 0.5], "nested": {"x": (np.float32(1.5), math.nan)},
               "count": np.int64(7), "name": "val"}
    path = tmp_path / "metrics.json"
    atomic_write_json(str(path), metrics)
    with pytest.raises(ValueError, match="NaN"):
        strict_loads('{"APM": NaN}')  # the reader used below does refuse what json.dumps writes by default
    assert strict_loads(path.read_text()) == {
        "AP": 12.5, "APM": None, "ARM": None, "APL": 3.25, "per_size_iou": [None, None, 0.5],
        "nested": {"x": [1.5, None]}, "count": 7, "name": "val"}


def test_dumps_json_keeps_finite_values_exact_and_the_input_untouched():
    data = {"a": [0.1, 1e-300, -2.5e10], "b": float("nan")}
    assert json.loads(dumps_json(data, indent=None)) == {"a": [0.1, 1e-300, -2.5e10], "b": None}
    assert math.isnan(data["b"])  # converted on a copy
    assert strict_jsonable((1, 2.0, "x", None, True)) == [1, 2.0, "x", None, True]


def test_random_state_survives_json():
    import random

    from scalenas.utils.io import lists_to_tuples, tuples_to_lists

    rng = random.Random(7)
    rng.random()
    text = json.dumps(tuples_to_lists(rng.getstate()))
    other = random.Random()
    other.setstate(lists_to_tuples(json.loads(text)))
    assert [other.random() for _ in range(5)] == [rng.random() for _ in range(5)]
