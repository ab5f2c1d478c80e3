"""The docs build: nbdev's notebook processors, the step `nbdev_preview` and `nbdev_docs` run before Quarto.

They execute every exported cell, every cell that imports something, and the `show_doc` cells, without the rest
of the notebook, so a cell that mixes imports with code that needs earlier cells breaks the docs (and not the
notebook tests). Quarto itself cannot be installed here; this checks everything before it.
"""
import shutil
from nbdev.config import get_config
from nbdev.serve import proc_nbs

def test_docs_processors_run_on_every_notebook():
    root = get_config().config_path
    cache, existed = root/'_proc', (root/'_proc').exists()
    try:
        out = proc_nbs(force=True, n_workers=1)
        done = {p.relative_to(out).as_posix() for p in out.rglob('*.ipynb')}
        expected = {p.relative_to(root).as_posix() for p in root.glob('nbs/*.ipynb')} | {'index.ipynb'}
        assert expected <= done, sorted(expected - done)
    finally:
        if not existed: shutil.rmtree(cache, ignore_errors=True)
