"""Hand-written tests of `discffusion.prompt_learning` on the embedded model (a few steps each), and `discffusion
train` / `eval --adapter` on every kind of dataset."""
import contextlib, io, json, pickle, tempfile
from pathlib import Path
import pytest
import torch
from PIL import Image
from discffusion.adapters import add_lora, load_adapter
from discffusion.data import load_shots, load_records, export_task
from discffusion.prompt_learning import *
from discffusion.prompt_learning import _batch_indices
from discffusion.scoring import DSDScorer

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings('ignore:texts.*not in the model')


def scorer(preset='official', timesteps=(781,)):
    return DSDScorer.from_pretrained(None, device='cpu', preset=preset, timesteps=list(timesteps))


@pytest.fixture(scope='module')
def data():
    "Groups of both shapes (two and ten candidates) and validation records (encoders are frozen: shareable)."
    sc = scorer()
    return (record_groups(sc, load_shots('shapes-comvg', 4, seed=0)), record_groups(sc, load_shots('shapes-vqa', 2)),
            load_shots('shapes-comvg', 4, seed=1))


def lora_weights(sc): return {n: p.detach().clone() for n, p in sc.unet.named_parameters() if 'lora_' in n}


def test_gradient_reaches_only_trainable_parts(data):
    _, vqa, _ = data
    sc = scorer()
    cfg = TrainConfig(targets='cross-kv', prompt_tokens=2)
    lora, prompt = make_trainable(sc, cfg)
    loss, scores = group_loss(sc, vqa, cfg, torch.Generator().manual_seed(0), prompt)   # the two-pass hinge
    loss.backward()
    assert scores.shape == (2, 10)
    grads = {n: p.grad for n, p in sc.unet.named_parameters() if p.requires_grad}
    assert grads and all(n.count('lora_') == 1 and '.attn2.' in n for n in grads)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if 'lora_B' in n)
    assert prompt.vectors.grad is not None and prompt.vectors.grad.abs().sum() > 0
    assert all(p.grad is None for p in sc.text_encoder.parameters())
    assert all(p.grad is None for p in sc.vae.parameters())


@pytest.mark.parametrize('preset', ['attention', 'official'])
def test_gradient_checkpointing_same_gradients(data, preset):
    train, _, _ = data
    grads = []
    for ckpt in (False, True):
        sc = scorer(preset)
        cfg = TrainConfig(targets='official', loss='ce')   # the hinge may be silent on two groups
        make_trainable(sc, cfg)
        with torch.no_grad():
            for n, p in sc.unet.named_parameters():
                if 'lora_B' in n: p.fill_(0.01)
        if ckpt: sc.unet.enable_gradient_checkpointing()
        sc.unet.train()
        with checkpoint_safe(sc, ckpt) as rec:   # without it the re-run forward uses other processors
            loss, _ = group_loss(sc, train[:2], cfg, torch.Generator().manual_seed(0), rec=rec)
            loss.backward()
        grads.append({n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                      for n, p in sc.unet.named_parameters() if p.requires_grad})
    for n in grads[0]: torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-4)
    assert sum(g.abs().sum() for g in grads[0].values()) > 0


def test_training_changes_score_and_is_deterministic():
    exs = load_records('shapes-comvg', split='test', limit=2)
    images, texts = [im for r in exs for im in r.images], [r.query for r in exs]
    base = scorer(timesteps=(200, 800)).score(images, texts)
    with tempfile.TemporaryDirectory() as d:
        outs = [train_adapter(Path(d)/name, 'shapes-comvg', shots=4, targets='official', seed=3, steps=3, n_val=0,
                              batch_size=2, timesteps=[200, 800], progress=False) for name in ('a', 'b')]
        got = [adapter_scorer(o).score(images, texts) for o in outs]
        assert (got[0] - base).abs().max() > 1e-4
        torch.testing.assert_close(got[0], got[1], atol=0, rtol=0)
        info = json.loads((outs[0]/'adapter.json').read_text())
        assert info['shots'] == 4 and info['rank'] == 4 and info['scorer']['timesteps'] == [200, 800]
        assert info['seconds_per_step'] > 0 and info['peak_memory'] > 0 and info['device'] == 'cpu'


def test_prompt_only_training_saves_prompt_tokens_only():
    with tempfile.TemporaryDirectory() as d:
        out = train_adapter(Path(d)/'p', 'shapes-vqa', shots=2, targets='prompt', steps=2, n_val=0, batch_size=2,
                            progress=False)
        assert (out/'prompt_tokens.safetensors').is_file() and not (out/'pytorch_lora_weights.safetensors').exists()
        sc = adapter_scorer(out)
        assert sc.prompt_tokens.vectors.shape == (4, sc.text_encoder.config.hidden_size)
        with pytest.raises(TypeError, match='prompt tokens apply to a DSDScorer'):
            from discffusion.core import load_pipeline
            load_adapter(load_pipeline(None, device='cpu'), out)


