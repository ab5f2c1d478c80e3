"""Hostile-but-honest probes of the `discffusion` command: every probe ends in success with a correct result, or in
exit status 2 with one line `discffusion <command>: error: ...` naming the flag or file at fault (issue #16).

`python tests/test_cli_probes.py` prints the probe table (command, exit status, the error line or else the first line
of stderr) as markdown; the tests below assert each probe's expectation. The files the probes read are built by
`make_files`, which the fuzz test (`test_cli_fuzz.py`) shares.
"""
import contextlib, io, json, math, os, re, shlex, shutil, struct, subprocess, sys, traceback, warnings
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from discffusion.cli import run

# ---- files

def truncated(src: Path, dst: Path, keep: float = 0.5) -> Path:
    "A copy of `src` cut to `keep` of its bytes."
    data = src.read_bytes(); dst.write_bytes(data[:int(len(data) * keep)]); return dst

def header_corrupted(src: Path, dst: Path) -> Path:
    "A copy of a safetensors file whose JSON header is overwritten with junk (its length prefix intact)."
    data = bytearray(src.read_bytes()); data[8:24] = b'\xff' * 16; dst.write_bytes(bytes(data)); return dst

def nan_data(src: Path, dst: Path) -> Path:
    "A copy of a float32 safetensors file whose last 256 data bytes are NaN (header intact)."
    data = bytearray(src.read_bytes()); data[-256:] = struct.pack('<f', math.nan) * 64
    dst.write_bytes(bytes(data)); return dst

def copy_adapter(src: Path, dst: Path, damage=None, name: str = 'pytorch_lora_weights.safetensors') -> Path:
    "A copy of the adapter folder `src` with `damage(file, file)` applied to its `name` file."
    shutil.copytree(src, dst)
    if damage: damage(src/name, dst/name)
    return dst

def copy_model(src: Path, dst: Path, damage=None, name: str = 'unet/diffusion_pytorch_model.safetensors') -> Path:
    "A copy of the model folder `src` with `damage(file, file)` applied to its `name` file."
    shutil.copytree(src, dst)
    if damage: damage(src/name, dst/name)
    return dst

def damage_checkpoints(folder: Path) -> Path:
    "Cut every file of each checkpoint `step-*` under `folder` to half its bytes, its settings.json intact."
    for step in folder.rglob('step-*'):
        for f in step.iterdir():
            if f.is_file() and f.name != 'settings.json': truncated(f, f)
    return folder

def damaged_runs(d: Path):
    "A few-shot run and a toy-model run whose checkpoints are real (`training.Learner`'s) but cut short."
    from discffusion.prompt_learning import train_adapter
    from discffusion.toy import train_toy
    train_adapter(d/'train_ck', shots=2, steps=1, n_val=0, val_every=0, preset='attention', timesteps=[500],
                  progress=False)   # the settings of the probe's command line, so that it resumes
    damage_checkpoints(d/'train_ck')
    train_toy(d/'toy_ck', quick=True, keep_checkpoints=True)
    damage_checkpoints(d/'toy_ck/checkpoints/vae')   # the second stage: the CLIP stage resumes, the VAE's cannot

