"""The end-to-end task tests drive the short supernet run of ``bench/quickrun.py``: it is a harness
over the library (train, then search's BN calibration), not part of it."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bench"))
