"""Every notebook's `#| gpu` cells, run on the CPU exactly as written, so nothing in them is only ever run by hand.

A GPU section reads its model, data and device from `DISCFFUSION_SD_MODEL`, `DISCFFUSION_DATA` and
`DISCFFUSION_DEVICE` (real defaults: Stable Diffusion 2.1-base from the hub, `data/`, CUDA), and its CLIP baseline
from `DISCFFUSION_CLIP_MODEL` (openai/clip-vit-large-patch14). Here they point at a random Stable-Diffusion-2-shaped
pipeline saved to a folder as fp16 weight files (so the cells' own `from_pretrained(folder, variant='fp16')` runs),
tiny datasets in the real formats, the CPU (so fp32), and a tiny random CLIP (all in `gpu_fixtures.py`); the
few-shot sections train 2 steps (`DISCFFUSION_TRAIN_STEPS`) instead of their 100. Each notebook is one case, run
through nbdev's runner with the `gpu` flag forced and `slow` cells skipped, on the notebook reduced to what its GPU
section may use: its import cells, its exported code, and its `#| gpu` cells — a GPU section must run after the
imports alone, and the lesson's CPU cells are tested by test_notebooks.py.
"""
import json
import pytest, torch
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook
from generate import ROOT, notebooks, _directives, _is_import_cell, _src
from gpu_fixtures import clip_model_folder, data_folder, sd_model_folder

KEEP = {'export', 'exporti', 'exports', 'default_exp', 'gpu'} # the cells a GPU section may use, with the imports

def _code_cells(nb_path):
    return [c for c in json.loads(nb_path.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']
def _has_gpu_cells(nb_path): return any('gpu' in _directives(_src(c)) for c in _code_cells(nb_path))

def gpu_notebooks():
    "The notebooks with a `#| gpu` cell, in order."
    return [pytest.param(nb, id=nb.stem) for nb in notebooks() if _has_gpu_cells(nb)]

# IPython ignores the exit status of a `!command` (it only sets `_exit_code`); a failing command must fail the run.
CHECK_SHELL = """_system = get_ipython().system
def _checked_system(cmd):
    _system(cmd)
    status = get_ipython().user_ns.get('_exit_code')
    if status: raise RuntimeError(f"exit status {status}: !{cmd}")
get_ipython().system = _checked_system"""

def gpu_section(nb_path) -> dict:
    "The notebook with only its import cells, exported code and `#| gpu` cells (no outputs), shell commands checked."
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    keep = lambda c: c['cell_type'] == 'code' and (_is_import_cell(_src(c)) or KEEP & _directives(_src(c)))
    check = dict(cell_type='code', execution_count=None, id='checkshell', metadata={}, outputs=[], source=CHECK_SHELL)
    nb['cells'] = [check] + [c | dict(outputs=[], execution_count=None) for c in nb['cells'] if keep(c)]
    return nb

@pytest.fixture(scope='module')
def gpu_env(tmp_path_factory):
    "The DISCFFUSION_* settings of a CPU run: a random SD-2-shaped model folder, the data folder, the CPU, a CLIP."
    root = tmp_path_factory.mktemp('gpu-cells')
    return dict(DISCFFUSION_SD_MODEL=str(sd_model_folder(root)), DISCFFUSION_DATA=str(data_folder(root)),
                DISCFFUSION_DEVICE='cpu', DISCFFUSION_CLIP_MODEL=str(clip_model_folder(root)),
                DISCFFUSION_TRAIN_STEPS='2', HF_HUB_OFFLINE='1')

def test_gpu_section_keeps_imports_exports_and_gpu_cells():
    section = gpu_section(ROOT/'nbs'/'13_visualize.ipynb')
    kinds = [_directives(_src(c)) or {'import'} for c in section['cells'][1:]]
    assert {'gpu'} in kinds and {'export'} in kinds and {'import'} in kinds
    assert all(c['cell_type'] == 'code' and not c['outputs'] for c in section['cells'])

@pytest.mark.notebook
@pytest.mark.parametrize('nb', gpu_notebooks())
def test_gpu_cells_run_on_cpu(nb, gpu_env, monkeypatch, tmp_path):
    for k, v in gpu_env.items(): monkeypatch.setenv(k, v)
    path = tmp_path/nb.name
    path.write_text(json.dumps(gpu_section(nb)), encoding='utf-8')
    skip = get_config(path=ROOT).get('tst_flags', '').split()
    ok, seconds = run_notebook(path, skip_flags=skip, force_flags=['gpu'], showerr=True)
    assert ok, f"{nb.name}: its #| gpu cells failed on the CPU after {seconds:.1f}s (traceback above)"

# The memory savers of `core.gpu_options` on the same random SD-2-shaped pipeline: neither changes a score.

def _scores(pipe):
    from discffusion.scoring import DSDScorer
    from discffusion.shapes import make_split
    ex = make_split('test', 2, seed=0)
    sc = DSDScorer.from_pipeline(pipe, preset='official', timesteps=[300, 700])
    return sc.score([e.image for e in ex], [e.caption for e in ex])

def _load(gpu_env):
    from discffusion.core import load_pipeline
    return load_pipeline(gpu_env['DISCFFUSION_SD_MODEL'], 'cpu', torch.float32, variant='fp16')

def test_attention_slicing_keeps_scores(gpu_env):
    from discffusion.core import gpu_options
    pipe = _load(gpu_env)
    before = _scores(pipe)
    gpu_options(pipe, attention_slicing=True)
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {'SlicedAttnProcessor'}
    torch.testing.assert_close(_scores(pipe), before, atol=1e-5, rtol=0)

def test_encoder_offload_keeps_unet_and_scores(gpu_env):
    "The offload `gpu_options` sets up on CUDA, with the CPU as its device (no GPU here): hooks, and the same scores."
    from discffusion.core import _offload_encoders, gpu_options
    pipe = _load(gpu_env)
    before = _scores(pipe)
    _offload_encoders(pipe, torch.device('cpu'))
    assert hasattr(pipe.text_encoder, '_hf_hook') and hasattr(pipe.vae, '_hf_hook')
    assert not hasattr(pipe.unet, '_hf_hook')
    torch.testing.assert_close(_scores(pipe), before, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='cpu_offload: model CPU offload moves models between the CPU and a CUDA GPU'):
        gpu_options(pipe, cpu_offload=True)

def test_failing_shell_command_fails_the_run(tmp_path):
    shell = dict(cell_type='code', execution_count=None, id='shell', metadata={}, outputs=[], source='#| gpu\n!false')
    nb = dict(cells=[shell], metadata={}, nbformat=4, nbformat_minor=5)
    (tmp_path/'shell.ipynb').write_text(json.dumps(nb))
    path = tmp_path/'checked.ipynb'
    path.write_text(json.dumps(gpu_section(tmp_path/'shell.ipynb')))
    assert run_notebook(tmp_path/'shell.ipynb', force_flags=['gpu'], showerr=False)[0]   # IPython alone: passes
    assert not run_notebook(path, force_flags=['gpu'], showerr=False)[0]
