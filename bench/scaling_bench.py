"""Scaling benchmark: the fast path's cost grows linearly in images x texts x timesteps, and no faster.

The `official` preset on the embedded model, on the CPU, at a fixed batch size: `DSDScorer.score_latents` is timed
over a small grid of (images, texts, timesteps), and the times are fitted as time = a + b * rows, where rows are
the UNet rows the fast path needs: T * n_img * n_text conditional rows plus T * n_img unconditional rows (the empty
caption's branch, shared by all texts). The script prints the fit, each size's residual, the log-log slope, and
the cost per row at the largest size over the smallest (about 1, or below with a fixed overhead, when linear).

It also scores images and texts through `DSDScorer.score` with counting wrappers on the VAE encoder, the text
encoder and the UNet, and prints how often each image and each text went through its encoder (once each), how
often the empty caption was encoded, and how many UNet rows ran with the empty caption (T * n_img).

    python bench/scaling_bench.py [--batch-size 16] [--repeats 3]
"""
import argparse, hashlib, math, sys, time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from gpu_bench import unet_rows
from discffusion.core import load_pipeline
from discffusion.scoring import DSDScorer, spaced_timesteps
from discffusion.shapes import COLORS, SHAPES, Obj, Scene, caption

# (n_img, n_text, T): each factor varies; the smallest size fills one batch of 16 rows, so that per-call overhead
# does not dominate it
GRID = [(2, 3, 2), (2, 4, 2), (4, 3, 2), (4, 4, 2), (2, 4, 4), (4, 6, 2), (4, 4, 4), (4, 6, 4), (6, 6, 4)]

def shape_captions(n: int) -> list[str]:
    "`n` distinct captions of the shapes world, one object each ('a red circle', ...)."
    scenes = [Scene((Obj(c, s),)) for c in COLORS for s in SHAPES]
    if n > len(scenes): raise ValueError(f'n: the shapes world has {len(scenes)} one-object captions, asked for {n}')
    return [caption(s) for s in scenes[:n]]

def fit_line(x: list[float], y: list[float]) -> tuple[float, float, list[float]]:
    "Least-squares y = a + b x: (a, b, residuals y - fit)."
    X = torch.tensor([[1.0, v] for v in x], dtype=torch.float64)
    Y = torch.tensor(y, dtype=torch.float64)[:, None]
    a, b = torch.linalg.lstsq(X, Y).solution.flatten().tolist()
    return a, b, [yi - (a + b * xi) for xi, yi in zip(x, y)]

def loglog_slope(x: list[float], y: list[float]) -> float:
    "Slope p of log y = c + p log x: 1 when y grows as x, above 1 when faster."
    return fit_line([math.log(v) for v in x], [math.log(v) for v in y])[1]

def latents_run(scorer: DSDScorer, n_img: int, n_text: int, T: int, seed: int = 0):
    "A call of `score_latents` on random latents and text states of one size, ready to time."
    g = torch.Generator().manual_seed(seed)
    c, s, d = scorer.unet.config.in_channels, scorer.unet.config.sample_size, scorer.unet.config.cross_attention_dim
    latents, ctx = torch.randn(n_img, c, s, s, generator=g), torch.randn(n_text, 77, d, generator=g)
    return lambda: scorer.score_latents(latents, ctx, timesteps=spaced_timesteps(T))

def time_grid(scorer: DSDScorer, grid, repeats: int = 3) -> list[float]:
    "Fastest seconds of each size over `repeats` rounds through the whole grid (after a warm-up round)."
    runs = [latents_run(scorer, *size) for size in grid]
    best = [math.inf] * len(runs)
    for r in range(repeats + 1):  # round 0 warms up; rounds spread the machine's load changes over all sizes
        for k, run in enumerate(runs):
            t0 = time.perf_counter(); run(); dt = time.perf_counter() - t0
            if r: best[k] = min(best[k], dt)
    return best


def _digest(x: torch.Tensor) -> str:
    "A short fingerprint of one input row (its bytes)."
    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]

def empty_caption(scorer: DSDScorer) -> tuple[tuple[int, ...], torch.Tensor]:
    "The empty caption's token ids and text states, computed apart from the scorer's cache."
    tok = scorer.tokenizer
    ids = tok([''], padding='max_length', max_length=tok.model_max_length, return_tensors='pt').input_ids
    with torch.no_grad(): return tuple(ids[0].tolist()), scorer.text_encoder(ids.to(scorer.text_encoder.device))[0]

@contextmanager
def counting_encoders(scorer: DSDScorer):
    "While inside, count VAE encodes per image, text encodes per text (the empty caption apart) and UNet rows."
    counts = dict(images=Counter(), texts=Counter(), empty_caption=0, unet_rows=0, uncond_rows=0)
    vae, text, unet = scorer.vae, scorer.text_encoder, scorer.unet
    empty_ids, uncond = empty_caption(scorer)  # the empty caption's rows are recognised by its states
    encode, text_forward, unet_forward = vae.encode, text.forward, unet.forward
    def vae_encode(x, *args, **kwargs):
        counts['images'].update(_digest(row) for row in x)
        return encode(x, *args, **kwargs)
    def text_encode(input_ids, *args, **kwargs):
        for row in input_ids.tolist():
            if tuple(row) == empty_ids: counts['empty_caption'] += 1
            else: counts['texts'][tuple(row)] += 1
        return text_forward(input_ids, *args, **kwargs)
    def unet_call(sample, timestep, encoder_hidden_states, *args, **kwargs):
        counts['unet_rows'] += len(sample)
        same = encoder_hidden_states == uncond.to(encoder_hidden_states)
        counts['uncond_rows'] += int(same.flatten(1).all(1).sum())
        return unet_forward(sample, timestep, encoder_hidden_states, *args, **kwargs)
    vae.encode, text.forward, unet.forward = vae_encode, text_encode, unet_call  # instance attributes shadow the methods
    try: yield counts
    finally:
        for m, name in ((vae, 'encode'), (text, 'forward'), (unet, 'forward')): delattr(m, name)

