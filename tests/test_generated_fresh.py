"The files generated from notebooks (tests and README) must match the notebooks."
from generate import stale_files, ROOT

def test_generated_files_are_fresh():
    stale = [p.relative_to(ROOT).as_posix() for p in stale_files()]
    assert not stale, f"generated files drifted from the notebooks: {stale}; run `python tests/generate.py`"
