"""``scalenas demo``: the whole ScaleNAS pipeline on embedded synthetic data, on a CPU, resumable."""
from scalenas.demo.pipeline import run_demo

__all__ = ["run_demo"]