def test_early_stopping(data):
    train, _, val = data
    # lr 1e-30 (0 is refused): the zero-initialised LoRA moves far below float32's resolution of the scores, so
    # validation never improves strictly and training stops after `patience` validations
    cfg = TrainConfig(targets='cross-kv', lr=1e-30, steps=20, val_every=1, patience=2, batch_size=2)
    res = fit(scorer(), train, val, cfg, progress=False)
    assert res['history']['step'] == [1, 2] and res['history']['val_step'] == [0, 1, 2]


def test_mixed_precision_step(data):
    train, _, _ = data
    cfg = TrainConfig(targets='cross-kv', steps=1, batch_size=2, mixed_precision='bf16', val_every=0)
    res = fit(scorer(), train[:2], None, cfg, progress=False)
    assert torch.isfinite(torch.tensor(res['history']['loss'])).all()
    cfg = TrainConfig(targets='cross-kv', steps=1, batch_size=2, val_every=0)
    fit(scorer(), train[:2], None, cfg, progress=False)


def test_half_precision_unet_trains_fp32_weights(data):
    "A bf16 UNet: the LoRA weights are kept in fp32, the autocast follows the UNet, the loss stays finite."
    train, _, _ = data
    sc = scorer()
    sc.unet.to(torch.bfloat16)
    res = fit(sc, train[:2], None, TrainConfig(targets='cross-kv', steps=2, batch_size=2, val_every=0), progress=False)
    lora = [p for n, p in sc.unet.named_parameters() if 'lora_' in n]
    assert lora and all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in lora)
    assert all(torch.isfinite(torch.tensor(res['history']['loss'])))


def test_non_finite_loss_stops_the_run(data):
    train, _, _ = data
    sc = scorer()
    with torch.no_grad(): sc.unet.conv_in.bias[0] = float('nan')
    with tempfile.TemporaryDirectory() as d, pytest.raises(FloatingPointError, match='loss: nan at step 1'):
        fit(sc, train[:2], None, TrainConfig(targets='cross-kv', steps=2, batch_size=2, val_every=0), out=Path(d)/'a',
            progress=False)


def test_accumulation_matches_a_bigger_batch(data):
    "Two micro-batches of 2 groups, accumulated, make the same optimizer step as one batch of 4."
    train, _, _ = data
    weights = []
    for batch_size, accumulate in ((4, 1), (2, 2)):
        sc = scorer()
        fit(sc, train, None, TrainConfig(targets='cross-kv', steps=1, batch_size=batch_size, accumulate=accumulate,
                                         loss='ce', val_every=0), progress=False)
        weights.append(lora_weights(sc))
    moved = [n for n in weights[0] if 'lora_B' in n]
    assert any(weights[0][n].abs().max() > 0 for n in moved)
    for n in weights[0]: torch.testing.assert_close(weights[0][n], weights[1][n], atol=1e-6, rtol=1e-4)


def test_bad_inputs(data):
    train, vqa, _ = data
    with pytest.raises(ValueError, match='rank'): add_lora(scorer().unet, 'official', rank=0)
    with pytest.raises(ValueError, match="sampling: unknown mode"): TrainConfig(sampling='fixed')
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1"): TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match=r't, noise: expected one per row, 12'):
        score_groups(scorer(), [train[0], vqa[0]], torch.zeros(2, dtype=torch.long), torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="scorer: expected 'dsd' or 'denoise'"):
        train_adapter('/tmp/never-written', scorer='clip')
    with pytest.raises(ValueError, match='train: no training records'): fit(scorer(), [])
    assert sorted(_batch_indices(5, 0, 5, 1)) == list(range(5))


# `discffusion train` and `eval --adapter` on every dataset ------------------------------------------------------

def cli(*argv):
    "Run the command line: (exit status, stdout, stderr)."
    from discffusion.cli import run
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: run(list(map(str, argv))); code = 0
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()