def score_counts(scorer: DSDScorer, images, texts: list[str]) -> dict:
    "Counts (see `counting_encoders`) of one `scorer.score(images, texts)` call."
    with counting_encoders(scorer) as counts: scorer.score(images, texts)
    return counts

def count_problems(counts: dict, n_img: int, n_text: int, T: int, uncond: bool = True) -> list[str]:
    "What breaks 'each image encoded once, each text once, T * n_img empty-caption rows' in `counts` (empty: nothing)."
    out = []
    if sorted(counts['images'].values()) != [1] * n_img:
        out.append(f"images: expected {n_img} distinct images encoded once each, got counts {sorted(counts['images'].values())}")
    if sorted(counts['texts'].values()) != [1] * n_text:
        out.append(f"texts: expected {n_text} distinct texts encoded once each, got counts {sorted(counts['texts'].values())}")
    if counts['empty_caption'] > 1: out.append(f"empty caption: encoded {counts['empty_caption']} times, expected at most once")
    if counts['uncond_rows'] != (T * n_img if uncond else 0):
        out.append(f"empty-caption UNet rows: expected {T * n_img if uncond else 0}, got {counts['uncond_rows']}")
    if counts['unet_rows'] != unet_rows(T, n_img, n_text, uncond):
        out.append(f"UNet rows: expected {unet_rows(T, n_img, n_text, uncond)}, got {counts['unet_rows']}")
    return out


def scaling(scorer: DSDScorer, grid, repeats: int):
    "Time every grid size; print each, the linear fit in UNet rows, residuals, log-log slope and cost-per-row ratio."
    rows = [unet_rows(T, i, t, scorer.needs_uncond) for i, t, T in grid]
    secs = time_grid(scorer, grid, repeats)
    a, b, res = fit_line(rows, secs)
    print(f'fit: time = {a * 1e3:.1f} ms + {b * 1e3:.3f} ms x rows')
    print(' n_img n_text  T  rows   time(s)  fit(s)  residual   ms/row')
    for (i, t, T), r, s, e in zip(grid, rows, secs, res):
        print(f'{i:6d} {t:6d} {T:2d} {r:5d} {s:9.3f} {s - e:7.3f} {e / s:+9.1%} {s / r * 1e3:8.2f}')
    small, large = rows.index(min(rows)), rows.index(max(rows))
    print(f'log-log slope of time against rows: {loglog_slope(rows, secs):.3f} (1 = linear)')
    print(f'time/rows at the largest size ({rows[large]} rows) over the smallest ({rows[small]} rows): '
          f'{(secs[large] / rows[large]) / (secs[small] / rows[small]):.3f} (1 = linear; below 1: a fixed cost spread '
          'over more rows; above 1: faster than linear)')

def encode_once(pipe, n_img: int, n_text: int, T: int, batch_size: int, seed: int = 0) -> list[str]:
    "Count what `score` encodes and runs, twice on a fresh `official` scorer; print the counts, return the problems."
    scorer = DSDScorer.from_pipeline(pipe, preset='official', timesteps=T, batch_size=batch_size, progress=False)
    images = torch.rand(n_img, 3, scorer.resolution, scorer.resolution, generator=torch.Generator().manual_seed(seed))
    problems = []
    for call in (1, 2):
        c = score_counts(scorer, images, shape_captions(n_text))
        print(f'score call {call} ({n_img} images, {n_text} texts, T={T}): VAE encodes per image '
              f'{sorted(c["images"].values())}, text encodes per text {sorted(c["texts"].values())}, empty caption '
              f'encoded {c["empty_caption"]}x, UNet rows {c["unet_rows"]} (T x n_img x n_text + T x n_img = '
              f'{unet_rows(T, n_img, n_text, True)}), of them with the empty caption {c["uncond_rows"]} (T x n_img = {T * n_img})')
        problems += count_problems(c, n_img, n_text, T, scorer.needs_uncond)
    return problems

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch-size', type=int, default=16, help='UNet rows a call (fixed over the grid)')
    p.add_argument('--repeats', type=int, default=3, help='timed rounds through the grid after a warm-up round')
    a = p.parse_args(argv)
    pipe = load_pipeline(None, device='cpu')
    scorer = DSDScorer.from_pipeline(pipe, preset='official', batch_size=a.batch_size, progress=False)
    print(f'embedded model, preset official (layers {scorer.layers}), CPU, batch size {a.batch_size}, '
          f'torch threads {torch.get_num_threads()}')
    problems = encode_once(pipe, 3, 5, 2, a.batch_size)
    if problems: raise SystemExit('encode counts FAILED: ' + '; '.join(problems))
    print('each image encoded once, each text once, the empty caption at most once, its UNet rows T x n_img: ok')
    scaling(scorer, GRID, a.repeats)

if __name__ == '__main__': main()
