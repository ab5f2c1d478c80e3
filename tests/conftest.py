import os, sys
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch
# The suite runs one pytest-xdist worker per core. Tiny models run fastest on one thread each, and two OpenMP
# threads per worker would spin against the other worker (measured: a notebook took 311 s instead of 5 s).
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))

def pytest_pycollect_makeitem(collector, name, obj):
    "Generated test files import fastcore's `test_eq`, `test_close`...: those are helpers, not tests."
    if callable(obj) and getattr(obj, '__module__', '') == 'fastcore.test': return []
