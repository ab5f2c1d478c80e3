"Evaluation: metrics on hand-computed cases, evaluate/run_eval on fixture datasets, process merging, baselines."
import csv, json, math
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from discffusion.data import Record, Records, shapes_records, winoground_group, winoground_records, COMVG_COLUMNS
from discffusion.scoring import DSDScorer
from discffusion.evaluation import (hit_at, wins, bootstrap_ci, score_group, score_records, summarize, evaluate,
                                    run_eval, format_results, plot_results, winoground_metrics, BlankImageControl,
                                    DenoisingScorer, CLIPScorer, build_scorer, SCORERS)
from discffusion.clip import finetune_clip
import discffusion.evaluation as ev

COLORS = {'red': (255, 0, 0), 'green': (0, 255, 0), 'blue': (0, 0, 255), 'white': (255, 255, 255)}

def color_name(image):
    "The name of the colour nearest to the image's centre pixel (JPEG-safe); '?' for black."
    px = image.getpixel((image.width // 2, image.height // 2))
    if max(px) < 60: return '?'
    return min(COLORS, key=lambda c: sum(abs(a - b) for a, b in zip(COLORS[c], px)))

class TableScorer:
    "Score = table[(colour of the image, text)] (0 when absent)."
    def __init__(self, table=None): self.table, self.calls = table or {}, []
    def score(self, images, texts):
        cols = [color_name(im) for im in images]
        self.calls.append((len(texts), len(images)))
        return torch.tensor([[float(self.table.get((c, t), 0.0)) for c in cols] for t in texts])

class NameScorer(TableScorer):
    "1 when the text mentions the image's colour."
    def score(self, images, texts):
        cols = [color_name(im) for im in images]
        return torch.tensor([[float(c in t.split()) for c in cols] for t in texts])

def im(color, size=8): return Image.new('RGB', (size, size), COLORS[color])

# metrics -------------------------------------------------------------------------------------------------------

def test_hit_at_expected_ranks():
    assert hit_at([0.1, 0.9, 0.3], 1) == 1.0 and hit_at([0.1, 0.9, 0.3], 0) == 0.0
    assert hit_at([0.1, 0.9, 0.3], 0, k=3) == 1.0 and hit_at([0.1, 0.9, 0.3], 0, k=2) == 0.0
    assert hit_at([1, 1, 1, 1], 2) == 0.25 and hit_at([1, 1, 1, 1], 2, k=2) == 0.5
    assert wins([2, 1, 1], 0) and not wins([2, 2, 1], 0)

def test_bootstrap_ci():
    v = (np.arange(400) % 4 == 0).astype(float)  # mean 0.25
    lo, hi = bootstrap_ci(v, n_boot=2000, seed=1)
    assert lo < 0.25 < hi and abs((hi - lo) - 2 * 1.96 * math.sqrt(0.25 * 0.75 / 400)) < 0.02
    assert bootstrap_ci(v, seed=1) == bootstrap_ci(v, seed=1) != bootstrap_ci(v, seed=2)
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    narrow = bootstrap_ci(np.tile(v, 10), seed=1)
    assert narrow[1] - narrow[0] < (hi - lo) / 2

def test_winoground_scores_follow_definitions():
    "Four examples: all right; text only; image only; neither (the strict rules of Thrush et al.)."
    caps = ('c0', 'c1')
    cases = {  # (c0,i0), (c0,i1), (c1,i0), (c1,i1)
        'both':  (3, 1, 1, 3),
        'text':  (3, 4, 1, 5),   # per image the right caption wins; c0 prefers i1, so the image score fails
        'image': (3, 1, 5, 6),   # per caption the right image wins; image 0 prefers c1, so the text score fails
        'none':  (1, 1, 1, 1)}   # ties are never wins
    recs, table = [], {}
    colors = {'both': ('red', 'blue'), 'text': ('green', 'white'), 'image': ('red', 'green'), 'none': ('blue', 'white')}
    for name, (a, b, c, d) in cases.items():
        i0, i1 = colors[name]
        capn = [f'{name} c0', f'{name} c1']
        table |= {(i0, capn[0]): a, (i1, capn[0]): b, (i0, capn[1]): c, (i1, capn[1]): d}
        recs += winoground_group(dict(id=name, caption_0=capn[0], caption_1=capn[1], tag=name), [im(i0), im(i1)])
    res = evaluate(TableScorer(table), recs, progress=False)
    got = {k: (res[k]['text_score'], res[k]['image_score'], res[k]['group_score']) for k in cases}
    assert got == {'both': (1, 1, 1), 'text': (1, 0, 0), 'image': (0, 1, 0), 'none': (0, 0, 0)}
    assert (res['all']['text_score'], res['all']['image_score'], res['all']['group_score'], res['all']['n_groups']) == (0.5, 0.5, 0.25, 4)
    assert res['none']['accuracy'] == 0.5 and res['all']['n'] == 16

def test_joint_scoring_of_groups():
    recs = winoground_group(dict(id=0, caption_0='red x', caption_1='blue x', tag='t'), [im('red'), im('blue')])
    sc = NameScorer()
    assert [s.tolist() for s in score_group(sc, recs)] == [[1, 0], [0, 1], [1, 0], [0, 1]]
    sc = TableScorer(); score_group(sc, recs); assert sc.calls == [(2, 2)]  # one 2x2 call for 4 records
    sc = TableScorer(); score_group(sc, [Record(im('red'), ['a', 'b', 'c'], group='g'), Record('a', [im('red'), im('blue'), im('green')], kind='image', group='g')])
    assert sc.calls == [(3, 1), (1, 3)]  # the union (3x3) would be more work than two calls

def test_scorer_shape_checked():
    class Bad:
        def score(self, images, texts): return torch.zeros(len(images), len(texts) + 1)
    with pytest.raises(ValueError, match=r'scorer: score\(images, texts\) returned shape \(1, 3\); expected \[n_text=2, n_img=1\]'):
        evaluate(Bad(), [Record(im('red'), ['a', 'b'])], progress=False)

# datasets end to end -------------------------------------------------------------------------------------------

def write_comvg(tmp_path):
    rows = [[1, 'red subject', 'a', 'b', 1, 2, 'subject'], [2, 'blue subject', 'a', 'b', 3, 1, 'subject'],
            [3, 'green object', 'a', 'b', 2, 4, 'object'], [4, 'blue verb', 'a', 'b', 1, 3, 'verb']]
    colors = {1: 'red', 2: 'green', 3: 'blue', 4: 'white'}
    (tmp_path/'vg').mkdir()
    for i, c in colors.items(): im(c, 12).save(tmp_path/'vg'/f'{i}.jpg', quality=100)
    with open(tmp_path/'comvg.csv', 'w', newline='') as f: w = csv.writer(f); w.writerow(COMVG_COLUMNS); w.writerows(rows)
    return tmp_path/'comvg.csv', tmp_path/'vg'

def test_run_eval_comvg(tmp_path):
    path, vg = write_comvg(tmp_path)
    res = run_eval('comvg', NameScorer(), path, vg, progress=False, n_boot=200)
    assert list(res) == ['subject', 'object', 'verb', 'all']
    assert [res[s]['accuracy'] for s in ('subject', 'object', 'verb')] == [1.0, 1.0, 0.0]  # row 4: 'blue' but the positive is image 1 (red)
    assert res['all']['accuracy'] == 0.75 and res['all']['n'] == 4 and res['all']['skipped'] == 0
    assert 'R@1' not in res['all']  # two candidates: R@k does not apply
    assert res['all']['ci_low'] <= 0.75 <= res['all']['ci_high']
    (vg/'4.jpg').unlink()
    with pytest.warns(UserWarning, match='skipped 1 of 4'): res = run_eval('comvg', NameScorer(), path, vg, skip_missing=True, progress=False)
    assert res['all']['skipped'] == 1 and 'object' not in res
    json.dumps(res)  # JSON-ready

def test_run_eval_vqa_recall(tmp_path):
    (tmp_path/'coco').mkdir()
    im('red').save(tmp_path/'coco'/'COCO_train2014_000000000001.jpg')
    cols = ['sentence', 'pos_image_id'] + [f'neg_sentence_{i}' for i in range(1, 10)]
    table = {('red', f's{j}'): 10 - j for j in range(10)}  # s0 > s1 > ... > s9
    rows = [[f's{p}', 1] + [f's{j}' for j in range(10) if j != p] for p in (0, 3, 7)]
    with open(tmp_path/'vqa.csv', 'w', newline='') as f: w = csv.writer(f); w.writerow(cols); w.writerows(rows)
    res = run_eval('vqa', TableScorer(table), tmp_path/'vqa.csv', tmp_path/'coco', progress=False)['all']
    assert (res['accuracy'], res['R@1'], res['R@5'], res['n']) == (1 / 3, 1 / 3, 2 / 3, 3)

def test_run_eval_shapes_and_table():
    res = run_eval('shapes', NameScorer(), limit=4, direction='text', progress=False)
    assert list(res)[:-1] == ['attribute_swap', 'object_swap', 'relation_flip', 'color_change', 'shape_change'] and res['all']['n'] == 20
    text = format_results(res)
    assert text.splitlines()[0].split() == ['subset', 'n', 'acc', '95%', 'CI'] and len(text.splitlines()) == 7
    md = format_results(res, markdown=True)
    assert md.startswith('| subset | n | acc | 95% CI |') and md.count('\n') == 7
    import matplotlib; matplotlib.use('Agg')
    ax = plot_results({'a': res, 'b': res}, chance=0.5)
    assert len(ax.patches) == 12
    both = run_eval('shapes', NameScorer(), limit=4, progress=False)  # the shapes world goes both ways by default
    assert list(both)[-3:] == ['image→text', 'text→image', 'all'] and both['all']['n'] == 40
    assert both['image→text']['accuracy'] == res['all']['accuracy'] and both['text→image']['n'] == 20
    grid = format_results({'a': res, 'b': both}, subsets=['object_swap', 'all'])
    assert grid.splitlines()[0].split() == ['object_swap', 'all'] and len(grid.splitlines()) == 3

def test_processes_merge_like_one(monkeypatch, tmp_path):
    "Two simulated processes, each scoring its shard, gathered: the same results as one process."
    recs = winoground_records(write_wino(tmp_path, 7)) + shapes_records('test', 5)
    sc = NameScorer()
    single = evaluate(sc, recs, progress=False)
    shards = [score_records(sc, recs, shard=(i, 2), progress=False) for i in range(2)]
    assert shards[0] and shards[1] and not {o['index'] for o in shards[0]} & {o['index'] for o in shards[1]}
    import accelerate.utils
    monkeypatch.setattr(ev, 'process_shard', lambda: (1, 2))
    monkeypatch.setattr(accelerate.utils, 'gather_object', lambda outs: shards[0] + outs)  # process 1's view of the gather
    assert evaluate(sc, recs, progress=False) == single

def write_wino(tmp_path, n):
    rows = [dict(id=i, image_0=f'{i}a', image_1=f'{i}b', caption_0=f'red {i}', caption_1=f'blue {i}', tag='Object') for i in range(n)]
    (tmp_path/'images').mkdir()
    (tmp_path/'examples.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    for i in range(n): im('red').save(tmp_path/'images'/f'{i}a.png'); im('blue' if i % 2 else 'green').save(tmp_path/'images'/f'{i}b.png')
    return tmp_path

# baselines -----------------------------------------------------------------------------------------------------

def test_blank_image_control():
    ctrl = BlankImageControl(NameScorer(), color=COLORS['red'])
    assert ctrl.score([im('blue'), im('green'), im('white')], ['red', 'blue']).tolist() == [[1, 1, 1], [0, 0, 0]]
    res = evaluate(ctrl, [Record('red', [im('red'), im('blue')], kind='image'), Record(im('blue'), ['blue', 'red'])], progress=False)
    assert res['all']['accuracy'] == 0.25  # text-to-image: a tie (1/2); image-to-text: the blank (red) prefers 'red' (0)

@pytest.fixture(scope='module')
def embedded():
    from discffusion.core import load_pipeline
    return load_pipeline(None, device='cpu')

def test_denoising_scorer_on_embedded_model(embedded):
    ex = shapes_records('test', 2, types=['relation_flip'])
    images, texts = [r.query for r in ex], ex[0].candidates
    kw = dict(timesteps=[300, 700], seed=2)
    den = DenoisingScorer.from_pipeline(embedded, **kw)
    s = den.score(images, texts)
    full = DSDScorer.from_pipeline(embedded, preset='conditional', **kw).score(images, texts)
    att = DSDScorer.from_pipeline(embedded, preset='attention', **kw).score(images, texts)
    assert s.shape == (2, 2)
    torch.testing.assert_close(full, att + s, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(DenoisingScorer.from_pipeline(embedded, batch_size=1, **kw).score(images, texts), s, atol=1e-5, rtol=0)
    raw = DenoisingScorer.from_pipeline(embedded, normalize=False, **kw).score(images, texts)
    torch.testing.assert_close(raw - raw[:1], s - s[:1], atol=1e-4, rtol=0)
    assert 'normalize=True' in repr(den)

def test_build_scorer(embedded, monkeypatch):
    import discffusion.scoring as scoring
    monkeypatch.setattr(scoring, 'load_pipeline', lambda model, device=None, dtype=None, **loader: embedded)
    assert isinstance(build_scorer('denoise', timesteps=[500]), DenoisingScorer)
    blank = build_scorer('blank', preset='attention')
    assert isinstance(blank, BlankImageControl) and blank.scorer.denoise is False
    assert set(SCORERS) == {'dsd', 'denoise', 'blank', 'clip'}
    with pytest.raises(ValueError, match="scorer: unknown 'itm'"): build_scorer('itm')

def tiny_clip(seed=0):
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer, CLIPImageProcessorPil
    from discffusion.core import embedded_model_path
    torch.manual_seed(seed)
    tok = CLIPTokenizer.from_pretrained(embedded_model_path()/'tokenizer')
    cfg = CLIPConfig(text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16), projection_dim=8)
    proc = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}), tokenizer=tok)
    return CLIPModel(cfg), proc

