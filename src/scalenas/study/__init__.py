"""``scalenas study``: does the search work? Ranking fidelity of the supernet against stand-alone
training, sampler and strategy ablations, the searched architecture against hrnet from scratch,
and what a search evaluation needs (``pipeline.run_study``)."""
from scalenas.study.pipeline import run_study

__all__ = ["run_study"]
