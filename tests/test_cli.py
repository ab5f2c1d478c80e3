"The `discffusion` command on an SD-2.x-shaped pipeline saved to a folder."
import json, shutil, subprocess
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
    run(args[:-1])
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and table[1].startswith('a red cube') and all(l.count('*') == 1 for l in table[1:])

def test_console_script_reports_bad_image(model_and_images):
    model, _ = model_and_images
    assert shutil.which('discffusion'), 'the console script is not installed (pip install -e .)'
    r = subprocess.run(['discffusion', 'score', '--model', model, '--image', '/no/such.png', '--text', 'x'],
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'images[0]: no file at /no/such.png' in r.stderr
