"""study.md and study.json where a rank correlation is undefined: all ties on one side (e.g. the
inherited scores of a 4-image null, where every arch scores 0) make tau NaN in memory; the report says
"undefined (ties)" and the JSON holds null, never the text nan."""
import json

from scalenas.study import stats
from scalenas.study.markdown import UNDEFINED, _fidelity_table, _sampler_table
from scalenas.utils.io import dumps_json


def test_undefined_tau_is_written_as_undefined_and_null():
    standalone = [10.0, 20.0, 30.0, 40.0, 50.0]
    fid = stats.rank_agreement([[0.0] * 5, [0.0] * 5], standalone, resamples=20)
    assert fid["kendall_tau"]["value"] != fid["kendall_tau"]["value"]  # NaN: scipy's tau of a constant
    table = _fidelity_table({"fidelity": {"grouped": fid}})
    assert table[2].startswith(f"| grouped | {UNDEFINED} undefined | {UNDEFINED} undefined |")
    assert f"{UNDEFINED}, {UNDEFINED} |" in table[2] and "nan" not in "\n".join(table)
    view = {"steps": 8, "images_seen": 32, "subnet_passes": 32, "kendall_tau": stats.mean_std([float("nan")] * 2),
            "hypervolume": stats.mean_std([0.25, 0.5])}
    assert _sampler_table({"samplers": {"grouped": view}})[2] == (
        f"| grouped | 8 | 32 | 32 | {UNDEFINED} | 0.3750 ± 0.1768 |")
    doc = json.loads(dumps_json({"fidelity": {"grouped": fid}}))
    tau = doc["fidelity"]["grouped"]["kendall_tau"]
    assert tau["value"] is None and tau["per_seed"] == [None, None] and tau["ci95"] is None
    assert "NaN" not in dumps_json(fid)
