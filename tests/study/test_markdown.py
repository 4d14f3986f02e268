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


def test_reading_says_the_sampler_taus_as_shares_of_the_noise_ceiling():
    from scalenas.study.markdown import _fidelity_table, _reliability

    seeds = [[10.0, 20.0, 30.0, 40.0, 50.0], [10.0, 30.0, 20.0, 40.0, 50.0]]  # one swap: tau 0.8
    ceiling = stats.noise_ceiling(seeds, resamples=20)
    fid = stats.rank_agreement([[1.0, 3.0, 2.0, 5.0, 4.0]], seeds[0], resamples=20)  # two swaps: tau 0.6
    doc = {"fidelity": {"grouped": fid}, "noise_ceiling": ceiling,
           "fidelity_vs_images": {"split_half": {"kendall_tau": 0.4, "spearman_rho": 0.5, "kendall_tau_ci95": None}}}
    lines = _reliability(doc)
    assert "τ 0.800" in lines[0] and "grouped's τ 0.60 is 75% of it." in lines[0]
    assert lines[1].startswith("- Reliability of the full evaluation:") and "τ 0.400 (95% CI undefined)" in lines[1]
    assert _fidelity_table(doc)[-1].startswith("| stand-alone seed 0 vs seed k (noise ceiling) | 0.800 [")
    doc["noise_ceiling"] = stats.noise_ceiling([seeds[0], seeds[0][::-1]], resamples=20)  # tau -1
    assert "the sampler taus cannot be read" in _reliability(doc)[0]
