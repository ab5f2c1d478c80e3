"""Property-style tests of the `discffusion` command (issue #16): random malformed flag values and files either give
exit status 0 with a correct result, or exit status 2 with one stderr line that names the flag or file; never a
traceback, never NaN. Seeded (`derandomize`), bounded in examples, no deadline; about a second per ten examples."""
import json, math, shutil
from pathlib import Path
import pytest
from PIL import Image
from hypothesis import HealthCheck, given, settings, strategies as st
from test_cli_probes import Outcome, copy_model, make_adapter, run_cli, write_images
from discffusion.core import embedded_model_path

FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FAST = ['--preset', 'attention', '--timesteps', '500']

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('fuzz')
    write_images(d)
    Image.open(d/'img.png').save(d/'img.bmp')
    make_adapter(d/'adapter')
    copy_model(embedded_model_path(), d/'model')
    return d

def check(o: Outcome, command: str, names: list[str], ok) -> None:
    "Exit 0 with `ok(outcome)` true, or exit 2 with exactly one error line naming one of `names`; no traceback, no NaN."
    assert o.code in (0, 2) and 'Traceback' not in o.err, (o.code, o.err[-3000:])
    if o.out.strip(): json.loads(o.out, parse_constant=reject)   # strict JSON: no NaN, Infinity or -Infinity
    if o.code == 0: assert ok(o), (o.out, o.err); return
    assert len(o.error_lines) == 1 and not o.other_lines, o.err
    line = o.error_lines[0]
    assert line.startswith(f'discffusion {command}: error: '), line
    assert any(n in line for n in names), (names, line)

def reject(constant): raise AssertionError(f'printed {constant}')

def scores_ok(n_text: int, n_img: int):
    "A `score --json` result with an [n_text, n_img] matrix of finite scores."
    def ok(o):
        s = json.loads(o.out)['scores']
        return len(s) == n_text and all(len(r) == n_img and all(math.isfinite(v) for v in r) for r in s)
    return ok

def eval_ok(o) -> bool:
    "An `eval --json` result: every subset has n >= 1 and an accuracy in [0, 1] inside its interval."
    m = json.loads(o.out)['metrics']
    return all(v['n'] >= 1 and 0 <= v['ci_low'] <= v['accuracy'] <= v['ci_high'] <= 1 for v in m.values())

# ---- flag values

argv_text = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00'), max_size=10)  # no NUL
numbers = st.integers(-3, 3).map(str) | st.sampled_from(['', ' ', '1.5', '1e3', 'nan', 'inf', '-0', '0x10', '٣'])
FLAGS = {   # flag -> the values tried (numbers stay small: a count of 10**6 would be honest input, and slow)
    '--timesteps': argv_text | numbers | st.sampled_from(['official:0', 'official:1', 'spaced:2', 'spaced:-1', '9,0']),
    '--batch-size': numbers, '--seed': numbers,
    '--device': argv_text | st.sampled_from(['cuda', 'cuda:1', 'mps', 'meta', 'CPU']),
    '--text': argv_text, '--image': argv_text, '--model': argv_text, '--adapter': argv_text}

@FUZZ
@given(st.data())
def test_score_flags(files, data):
    flag = data.draw(st.sampled_from(sorted(FLAGS)))
    value = data.draw(FLAGS[flag])
    argv = ['score', '--image', str(files/'img.png'), '--text', 'a red circle', '--json'] + FAST + [flag, value]
    n_text, n_img = 1 + (flag == '--text'), 1 + (flag == '--image')
    check(run_cli(argv), 'score', [flag, f'argument {flag}'], scores_ok(n_text, n_img))

@FUZZ
@given(flag=st.sampled_from(['--limit', '--split', '--seed', '--batch-size', '--timesteps', '--path', '--images']),
       value=argv_text | numbers)
def test_eval_flags(files, flag, value):
    if flag == '--limit' and value.strip().isdigit() and int(value) > 3: value = '3'   # keep it quick
    argv = ['eval', '--dataset', 'shapes', '--limit', '2', '--json'] + FAST + [flag, value]
    check(run_cli(argv), 'eval', [flag, f'argument {flag}'], eval_ok)

# ---- files

def mutated(data, original: bytes) -> bytes:
    "`original` cut short, with bytes overwritten, or replaced by random bytes."
    how = data.draw(st.sampled_from(['cut', 'flip', 'random']))
    if how == 'random': return data.draw(st.binary(max_size=300))
    if how == 'cut': return original[:data.draw(st.integers(0, len(original) - 1))]
    out = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    return bytes(out)

json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | argv_text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(argv_text, inner, max_size=3),
                           max_leaves=8)
KEYS = ['image', 'text', 'negatives', 'negative_images', 'negative_1', 'subset', 'id']
row_values = st.sampled_from(['img.png', 'a red circle', 'a blue square', '', 'nope.png']) | json_values
GOOD_ROW = {'image': 'img.png', 'text': 'a red circle', 'negatives': ['a blue square']}
rows = (st.builds(lambda k, v: GOOD_ROW | {k: v}, st.sampled_from(KEYS), row_values | st.lists(row_values, max_size=3))
        | st.dictionaries(st.sampled_from(KEYS), row_values | st.lists(row_values, max_size=3), max_size=5)
        | json_values)

