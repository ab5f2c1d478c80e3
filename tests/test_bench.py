"Fast tests of the benchmarks' helpers (bench/gpu_bench.py, bench/scaling_bench.py) on tiny models; no timings."
import sys
from pathlib import Path
import pytest, torch
sys.path.insert(0, str(Path(__file__).parents[1]/'bench'))
import gpu_bench as gb
import scaling_bench as sb
from discffusion.adapters import sd21_base_unet_config
from discffusion.core import load_pipeline
from discffusion.scoring import DSDScorer, reference_score, spaced_timesteps

@pytest.fixture(scope='module')
def tiny():
    "A tiny SD-2.1-shaped UNet (8x8 latents), the SD scheduler and inputs: 2 images, 3 texts, 2 timesteps."
    unet = gb.build_unet(gb.tiny_unet_config() | dict(sample_size=8))
    return unet, gb.sd_scheduler(), spaced_timesteps(2), gb.make_inputs(unet, 2, 3, 2)

@pytest.fixture(scope='module')
def pipe(): return load_pipeline(None, device='cpu')

@pytest.mark.parametrize('preset', ['official', 'attention'])
def test_official_shape_is_reference_score(tiny, preset):
    unet, sched, ts, (latents, texts, uncond, noise) = tiny
    ours = gb.official_shape_for(unet, sched, preset, latents, texts, uncond, ts, noise)
    official = preset == 'official'
    ref = reference_score(unet, sched, latents, texts, ts, noise, uncond, denoise=official, uncond_attention=official)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)

def test_official_shape_casts_inputs_to_the_unet(tiny):
    "bf16 inputs to an fp32 UNet (the fp32 reference of a bf16 run) are upcast, as `score_latents` does."
    unet, sched, ts, (latents, texts, uncond, noise) = tiny
    low = [x.bfloat16() for x in (latents[:1], texts[:2], uncond)] + [noise.bfloat16()]
    got = gb.official_shape_for(unet, sched, 'official', *low[:3], ts, low[3])
    want = gb.official_shape_for(unet, sched, 'official', *[x.float() for x in low[:3]], ts, low[3].float())
    torch.testing.assert_close(got, want, rtol=0, atol=0)

@pytest.mark.parametrize('preset', ['official', 'conditional', 'attention'])
def test_fast_path_agrees_with_official_shape(tiny, preset):
    unet, sched, ts, (latents, texts, uncond, noise) = tiny
    scorer = DSDScorer(unet, sched, preset=preset, timesteps=ts, batch_size=4)
    fast = gb.fast_scores(scorer, latents, texts, uncond, noise)
    official = gb.official_shape_for(unet, sched, preset, latents, texts, uncond, ts, noise)
    ag = gb.agreement(fast, official)
    assert ag['max_abs'] < 1e-4 and ag['ranking'] == ag['images'] == 2 and ag['top1'] == 2
    assert gb.agreement_failures(ag, gb.agreement(official, official), strict=True) == []

def test_agreement_sees_a_swapped_ranking():
    ref = torch.tensor([[3., 1.], [2., 5.], [1., 4.]])  # [texts, images]
    swapped = ref.clone(); swapped[1, 1], swapped[2, 1] = 4., 5.
    ag = gb.agreement(swapped, ref)
    assert ag == dict(max_abs=1.0, images=2, ranking=1, top1=1)
    fails = gb.agreement_failures(ag, gb.agreement(ref, ref), strict=True)
    assert len(fails) == 2 and 'ranking differs for 1 of 2' in fails[1] and fails[0].startswith('fast:')
    assert gb.agreement_failures(ag, dict(max_abs=0.5), strict=False) == []  # within 4x the official shape's own error
    assert gb.caption_gap(ref) == 1.0 and gb.caption_gap(ref[:1]) == float('inf')

def test_sd21_base_parameter_count():
    unet = gb.build_unet(sd21_base_unet_config(), device='meta', dtype=torch.bfloat16)
    assert round(gb.count_params(unet) / 1e6, 1) == gb.SD21_BASE_PARAMS_M == 865.9
    assert unet.dtype == torch.bfloat16

def test_parse_args_defaults_and_errors():
    smoke, full = gb.parse_args(['--smoke']), gb.parse_args([])
    assert (smoke.device, smoke.dtype, smoke.pairs) == ('cpu', 'float32', 8)
    assert (full.device, full.dtype, full.pairs, full.batch_size) == ('cuda', 'bfloat16', 256, 64)
    assert gb.parse_args(['--smoke', '--batch-size', '3']).batch_size == 3
    for bad in (['--pairs', '10', '--texts', '4'], ['--batch-size', '0']):
        with pytest.raises(SystemExit): gb.parse_args(bad)

def test_unet_rows_formula():
    assert gb.unet_rows(T=2, n_img=3, n_text=5, uncond=True) == 2 * 3 * 5 + 2 * 3
    assert gb.unet_rows(T=4, n_img=1, n_text=1, uncond=False) == 4

