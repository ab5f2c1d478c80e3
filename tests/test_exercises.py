"""The course assignments of `nbs/exercises/`.

* `00_checks` (the check functions) and every `*_solution.ipynb` run through nbdev's own test runner, as
  `tests/test_notebooks.py` runs `nbs/*.ipynb`; a solution asserts that its checks pass.
* Every assignment (the notebook a student fills in) runs to its end without an error, and each of its check cells
  prints FAIL with the not-implemented message instead of a traceback.
* Every assignment is what `discffusion.exercises.assignment_from_solution` makes of its solution, so the two
  cannot drift apart (regenerate with `write_assignment`, then `nbdev_clean`).

Cells flagged with a `tst_flags` flag of settings.ini (`slow`, `gpu`) are skipped, as in `test_notebooks.py`.
"""
import json, os
import pytest
from execnb.shell import CaptureShell
from nbdev.config import get_config
from nbdev.frontmatter import FrontmatterProc
from nbdev.process import NBProcessor
from nbdev.test import test_nb as run_notebook
from generate import ROOT
from discffusion.exercises import assignment_from_solution

EXERCISES = ROOT/'nbs'/'exercises'
SOLUTIONS = sorted(EXERCISES.glob('*_solution.ipynb'))
ASSIGNMENTS = [p.with_name(p.name.replace('_solution.ipynb', '.ipynb')) for p in SOLUTIONS]
NOT_IMPLEMENTED = 'is not implemented yet: replace `raise NotImplementedError()` under `# YOUR CODE HERE`'

def _flags() -> set:
    "The cell flags to skip: settings.ini's `tst_flags` less those forced by `DISCFFUSION_NB_FLAGS`."
    skip = set(get_config(path=ROOT).get('tst_flags', '').split())
    return skip - set(os.environ.get('DISCFFUSION_NB_FLAGS', '').split())

def _src(cell) -> str: return cell['source'] if isinstance(cell['source'], str) else ''.join(cell['source'])

def test_every_exercise_has_both_notebooks():
    assert len(SOLUTIONS) == 4, [p.name for p in SOLUTIONS]
    assert all(p.exists() for p in ASSIGNMENTS), [p.name for p in ASSIGNMENTS if not p.exists()]

@pytest.mark.notebook
@pytest.mark.parametrize('nb', [EXERCISES/'00_checks.ipynb', *SOLUTIONS], ids=lambda p: p.stem)
def test_notebook_runs(nb):
    ok, seconds = run_notebook(nb, skip_flags=sorted(_flags()), showerr=True)
    assert ok, f"{nb.name} failed after {seconds:.1f}s (traceback above)"

def run_cells(path):
    "The notebook at `path` run as nbdev's runner runs it (same skipped cells), keeping every cell's outputs."
    nb, flags = NBProcessor(path, procs=FrontmatterProc, process=True).nb, _flags()
    def skip(cell):
        if cell.cell_type != 'code': return True
        directives = getattr(cell, 'directives_', {}) or {}
        return directives.get('eval:', [''])[0].lower() == 'false' or bool(flags & directives.keys())
    cwd = os.getcwd()
    try:
        os.chdir(path.parent)
        CaptureShell(path).run_all(nb, exc_stop=True, preproc=skip)
    finally: os.chdir(cwd)
    return nb

def _text(cell) -> str:
    "The text a cell printed or displayed."
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(_src({'source': o['text']}))
        elif 'text/plain' in o.get('data', {}): out.append(_src({'source': o['data']['text/plain']}))
    return ''.join(out)

@pytest.mark.notebook
@pytest.mark.parametrize('nb', ASSIGNMENTS, ids=lambda p: p.stem)
def test_assignment_fails_its_checks_with_a_message(nb):
    cells = run_cells(nb).cells   # `exc_stop=True`: a cell that raises fails this test with its traceback
    checks = [c for c in cells if c.cell_type == 'code' and 'report = check_' in c.source]
    assert checks, f"{nb.name}: no check cell"
    for c in checks:
        text = _text(c)
        assert text.startswith('FAIL · ') and NOT_IMPLEMENTED in text and 'Traceback' not in text, (c.source, text)
    assert not any(o.get('output_type') == 'error' for c in cells for o in c.get('outputs', []))

@pytest.mark.parametrize('solution', SOLUTIONS, ids=lambda p: p.stem)
def test_assignment_is_generated_from_its_solution(solution):
    want = assignment_from_solution(json.loads(solution.read_text(encoding='utf-8')), solution.name)
    assignment = solution.with_name(solution.name.replace('_solution.ipynb', '.ipynb'))
    got = json.loads(assignment.read_text(encoding='utf-8'))
    cells = lambda nb: [(c['cell_type'], _src(c)) for c in nb['cells']]
    assert cells(got) == cells(want), f"{assignment.name} is stale: rerun discffusion.exercises.write_assignment"
    assert not any(c.get('outputs') for c in got['cells']), f"{assignment.name}: an assignment ships without outputs"
    text = '\n'.join(_src(c) for c in got['cells'])
    assert '# YOUR CODE HERE' in text and 'SOLUTION' not in text and assignment.name in text  # its own Colab badge