@FUZZ
@given(st.data())
def test_damaged_files(files, data):
    kind = data.draw(st.sampled_from(['image', 'lora', 'adapter.json', 'model_index.json']))
    work = files/'case'; shutil.rmtree(work, ignore_errors=True); work.mkdir()
    base = ['score', '--text', 'a red circle', '--json'] + FAST
    if kind == 'image':   # a BMP keeps its pixels raw: bytes changed there still make a picture, and a score
        fmt = data.draw(st.sampled_from(['png', 'bmp']))
        path = work/f'img.{fmt}'; path.write_bytes(mutated(data, (files/f'img.{fmt}').read_bytes()))
        argv, names = base + ['--image', str(path)], ['--image']
    elif kind in ('lora', 'adapter.json'):
        path = Path(shutil.copytree(files/'adapter', work/'adapter'))
        if kind == 'lora':
            f = path/'pytorch_lora_weights.safetensors'; f.write_bytes(mutated(data, f.read_bytes()))
        else: (path/'adapter.json').write_text(json.dumps(data.draw(json_values)))
        argv, names = base + ['--image', str(files/'img.png'), '--adapter', str(path)], ['--adapter']
    else:
        path = Path(shutil.copytree(files/'model', work/'model'))
        (path/'model_index.json').write_text(json.dumps(data.draw(json_values)))
        argv, names = base + ['--image', str(files/'img.png'), '--model', str(path)], ['--model']
    check(run_cli(argv), 'score', names, scores_ok(1, 1))

def one_spoiled(data, good: list, bad) -> list:
    "`good` with, half the time, one item replaced by a draw from `bad` (so that whole files also come up)."
    out = list(good)
    if data.draw(st.booleans()): out[data.draw(st.integers(0, len(out) - 1))] = data.draw(bad)
    return out

@FUZZ
@given(st.data())
def test_damaged_data_files(files, data):
    suffix, n = data.draw(st.sampled_from(['.jsonl', '.csv'])), data.draw(st.integers(1, 3))
    path = files/f'rows{suffix}'
    if suffix == '.jsonl': text = '\n'.join(json.dumps(r) for r in one_spoiled(data, [GOOD_ROW] * n, rows))
    else:
        cells = st.sampled_from(['img.png', 'a red circle', 'a blue square', '', '"', ',', '\n']) | argv_text
        lines = [['image', 'text', 'negative_1']] + [['img.png', 'a red circle', 'a blue square']] * n
        header_or_row = st.lists(st.sampled_from(KEYS), min_size=1, max_size=4) | st.lists(cells, max_size=5)
        lines = one_spoiled(data, lines, header_or_row)
        text = '\n'.join(','.join(r) for r in lines)
    if data.draw(st.integers(0, 3)): path.write_text(text)   # mostly whole files; sometimes damaged bytes
    else: path.write_bytes(mutated(data, text.encode()))
    argv = ['eval', '--dataset', 'csv', '--path', str(path), '--json'] + FAST
    check(run_cli(argv), 'eval', ['--path', str(path)], eval_ok)

# ---- train flags

TRAIN_FLAGS = ['--batch-size', '--accumulate', '--shots', '--steps', '--rank', '--n-val', '--val-every', '--seed',
               '--mixed-precision', '--lr', '--margin']
TRAIN_RUNS = iter(range(10**6))

def trained_ok(o) -> bool:
    "A `train` that saved its adapter and said so, with no NaN printed."
    folder = Path(o.result)
    return (folder/'adapter.json').is_file() and 'saved the adapter' in o.out and 'nan' not in o.out.lower()

@FUZZ
@given(flag=st.sampled_from(TRAIN_FLAGS), value=argv_text | numbers | st.sampled_from(['no', 'bf16', '1e-3', '0.5']))
def test_train_flags(files, flag, value):
    if flag in ('--steps', '--shots', '--batch-size', '--accumulate') and value.strip().isdigit() and int(value) > 2:
        value = '2'   # keep it quick: a count of 10**6 would be honest input, and slow
    argv = ['train', '--shots', '2', '--steps', '1', '--n-val', '0', '--val-every', '0',
            '--out', str(files/f'train_{next(TRAIN_RUNS)}')] + FAST + [flag, value]
    o = run_cli(argv)
    assert o.code in (0, 2) and 'Traceback' not in o.err, (argv, o.code, o.err[-3000:])
    if o.code == 0: assert trained_ok(o), (argv, o.out, o.err); return
    assert len(o.error_lines) == 1 and not o.other_lines, o.err
    line = o.error_lines[0]
    assert line.startswith('discffusion train: error: ') and (flag in line or f'argument {flag}' in line), line
