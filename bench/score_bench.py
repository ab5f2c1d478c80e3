"""Benchmark: the official shape of DSD work against discffusion's fast path, on one model and one input set.

Official shape (DESIGN.md §4): one (text, image) pair at a time, the unconditional and conditional inputs doubled
into one batch, eager attention (probabilities materialised) in every layer: `scoring.reference_score`.
Fast path: `DSDScorer.score_latents`: every (timestep, image, text) triple batched, recorders on the selected
cross-attention layers only, self-attention on SDPA, the unconditional branch once per (timestep, image).
Both compute the `official` preset (attention term + denoising term) on the same latents, texts, timesteps and
noise; the script checks that they agree, then prints `speedup: X` (fast pairs/s / official-shape pairs/s).

    python bench/score_bench.py [--model FOLDER] [--images 4] [--texts 6] [--timesteps 2] [--batch-size 32]
"""
import argparse, time
import torch
from discffusion.core import load_pipeline
from discffusion.scoring import DSDScorer, reference_score, noise_bank, spaced_timesteps

def best_of(fn, repeats):
    "The fastest of `repeats` timed calls (after one warm-up call), and the last result."
    out = fn(); times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return min(times), out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default=None, help='a Stable Diffusion folder or hub id (default: the embedded model)')
    p.add_argument('--images', type=int, default=4); p.add_argument('--texts', type=int, default=6)
    p.add_argument('--timesteps', type=int, default=2); p.add_argument('--batch-size', type=int, default=48)
    p.add_argument('--repeats', type=int, default=3)
    a = p.parse_args()
    pipe = load_pipeline(a.model, device='cpu')
    unet, sched = pipe.unet, pipe.scheduler
    g = torch.Generator().manual_seed(0)
    size = unet.config.sample_size
    latents = torch.randn(a.images, unet.config.in_channels, size, size, generator=g)
    scorer = DSDScorer.from_pipeline(pipe, preset='official', timesteps=spaced_timesteps(a.timesteps), batch_size=a.batch_size)
    texts = [f'text number {i}' for i in range(a.texts)]
    ctx, _ = scorer.encode_texts(texts)
    uncond = scorer._uncond_embedding()
    noise = noise_bank(a.timesteps, tuple(latents.shape[1:]), seed=0)
    pairs = a.images * a.texts
    print(f'model: {a.model or "embedded"}; UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M params, latents {tuple(latents.shape[1:])}, '
          f'{pairs} pairs x {a.timesteps} timesteps, torch threads {torch.get_num_threads()}')
    t_ref, ref = best_of(lambda: reference_score(unet, sched, latents, ctx, scorer.timesteps, noise, uncond, denoise=True), max(1, a.repeats - 2))
    t_fast, fast = best_of(lambda: scorer.score_latents(latents, ctx, noise=noise, uncond_embedding=uncond), a.repeats)
    err = (fast - ref).abs().max().item()
    print(f'official shape: {pairs / t_ref:8.1f} pairs/s ({t_ref:.2f} s)')
    print(f'fast path:      {pairs / t_fast:8.1f} pairs/s ({t_fast:.2f} s)')
    print(f'max |fast - official| = {err:.2e}')
    if err > 1e-4: raise SystemExit(f'scores disagree: max abs difference {err:.2e}')
    print(f'speedup: {t_ref / t_fast:.1f}')

if __name__ == '__main__': main()