def write_refcocog(folder, n=100):
    "A RefCOCOg folder (refs(umd).p, instances.json) and COCO images: its first 5 % of expressions are training."
    folder.mkdir(parents=True)
    images = [{'id': i, 'file_name': f'COCO_train2014_{i:012d}.jpg'} for i in range(n)]
    anns = [{'id': 5000 + i, 'image_id': i, 'bbox': [0, 0, 8, 8]} for i in range(n)]
    refs = [{'ref_id': i, 'ann_id': 5000 + i, 'image_id': i, 'split': 'train',
             'sentences': [{'raw': f'the {c} circle {i}', 'sent': f'the {c} circle {i}'}]}
            for i, c in zip(range(n), ['red', 'green', 'blue', 'yellow'] * n)]
    with open(folder/'refs(umd).p', 'wb') as f: pickle.dump(refs, f)
    (folder/'instances.json').write_text(json.dumps({'images': images, 'annotations': anns}))
    (folder/'coco').mkdir()
    for im in images: Image.new('RGB', (32, 32), (40 * (im['id'] % 6), 0, 0)).save(folder/'coco'/im['file_name'])
    return folder, folder/'coco'


def test_train_and_eval_on_every_dataset(tmp_path, monkeypatch):
    "The same commands on a ComVG-format CSV, VQA-format CSVs, RefCOCOg files, a user's JSONL and the shapes tasks."
    import discffusion.prompt_learning as pl
    reads, read = [], pl._training_part   # `train` reads a training part once (the CLI's check is what it trains on)
    monkeypatch.setattr(pl, '_training_part', lambda *a, **kw: reads.append(a[0]) or read(*a, **kw))
    for part in ('train', 'test'):
        export_task('shapes-comvg', tmp_path/'comvg', split=part, n=8, fmt='comvg')
        export_task('shapes-vqa', tmp_path/'vqa', split=part, n=8, fmt='vqa')
    mine = export_task('shapes-vqa', tmp_path/'mine', split='train', n=8, fmt='jsonl')
    ref, coco = write_refcocog(tmp_path/'refcocog')
    runs = {'comvg': ['--path', tmp_path/'comvg', '--images', tmp_path/'comvg'/'images'],
            'vqa': ['--path', tmp_path/'vqa', '--images', tmp_path/'vqa'/'images'],
            'refcocog': ['--path', ref, '--images', coco],
            'jsonl': ['--path', mine], 'shapes-refcocog': [], 'shapes': []}
    for dataset, where in runs.items():
        out = tmp_path/'adapters'/dataset
        code, printed, err = cli('train', '--dataset', dataset, *where, '--shots', 2, '--steps', 1, '--batch-size', 2,
                                 '--timesteps', 500, '--n-val', 2, '--val-every', 1, '--out', out, '--device', 'cpu')
        assert code == 0, (dataset, err)
        assert reads == [dataset], reads; reads.clear()
        assert 's/step' in printed and 'peak memory' in printed, printed
        info = json.loads((out/'adapter.json').read_text())
        assert info['dataset'] == dataset and info['scorer']['timesteps'] == [500] and info['shots'] == 2
        if dataset in ('comvg', 'vqa', 'jsonl'):   # evaluated on the other part, with what the adapter was trained for
            test = where if dataset != 'jsonl' else ['--path', mine]
            code, printed, err = cli('eval', '--dataset', dataset, *test, '--adapter', out, '--limit', 2, '--json')
            assert code == 0, (dataset, err)
            assert json.loads(printed.splitlines()[-1])['metrics']['all']['n'] == 2
    assert json.loads((tmp_path/'adapters'/'comvg'/'adapter.json').read_text())['directions'] == ['image']
    assert json.loads((tmp_path/'adapters'/'vqa'/'adapter.json').read_text())['directions'] == ['text']
    assert json.loads((tmp_path/'adapters'/'shapes'/'adapter.json').read_text())['directions'] == ['image', 'text']


def test_train_refuses_bad_input_in_one_line(tmp_path):
    export_task('shapes-comvg', tmp_path/'c', split='train', n=4, fmt='comvg')
    cases = {('--dataset', 'winoground', '--path', tmp_path): 'winoground is an evaluation set with no training part',
             ('--dataset', 'shapes-comvg', '--shots', 1000): 'need k=1000 shots',
             ('--dataset', 'comvg', '--path', tmp_path/'nowhere', '--images', tmp_path): 'no file or folder at',
             ('--dataset', 'vqa', '--path', tmp_path/'c', '--images', tmp_path/'c'/'images'): 'no training part'}
    (tmp_path/'c'/'images'/sorted(p.name for p in (tmp_path/'c'/'images').iterdir())[0]).unlink()
    cases[('--dataset', 'comvg', '--path', tmp_path/'c', '--images', tmp_path/'c'/'images')] = 'is missing'
    for args, message in cases.items():
        args = ('--shots', 2) + args if '--shots' not in args else args
        code, _, err = cli('train', *args, '--out', tmp_path/'a', '--steps', 1)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