def test_clip_scorer_from_folder_and_finetune(tmp_path):
    model, proc = tiny_clip()
    model.save_pretrained(tmp_path/'clip'); proc.save_pretrained(tmp_path/'clip')
    sc = CLIPScorer.from_pretrained(str(tmp_path/'clip'), device='cpu', batch_size=2)
    direct = CLIPScorer(model, proc, device='cpu')
    recs = shapes_records('test', 3, types=['color_change', 'object_swap'])
    images, texts = [r.query for r in recs], [recs[0].candidates[0], recs[1].candidates[1], 'a red circle']
    s = sc.score(images, texts)
    assert s.shape == (3, 6) and torch.isfinite(s).all()
    torch.testing.assert_close(s, direct.score(images, texts), atol=1e-5, rtol=1e-5)
    res0 = evaluate(sc, recs, progress=False)['all']['accuracy']
    losses = finetune_clip(sc, recs, epochs=4, lr=1e-2, train='all', seed=0, progress=False)
    assert losses[-1] < losses[0] and all(p.requires_grad for p in sc.model.parameters())
    assert not torch.equal(sc.score(images, texts), s) and 0 <= res0 <= 1

SCRIPT = '''
import json, sys, torch
torch.set_num_threads(1)
from discffusion.data import shapes_records
from discffusion.evaluation import evaluate, process_shard
class LenScorer:
    def score(self, images, texts):
        return torch.tensor([[len(t) + 0.01 * (sum(im.getpixel((16, 16))) % 7) for im in images] for t in texts], dtype=torch.float32)
res = evaluate(LenScorer(), shapes_records('test', 6), progress=False)
json.dump({'shard': process_shard(), 'results': res}, open(sys.argv[1] + str(process_shard()[0]), 'w'))
if torch.distributed.is_initialized(): torch.distributed.destroy_process_group()   # as a script should: no gloo abort at exit
'''

def test_two_real_processes(tmp_path):
    "torchrun with 2 CPU (gloo) processes: each scores half, both get the single-process results."
    import os, subprocess, sys
    (tmp_path/'run.py').write_text(SCRIPT)
    env = os.environ | {'OMP_NUM_THREADS': '1'}
    subprocess.run([sys.executable, str(tmp_path/'run.py'), str(tmp_path/'single')], check=True, env=env, timeout=300)
    subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(tmp_path/'run.py'), str(tmp_path/'multi')],
                   check=True, env=env, timeout=300, capture_output=True)
    single = json.loads((tmp_path/'single0').read_text())
    multi = [json.loads((tmp_path/f'multi{i}').read_text()) for i in range(2)]
    assert single['shard'] == [0, 1] and [m['shard'] for m in multi] == [[0, 2], [1, 2]]
    assert multi[0]['results'] == multi[1]['results'] == single['results']