@pytest.mark.parametrize('preset', ['official', 'attention'])
def test_counted_rows_match_the_formula(pipe, preset):
    scorer = DSDScorer.from_pipeline(pipe, preset=preset, timesteps=2, batch_size=4, progress=False)
    images = torch.rand(2, 3, scorer.resolution, scorer.resolution, generator=torch.Generator().manual_seed(0))
    c = sb.score_counts(scorer, images, sb.shape_captions(3))
    assert c['unet_rows'] == gb.unet_rows(2, 2, 3, scorer.needs_uncond) == (16 if preset == 'official' else 12)
    assert c['uncond_rows'] == (4 if preset == 'official' else 0)
    assert sb.count_problems(c, 2, 3, 2, scorer.needs_uncond) == []

def test_encode_counter_counts_each_input(pipe):
    scorer = DSDScorer.from_pipeline(pipe, preset='official', timesteps=2, batch_size=2, progress=False)
    images = torch.rand(3, 3, scorer.resolution, scorer.resolution, generator=torch.Generator().manual_seed(1))
    texts = sb.shape_captions(3)
    c = sb.score_counts(scorer, images, texts)
    assert sorted(c['images'].values()) == [1, 1, 1] and sorted(c['texts'].values()) == [1, 1, 1]
    assert c['empty_caption'] == 1 and sb.score_counts(scorer, images, texts)['empty_caption'] == 0  # cached
    assert 'forward' not in scorer.unet.__dict__ and 'encode' not in scorer.vae.__dict__  # wrappers removed

def test_encode_counter_catches_double_encoding(pipe):
    scorer = DSDScorer.from_pipeline(pipe, preset='official', timesteps=1, batch_size=8, progress=False)
    images = torch.rand(2, 3, scorer.resolution, scorer.resolution, generator=torch.Generator().manual_seed(2))
    texts = sb.shape_captions(2)
    with sb.counting_encoders(scorer) as c:
        scorer.score(images, texts)
        scorer.encode_images(images[1:]); scorer.encode_texts(texts[:1])  # what a wasteful scorer would do
    problems = sb.count_problems(c, 2, 2, 1)
    assert sorted(c['images'].values()) == [1, 2] and len(problems) == 2
    assert problems[0].startswith('images:') and problems[1].startswith('texts:')

def test_fit_line_and_slope():
    a, b, res = sb.fit_line([1, 2, 4, 8], [3.0, 5.0, 9.0, 17.0])
    assert abs(a - 1) < 1e-9 and abs(b - 2) < 1e-9 and max(map(abs, res)) < 1e-9
    assert abs(sb.loglog_slope([1, 2, 4], [3.0, 6.0, 12.0]) - 1) < 1e-9
    assert abs(sb.loglog_slope([1, 2, 4], [1.0, 4.0, 16.0]) - 2) < 1e-9  # quadratic growth shows as slope 2
    with pytest.raises(ValueError, match='asked for 13'): sb.shape_captions(13)

def test_report_prints_every_figure_and_fails_a_strict_disagreement(capsys):
    a = gb.parse_args(['--smoke'])
    ref = torch.tensor([[3., 1.], [2., 5.], [1., 4.]])
    swapped = ref.clone(); swapped[1, 1], swapped[2, 1] = 4., 5.
    m = dict(t_off=4.0, off=ref, mem_off='1 MiB', ref=ref, warm=1.0, t_fast=0.5, fast=swapped, mem_fast='2 MiB')
    failures = gb.report(a, m, rows=20, gflop=0.3, pairs_off=8)
    out = capsys.readouterr().out
    for line in ('official shape: 2.00 pairs/s', 'fast path: 16.00 pairs/s', 'speedup: 8.00', 'max |fast - official|: 1',
                 'max |fast - fp32| 1 (allowed: 0.0001)',
                 'caption ranking agrees (fast vs official): 1/2', 'peak memory: official shape 1 MiB; fast path 2 MiB'):
        assert line in out, line
    assert failures and all('fast' in f or 'ranking' in f for f in failures)
    assert gb.report(a, m | dict(fast=ref), rows=20, gflop=0.3, pairs_off=8) == []

def test_timing_and_memory_helpers_on_cpu():
    warm, best, out = gb.timed(lambda: 7, 'cpu', repeats=2)
    assert out == 7 and warm >= 0 and 0 <= best < 1
    assert gb.peak_memory('cpu').endswith('(process peak RSS, whole run so far)')
    gb.reset_peak_memory('cpu')  # no-op on the CPU

def test_time_grid_runs_every_size(pipe):
    scorer = DSDScorer.from_pipeline(pipe, preset='official', batch_size=16, progress=False)
    assert sb.latents_run(scorer, 2, 3, 1)().shape == (3, 2)
    secs = sb.time_grid(scorer, [(1, 1, 1), (1, 2, 1)], repeats=1)
    assert len(secs) == 2 and all(0 < s < float('inf') for s in secs)

def test_gpu_run_script_on_the_cpu(tmp_path):
    "bench/gpu_run.sh, what a lent GPU machine runs, end to end with --smoke: machine line, imports, a log per run."
    import os, subprocess
    root = Path(__file__).parents[1]
    env = os.environ | dict(OUT=str(tmp_path), COMPILE='0', HF_HUB_OFFLINE='1', PYTHON=sys.executable)
    done = subprocess.run(['bash', 'bench/gpu_run.sh', '--smoke'], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert 'torch' in (tmp_path/'machine.txt').read_text() and not (tmp_path/'compiled.log').exists()
    log = (tmp_path/'eager.log').read_text()
    assert 'machine: ' in log and 'agreement: ok' in log, log
