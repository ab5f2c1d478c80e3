"""Run every notebook through nbdev's own test runner, one pytest case per notebook.

Cells flagged with a `tst_flags` flag of settings.ini (`slow`, `gpu`) are skipped; set
`DISCFFUSION_NB_FLAGS="slow"` to run the slow cells too.
"""
import os
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook
from generate import notebooks, ROOT

@pytest.mark.notebook
@pytest.mark.parametrize('nb', notebooks(), ids=lambda p: p.stem)
def test_notebook_runs(nb):
    skip = get_config(path=ROOT).get('tst_flags', '').split()
    force = os.environ.get('DISCFFUSION_NB_FLAGS', '').split()
    ok, seconds = run_notebook(nb, skip_flags=skip, force_flags=force, showerr=True)
    assert ok, f"{nb.name} failed after {seconds:.1f}s (traceback above)"
