import os, sys
from pathlib import Path
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
sys.path.insert(0, str(Path(__file__).parent))

def pytest_pycollect_makeitem(collector, name, obj):
    "Generated test files import fastcore's `test_eq`, `test_close`...: those are helpers, not tests."
    if callable(obj) and getattr(obj, '__module__', '') == 'fastcore.test': return []
