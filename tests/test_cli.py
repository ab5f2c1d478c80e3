"The `discffusion` command on an SD-2.x-shaped pipeline saved to a folder."
import json, re, shutil, subprocess
import numpy as np, pytest
from PIL import Image
from discffusion.cli import run
from sd_fixtures import sd_pipeline

@pytest.fixture(scope='module')
def model_and_images(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    sd_pipeline(d).save_pretrained(d/'sd')
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(d/f'img{i}.png'); paths.append(str(d/f'img{i}.png'))
    return str(d/'sd'), paths

def test_score_json(model_and_images, capsys):
    model, imgs = model_and_images
    args = ['score', '--model', model, '--image', imgs[0], '--image', imgs[1], '--text', 'a red cube', '--text', 'a dog', '--timesteps', '300', '--json']
    result = run(args)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    assert len(printed['scores']) == 2 and len(printed['scores'][0]) == 2 and printed['preset'] == 'official'
    assert printed['run']['device'] == 'cpu' and printed['run']['peak_memory_of'] == 'peak RSS of the process'
    assert printed['run']['seconds'] > 0 and printed['run']['peak_memory_mib'] > 0
    run(args[:-1])
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert len(table) == 3 and table[1].startswith('a red cube') and all(l.count('*') == 1 for l in table[1:])
    meter = r'discffusion score: [\d.]+ s on cpu, peak memory [\d,]+ MiB \(peak RSS of the process\)\n'
    assert re.fullmatch(meter, captured.err), captured.err

def test_console_script_reports_bad_image(model_and_images):
    model, _ = model_and_images
    assert shutil.which('discffusion'), 'the console script is not installed (pip install -e .)'
    r = subprocess.run(['discffusion', 'score', '--model', model, '--image', '/no/such.png', '--text', 'x'],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr == 'discffusion score: error: --image: no file at /no/such.png\n', r.stderr

def test_progress_in_a_log(model_and_images, tmp_path):
    "With stderr a pipe (a log), a progress bar over many updates redraws at most twice, then ends its line once."
    r = subprocess.run(['discffusion', 'eval', '--dataset', 'shapes', '--limit', '12', '--preset', 'attention',
                        '--timesteps', '500'], capture_output=True, cwd=tmp_path)   # bytes: text mode reads \r as \n
    assert r.returncode == 0, r.stderr
    bar = [l for l in r.stderr.split(b'\n') if b'scoring' in l]
    assert len(bar) == 1 and bar[0].count(b'\r') <= 2 and b'24/24' in bar[0], r.stderr   # 12 images, both ways

def test_eval_with_the_shipped_shapes_clip(capsys):
    "`eval --scorer clip` on a shapes dataset scores with the shapes CLIP shipped beside the embedded model, offline."
    result = run(['eval', '--dataset', 'shapes', '--split', 'val', '--scorer', 'clip', '--limit', '20', '--json'])
    assert result['scorer'] == 'clip' and result['metrics']['all']['n'] == 20 * 5 * 2   # both directions
    assert result['metrics']['all']['accuracy'] >= 0.8  # seen colour-shape pairs: its training distribution