def make_adapter(folder: Path) -> Path:
    "A small LoRA adapter for the embedded model, with non-zero `lora_B` so that it changes scores."
    from discffusion.scoring import DSDScorer
    from discffusion.adapters import add_lora, save_adapter
    scorer = DSDScorer.from_pretrained(None, device='cpu')
    config = add_lora(scorer.unet, 'cross-kv', rank=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in scorer.unet.named_parameters():
            if 'lora_B' in n: p.copy_(torch.randn_like(p) * 0.05)
    return save_adapter(scorer, folder, lora=config)

def write_images(d: Path):
    "A shapes-world image and its hostile variants."
    from discffusion.shapes import make_split
    ex = make_split('test', 1)[0]
    ex.image.save(d/'img.png')
    Image.fromarray((np.asarray(ex.image.convert('L')).astype(np.uint16) * 257)).save(d/'img16.png')
    Image.new('RGB', (1, 1), (255, 0, 0)).save(d/'tiny.png')
    (d/'notimage.png').write_text('hello, I am not a picture\n')
    (d/'empty.png').write_bytes(b'')
    truncated(d/'img.png', d/'trunc.png', 0.3)
    (d/'dir.png').mkdir()
    return ex

def write_data(d: Path, ex):
    "Matching files (JSONL/CSV) that are right, and ones that are wrong in one way each."
    from discffusion.shapes import caption, HARD_NEGATIVES
    negs = [caption(ex.negatives[k]) for k in HARD_NEGATIVES if k in ex.negatives]
    good = {'image': 'img.png', 'text': ex.caption, 'negatives': negs}
    (d/'good.jsonl').write_text(json.dumps(good) + '\n')
    (d/'good.csv').write_text('image,text,negative_1\n' + f'img.png,{ex.caption},{negs[0]}\n')
    (d/'array.jsonl').write_text(json.dumps(['img.png', ex.caption]) + '\n')
    (d/'string.jsonl').write_text('"img.png"\n')
    (d/'broken.jsonl').write_text('{"image": "img.png", "text": \n')
    (d/'negstring.jsonl').write_text(json.dumps(good | {'negatives': negs[0]}) + '\n')
    (d/'imageint.jsonl').write_text(json.dumps(good | {'image': 5}) + '\n')
    (d/'noimage.csv').write_text('image,text,negative_1\n' + f'gone.png,{ex.caption},{negs[0]}\n')
    (d/'nocols.csv').write_text('a,b\n1,2\n')
    (d/'empty.csv').write_text('')
    (d/'binary.csv').write_bytes(bytes(range(256)) * 4)
    (d/'data.txt').write_text('image,text\n')
    (d/'emptydir').mkdir()

def make_files(d: Path) -> Path:
    "Every file the probes read, in `d`."
    from discffusion.core import embedded_model_path
    ex = write_images(d)
    write_data(d, ex)
    make_adapter(d/'adapter')
    for name, damage in (('trunc', truncated), ('header', header_corrupted), ('nan', nan_data)):
        copy_adapter(d/'adapter', d/f'adapter_{name}', damage)
        copy_model(embedded_model_path(), d/f'model_{name}', damage)
    copy_adapter(d/'adapter', d/'adapter_badjson'); (d/'adapter_badjson/adapter.json').write_text('{"lora": tr')
    copy_adapter(d/'adapter', d/'adapter_nojson'); (d/'adapter_nojson/adapter.json').unlink()
    copy_model(embedded_model_path(), d/'model_badindex'); (d/'model_badindex/model_index.json').write_text('not json')
    (d/'afile').write_text('x')
    damaged_runs(d)
    return d

# ---- running

@dataclass
class Outcome:
    code: int | None    # exit status (None: an exception escaped `run`, which the console would print as a traceback)
    out: str
    err: str
    result: object = None

    @property
    def lines(self) -> list[str]: return [l for l in self.err.replace('\r', '\n').splitlines() if l.strip()]

    @property
    def first_line(self) -> str:
        "The error line, else the first line of stderr (for a traceback, its last line, which says what escaped)."
        if self.code is None or 'Traceback (most recent call last)' in self.err: return 'Traceback: ' + self.lines[-1]
        return (self.error_lines or self.lines or [''])[0]

    @property
    def error_lines(self) -> list[str]: return [l for l in self.lines if ': error: ' in l]

    @property
    def other_lines(self) -> list[str]:
        "stderr lines that are none of: errors, one-line warnings, progress-bar redraws, the closing time/memory line."
        return [l for l in self.lines if ': error: ' not in l and ': warning: ' not in l and not PROGRESS.search(l)
                and not METER.match(l)]

PROGRESS = re.compile(r'\d+/\d+ \[[\d:?]+<')                        # tqdm: `3/3 [00:01<00:00, ...]`
METER = re.compile(r'discffusion [\w-]+: [\d.]+ s on \S+, peak memory ')

def run_cli(argv: list[str]) -> Outcome:
    "`discffusion.cli.run(argv)` in this process: exit status, stdout, stderr and the returned result."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter('always')
        try: res = run(argv); return Outcome(0, out.getvalue(), err.getvalue(), res)
        except SystemExit as e: return Outcome(e.code if isinstance(e.code, int) else 1, out.getvalue(), err.getvalue())
        except Exception: return Outcome(None, out.getvalue(), err.getvalue() + traceback.format_exc())

def run_console(argv: list[str], cwd=None) -> Outcome:
    "The installed `discffusion` console script in a subprocess (stderr a pipe, as in a log)."
    import discffusion   # the copy under test, whichever that is
    env = os.environ | {'PYTHONPATH': str(Path(discffusion.__file__).parents[1]), 'HF_HUB_OFFLINE': '1'}
    r = subprocess.run(['discffusion'] + argv, capture_output=True, text=True, env=env, cwd=cwd)
    return Outcome(r.returncode, r.stdout, r.stderr)

# ---- the probes

FAST = '--preset attention --timesteps 500'   # one timestep: the probes test the command, not the model

@dataclass
class Probe:
    cmd: str                  # the command line after `discffusion`, with {d} for the probe folder
    names: list = field(default_factory=list)  # an error must contain each (the flag or file); [] means success
    ok: object = None         # for a success: check(outcome) -> bool
    console: bool = False     # run the console script in a subprocess instead of `run`

    def argv(self, d) -> list[str]: return shlex.split(self.cmd.format(d=d))

def _scores(o): return o.result['scores'] if isinstance(o.result, dict) else json.loads(o.out)['scores']
def _finite(o): return all(math.isfinite(v) for row in _scores(o) for v in row)
def _eval_n(n): return lambda o: json.loads(o.out)['metrics']['all']['n'] == n

PROBES = [
    # images
    Probe('score --image {d}/img.png --text "a red circle" --json ' + FAST, ok=_finite),
    Probe('score --image {d}/nope.png --text x ' + FAST, ['--image', '{d}/nope.png']),
    Probe('score --image {d}/notimage.png --text x ' + FAST, ['--image', '{d}/notimage.png']),
    Probe('score --image {d}/empty.png --text x ' + FAST, ['--image', '{d}/empty.png']),
    Probe('score --image {d}/trunc.png --text x ' + FAST, ['--image', '{d}/trunc.png']),
    Probe('score --image {d}/dir.png --text x ' + FAST, ['--image', '{d}/dir.png']),
    Probe('score --image {d}/img16.png --text "a red circle" --json ' + FAST, ok=_finite),
    Probe('score --image {d}/tiny.png --text "a red circle" --json ' + FAST, ok=_finite),
    # texts
    Probe('score --image {d}/img.png --text "" ' + FAST, ['--text']),
    Probe('score --image {d}/img.png --text "   " ' + FAST, ['--text']),
    Probe('score --image {d}/img.png --text "a zebra on a skateboard 🦓" --json ' + FAST, ok=_finite),
    # devices
    Probe('score --image {d}/img.png --text x --device cuda ' + FAST, ['--device', 'cuda']),
    Probe('score --image {d}/img.png --text x --device tpu ' + FAST, ['--device', 'tpu']),
    Probe('score --image {d}/img.png --text x --device "cuda:7" ' + FAST, ['--device', 'cuda:7']),
    Probe('score --image {d}/img.png --text x --device "not a device" ' + FAST, ['--device']),
    Probe('eval --dataset shapes --limit 2 --device cuda --json', ['--device', 'cuda']),
    # numbers and spellings
    Probe('score --image {d}/img.png --text x --batch-size 0 ' + FAST, ['--batch-size']),
    Probe('score --image {d}/img.png --text x --batch-size -3 ' + FAST, ['--batch-size']),
    Probe('score --image {d}/img.png --text x --timesteps 5000', ['--timesteps']),
    Probe('score --image {d}/img.png --text x --timesteps " -1"', ['--timesteps']),
    Probe('score --image {d}/img.png --text x --timesteps official:0', ['--timesteps']),
    Probe('score --image {d}/img.png --text x --timesteps official:abc', ['--timesteps']),
    Probe('score --image {d}/img.png --text x --seed -1 --json ' + FAST, ['--seed']),
    Probe('eval --dataset shapes --limit 0 --json', ['--limit']),
    Probe('eval --dataset shapes --limit -2 --json', ['--limit']),
    Probe('eval --dataset shapes --split bogus --limit 2 --json', ['--split', 'bogus']),
    Probe('demo --n 0 --out {d}/demo.png', ['--n']),
    Probe('demo --n -1 --out {d}/demo.png', ['--n']),
    # models
    Probe('score --model {d}/nomodel --image {d}/img.png --text x ' + FAST, ['--model', '{d}/nomodel']),
    Probe('score --model {d}/afile --image {d}/img.png --text x ' + FAST, ['--model', '{d}/afile']),
    Probe('score --model nobody/nothing --image {d}/img.png --text x ' + FAST, ['--model', 'nobody/nothing']),
    Probe('score --model {d}/model_trunc --image {d}/img.png --text x ' + FAST, ['--model', '{d}/model_trunc']),
    Probe('score --model {d}/model_header --image {d}/img.png --text x ' + FAST, ['--model', '{d}/model_header']),
    Probe('score --model {d}/model_nan --image {d}/img.png --text x --json ' + FAST, ['--model', '{d}/model_nan']),
    Probe('score --model {d}/model_badindex --image {d}/img.png --text x ' + FAST, ['--model', '{d}/model_badindex']),
    # adapters
    Probe('score --adapter {d}/adapter --image {d}/img.png --text "a red circle" --json ' + FAST, ok=_finite),
    Probe('score --adapter {d}/noadapter --image {d}/img.png --text x ' + FAST, ['--adapter', '{d}/noadapter']),
    Probe('score --adapter {d}/afile --image {d}/img.png --text x ' + FAST, ['--adapter', '{d}/afile']),
    Probe('score --adapter {d}/adapter_trunc --image {d}/img.png --text x ' + FAST, ['--adapter', '{d}/adapter_trunc']),
    Probe('score --adapter {d}/adapter_header --image {d}/img.png --text x ' + FAST,
          ['--adapter', '{d}/adapter_header']),
    Probe('score --adapter {d}/adapter_nan --image {d}/img.png --text x ' + FAST, ['--adapter', '{d}/adapter_nan']),
    Probe('score --adapter {d}/adapter_badjson --image {d}/img.png --text x ' + FAST,
          ['--adapter', '{d}/adapter_badjson']),
    Probe('score --adapter {d}/adapter_nojson --image {d}/img.png --text x ' + FAST,
          ['--adapter', '{d}/adapter_nojson']),
    # data files
    Probe('eval --dataset csv --path {d}/good.jsonl --json ' + FAST, ok=_eval_n(1)),
    Probe('eval --dataset csv --path {d}/good.csv --json ' + FAST, ok=_eval_n(1)),
    Probe('eval --dataset csv --json ' + FAST, ['--path']),
    Probe('eval --dataset csv --path {d}/nofile.jsonl --json ' + FAST, ['--path', '{d}/nofile.jsonl']),
    Probe('eval --dataset csv --path {d}/emptydir --json ' + FAST, ['--path', '{d}/emptydir']),
    Probe('eval --dataset csv --path {d}/data.txt --json ' + FAST, ['--path', '{d}/data.txt']),
    Probe('eval --dataset csv --path {d}/array.jsonl --json ' + FAST, ['--path', 'array.jsonl']),
    Probe('eval --dataset csv --path {d}/string.jsonl --json ' + FAST, ['--path', 'string.jsonl']),
    Probe('eval --dataset csv --path {d}/broken.jsonl --json ' + FAST, ['--path', 'broken.jsonl']),
    Probe('eval --dataset csv --path {d}/negstring.jsonl --json ' + FAST, ['--path', 'negstring.jsonl']),
    Probe('eval --dataset csv --path {d}/imageint.jsonl --json ' + FAST, ['--path', 'imageint.jsonl']),
    Probe('eval --dataset csv --path {d}/noimage.csv --json ' + FAST, ['--path', 'gone.png']),
    Probe('eval --dataset csv --path {d}/noimage.csv --skip-missing --json ' + FAST, ['--path', 'noimage.csv']),
    Probe('eval --dataset csv --path {d}/nocols.csv --json ' + FAST, ['--path', 'nocols.csv']),
    Probe('eval --dataset csv --path {d}/empty.csv --json ' + FAST, ['--path', 'empty.csv']),
    Probe('eval --dataset csv --path {d}/binary.csv --json ' + FAST, ['--path', 'binary.csv']),
    Probe('eval --dataset csv --path {d}/good.jsonl --images {d}/noimages --json ' + FAST,
          ['--images', '{d}/noimages']),
    Probe('eval --dataset comvg --path {d}/good.csv --images {d} --json ' + FAST, ['--path', 'good.csv']),
    Probe('eval --dataset shapes --path {d}/good.csv --limit 2 --json ' + FAST, ['--path', '--dataset shapes']),
    Probe('eval --dataset shapes --limit 2 --scorer clip --preset attention --json', ['--preset', '--scorer clip']),
    Probe('eval --dataset shapes --limit 2 --adapter {d}/adapter --json ' + FAST, ok=_eval_n(20)),   # 2 images, 5 kinds, 2 ways
    Probe('eval --dataset shapes --limit 2 --direction image --json ' + FAST, ok=_eval_n(10)),   # one way
    Probe('eval --dataset csv --path {d}/good.csv --direction text --json ' + FAST, ['--direction', '--dataset csv']),
    Probe('eval --dataset shapes --limit 2 --adapter {d}/adapter_trunc --json ' + FAST, ['--adapter', 'adapter_trunc']),
    Probe('eval --dataset shapes --limit 2 --adapter {d}/noadapter --json ' + FAST, ['--adapter', '{d}/noadapter']),
    Probe('eval --dataset refcocog --path {d}/emptydir --images {d} --json ' + FAST, ['--path', '{d}/emptydir']),
    Probe('eval --dataset winoground --path {d}/emptydir --json ' + FAST, ['--path', '{d}/emptydir']),
    # outputs
    Probe('eval --dataset shapes --limit 2 --json --out {d}/nodir/out.json ' + FAST, ['--out', '{d}/nodir/out.json']),
    Probe('eval --dataset shapes --limit 2 --json --out {d}/emptydir ' + FAST, ['--out', '{d}/emptydir']),
    Probe('demo --n 1 --out {d}/nodir/demo.png', ['--out', '{d}/nodir/demo.png']),
    Probe('demo --n 1 --out {d}/demo.xyz', ['--out', '{d}/demo.xyz']),
    # training
    Probe('train --shots -1 --steps 1 --val-every 0 --out {d}/tr_a', ['--shots']),
    Probe('train --shots 0 --steps 1 --val-every 0 --out {d}/tr_b', ['--shots']),
    Probe('train --shots 2 --steps 0 --val-every 0 --out {d}/tr_c', ['--steps']),
    Probe('train --shots 2 --steps 1 --rank 0 --val-every 0 --out {d}/tr_d', ['--rank']),
    Probe('train --shots 2 --steps 1 --val-every 0 --out {d}/afile', ['--out', '{d}/afile']),
    Probe('train --shots 2 --steps 1 --val-every 0 --out {d}/adapter', ['--out', '{d}/adapter', '--overwrite']),
    Probe('train --shots 2 --batch-size 0 --out {d}/tr_e', ['--batch-size']),
    Probe('train --shots 2 --accumulate 0 --out {d}/tr_f', ['--accumulate']),
    Probe('train --shots 2 --mixed-precision bogus --out {d}/tr_g', ['--mixed-precision', 'bogus']),
    Probe('train --shots 2 --n-val -1 --out {d}/tr_h', ['--n-val']),
    Probe('train --shots 2 --lr nan --out {d}/tr_o', ['--lr', 'nan']),
    Probe('train --shots 2 --lr 0 --out {d}/tr_p', ['--lr']),
    Probe('train --shots 2 --margin inf --out {d}/tr_q', ['--margin', 'inf']),
    Probe('train --shots 2 --margin -1 --out {d}/tr_q2', ['--margin', '>= 0']),
    Probe('train --shots 2 --steps 3 --lr 1e30 --n-val 0 --val-every 0 --out {d}/tr_r ' + FAST, ['--lr', 'nan']),
    Probe('train --dataset winoground --shots 2 --out {d}/tr_i', ['--dataset', 'winoground']),
    Probe('train --dataset jsonl --path {d}/good.jsonl --shots 5 --out {d}/tr_j', ['--shots', 'k=5']),
    Probe('train --dataset shapes --path {d}/good.csv --shots 2 --out {d}/tr_k', ['--path', '--dataset shapes']),
    Probe('train --dataset csv --path {d}/noimage.csv --shots 1 --out {d}/tr_l', ['--path', 'gone.png']),
    Probe('train --dataset csv --path {d}/array.jsonl --shots 1 --out {d}/tr_m', ['--path', 'array.jsonl']),
    Probe('train --dataset csv --path {d}/good.jsonl --contrast image --shots 1 --out {d}/tr_n', ['--contrast']),
    Probe('train --shots 2 --steps 1 --n-val 0 --val-every 0 --preset attention --timesteps 500 --out {d}/train_ck',
          ['--out', '{d}/train_ck/step-000001', '--overwrite']),
    Probe('train-toy --quick --out {d}/toy_ck', ['--out', '{d}/toy_ck/checkpoints/vae/step-000003', '--restart']),
    Probe('train-toy --quick --out {d}/afile', ['--out', '{d}/afile']),
    Probe('train-toy --quick --partial-captions 2 --out {d}/toy_b', ['--partial-captions']),
    # the console script, as a shell runs it
    Probe('score --image {d}/notimage.png --text x ' + FAST, ['--image', '{d}/notimage.png'], console=True),
    Probe('score --image {d}/img.png --text x --device tpu ' + FAST, ['--device', 'tpu'], console=True),
    Probe('score --adapter {d}/adapter_trunc --image {d}/img.png --text x ' + FAST, ['--adapter'], console=True),
    Probe('eval --dataset csv --path {d}/array.jsonl --json ' + FAST, ['--path', 'array.jsonl'], console=True),
    Probe('train-toy --quick --out {d}/toy_quiet', ok=lambda o: '[transformers]' not in o.err, console=True),
]

def attempt(p: Probe, d) -> Outcome:
    "Run probe `p` on the files in `d`."
    return run_console(p.argv(d), cwd=d) if p.console else run_cli(p.argv(d))

def verdict(p: Probe, o: Outcome, d) -> str:
    "'' when the probe ended as it should, else what went wrong."
    if 'Traceback' in o.err or o.code is None: return 'traceback'
    if re.search(r'\bnan\b', o.out, re.I): return 'printed NaN'
    if not p.names:
        if o.code != 0: return f'exit {o.code}'
        try: return '' if p.ok(o) else 'wrong result'
        except Exception as e: return f'unreadable result ({type(e).__name__})'
    if o.code != 2: return f'exit {o.code}, expected 2'
    errors = o.error_lines
    if len(errors) != 1 or o.other_lines: return f'{len(errors)} error lines and {len(o.other_lines)} others on stderr'
    if not errors[0].startswith(f'discffusion {p.argv(d)[0]}: error: '): return 'not `discffusion <command>: error: `'
    missing = [n.format(d=d) for n in p.names if n.format(d=d) not in errors[0]]
    return f'does not name {missing}' if missing else ''

def probe_table(d) -> list[tuple[str, int | None, str, str]]:
    "(command, exit status, error line or first line of stderr, verdict) of every probe."
    rows = []
    for p in PROBES:
        o = attempt(p, d)
        rows.append((('$ ' if p.console else '') + p.cmd.format(d='D'), o.code, o.first_line.replace(str(d), 'D'),
                     verdict(p, o, d)))
    return rows

@pytest.fixture(scope='module')
def probe_dir(tmp_path_factory): return make_files(tmp_path_factory.mktemp('probes'))

@pytest.mark.parametrize('i', range(len(PROBES)), ids=lambda i: PROBES[i].cmd.split(' --')[0] + f'#{i}')
def test_probe(probe_dir, i):
    p = PROBES[i]
    o = attempt(p, probe_dir)
    assert verdict(p, o, probe_dir) == '', (p.cmd, o.code, o.err[-2000:])

if __name__ == '__main__':
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        d = make_files(Path(tmp))
        rows = probe_table(d)
    print('| command (D: the probe folder; $: console script) | exit | error line (else first of stderr) | verdict |')
    print('|---|---|---|---|')
    for cmd, code, line, v in rows:
        print(f"| `{cmd}` | {code if code is not None else 'exc'} | {line.replace('|', '/')[:300]} | {v or 'ok'} |")
    bad = sum(1 for r in rows if r[3])
    print(f'\n{len(rows)} probes, {len(rows) - bad} as they should be, {bad} not', file=sys.stderr)
