"""Benchmark: the official shape of DSD work against discffusion's fast path, on one model and one input set.

Official shape (as the official pipeline_dsd.py works): one (text, image) pair at a time, the unconditional and
conditional inputs doubled into one batch, eager attention (probabilities materialised) in every layer:
`scoring.reference_score`. Fast path: `DSDScorer.score_latents`: every (timestep, image, text) triple batched,
recorders on the selected cross-attention layers only, self-attention on SDPA, the unconditional branch once per
(timestep, image). Both compute the `official` preset (attention term + denoising term) on the same latents, texts,
timesteps and noise; the script checks that they agree, then prints `speedup: X` (fast pairs/s / official-shape
pairs/s).

Two more lines, each measured in the same run:
* adaptive evaluation (`DSDScorer(adaptive=True)`) against the full official grid on shapes test images, each scored
  against its caption and three hard negatives: how many fewer UNet rows, and the attribute-swap accuracy of both;
  then the same search replayed (`adaptive_replay`) on the full grid's per-timestep scores in 8 visiting orders, since
  one order's accuracy is one draw;
* early exit on a down + mid layer selection (no denoising term), over the official grid: the forward stops after the
  mid block. Beside the measured ratio, two bounds: the time of a bare whole UNet forward over that of a stopped one
  (the most that early exit can give on this machine), and the FLOP ratio on this UNet and on an SD-2.1-base-shaped
  one (counted on the meta device: nothing is computed).

    python bench/score_bench.py [--model FOLDER] [--images 4] [--texts 6] [--timesteps 2] [--batch-size 32]
                                [--adaptive-images 100]
"""
import argparse, time
import torch
from discffusion.core import load_pipeline
from torch.utils.flop_counter import FlopCounterMode
from diffusers import UNet2DConditionModel
from discffusion.scoring import DSDScorer, AdaptiveGrid, adaptive_replay, reference_score, noise_bank, spaced_timesteps
from discffusion.hooks import cross_attention_layers, record_cross_attention, StopForward
from discffusion.adapters import sd21_base_unet_config
from discffusion.shapes import make_split, caption, HARD_NEGATIVES

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
    p.add_argument('--adaptive-images', type=int, default=100, help='shapes test images for the adaptive line (0: skip)')
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
    t_ref, ref = best_of(lambda: reference_score(unet, sched, latents, ctx, scorer.timesteps, noise, uncond, denoise=True,
                                                       uncond_attention=True), max(1, a.repeats - 2))
    t_fast, fast = best_of(lambda: scorer.score_latents(latents, ctx, noise=noise, uncond_embedding=uncond), a.repeats)
    err = (fast - ref).abs().max().item()
    print(f'official shape: {pairs / t_ref:8.1f} pairs/s ({t_ref:.2f} s)')
    print(f'fast path:      {pairs / t_fast:8.1f} pairs/s ({t_fast:.2f} s)')
    print(f'max |fast - official| = {err:.2e}')
    if err > 1e-4: raise SystemExit(f'scores disagree: max abs difference {err:.2e}')
    print(f'speedup: {t_ref / t_fast:.1f}')
    if a.adaptive_images: adaptive_line(pipe, a.adaptive_images, a.batch_size)
    early_exit_line(pipe, latents, ctx, a.batch_size, a.repeats)

def adaptive_line(pipe, n: int, batch_size: int, orders: int = 8):
    "UNet rows and attribute-swap accuracy of adaptive evaluation against the full official grid."
    full = DSDScorer.from_pipeline(pipe, preset='official', batch_size=batch_size)
    ada = DSDScorer.from_pipeline(pipe, preset='official', adaptive=True, batch_size=batch_size)
    rows, hits = dict(full=0, ada=0, replay=[0] * orders), dict(full=[], ada=[], replay=[[] for _ in range(orders)])
    for ex in make_split('test', n, seed=0):
        kinds = [k for k in HARD_NEGATIVES if k in ex.negatives]
        ctx, mask = full.encode_texts([ex.caption] + [caption(ex.negatives[k]) for k in kinds])
        latents, a = full.encode_images([ex.image]), 1 + kinds.index('attribute_swap')
        per_t = full.timestep_scores(latents, ctx, token_mask=mask)[:, :, 0]; rows['full'] += full.unet_rows
        s = ada.score_latents(latents, ctx, token_mask=mask)[:, 0]; rows['ada'] += ada.unet_rows
        hits['full'].append(bool(per_t[:, 0].mean() > per_t[:, a].mean())); hits['ada'].append(bool(s[0] > s[a]))
        for seed in range(orders):
            s, r = adaptive_replay(per_t, AdaptiveGrid(seed=seed)); rows['replay'][seed] += r
            hits['replay'][seed].append(bool(s[0] > s[a]))
    acc = lambda h: sum(h) / len(h)
    full_acc, ada_acc, rep = acc(hits['full']), acc(hits['ada']), [acc(h) for h in hits['replay']]
    print(f'adaptive evaluation: {rows["full"] / rows["ada"]:.1f}x fewer UNet rows ({rows["ada"]} vs {rows["full"]}, '
          f'official grid, {n} test images); attribute-swap accuracy {ada_acc:.3f} vs {full_acc:.3f} on the full grid '
          f'({100 * (ada_acc - full_acc):+.1f} points)')
    print(f'adaptive evaluation over {orders} visiting orders (replayed): '
          f'{rows["full"] * orders / sum(rows["replay"]):.1f}x fewer UNet rows; attribute-swap accuracy '
          f'{sum(rep) / orders:.3f} (min {min(rep):.3f}, max {max(rep):.3f}; '
          f'{100 * (sum(rep) / orders - full_acc):+.1f} points on the mean)')

def exit_flop_bound(unet, layers) -> float:
    "FLOPs of a whole UNet forward over those of one stopped after the last of `layers`: early exit's bound."
    c, dev = unet.config, unet.device
    x = torch.randn(1, c.in_channels, c.sample_size, c.sample_size, device=dev)
    ctx, t = torch.randn(1, 77, c.cross_attention_dim, device=dev), torch.tensor([500], device=dev)
    flops = []
    for stop in (False, True):
        with torch.no_grad(), record_cross_attention(unet, layers, stop_early=stop), FlopCounterMode(display=False) as f:
            try: unet(x, t, encoder_hidden_states=ctx)
            except StopForward: pass
        flops.append(f.get_total_flops())
    return flops[0] / flops[1]

def down_mid(unet) -> list[str]:
    "The cross-attention layers of the down path and the mid block."
    return [n for n in cross_attention_layers(unet) if n.startswith(('down', 'mid'))]

def exit_time_bound(unet, layers, ctx, rows: int, repeats: int) -> float:
    "Time of a bare whole UNet forward over that of one stopped after the last of `layers`, on `rows` rows."
    c, g = unet.config, torch.Generator().manual_seed(0)
    x = torch.randn(rows, c.in_channels, c.sample_size, c.sample_size, generator=g)
    t, context = torch.full((rows,), 500), ctx[:1].expand(rows, -1, -1).contiguous()
    def forward(stop):
        with torch.no_grad(), record_cross_attention(unet, layers, stop_early=stop):
            try: unet(x, t, encoder_hidden_states=context)
            except StopForward: pass
    full, stopped = (best_of(lambda: forward(stop), repeats)[0] for stop in (False, True))
    return full / stopped

def early_exit_line(pipe, latents, ctx, batch_size: int, repeats: int):
    "Time of a down + mid layer selection over the official grid, with and without stopping after the mid block."
    layers, times = down_mid(pipe.unet), {}
    for early in (False, True):
        sc = DSDScorer.from_pipeline(pipe, preset='attention', layers=layers, batch_size=batch_size, early_exit=early,
                                     progress=False)
        times[early], scores = best_of(lambda: sc.score_latents(latents, ctx), repeats)
        if early: assert torch.equal(scores, last), 'early exit changed the scores'
        last = scores
    with torch.device('meta'): sd = UNet2DConditionModel(**sd21_base_unet_config())
    print(f'early exit (layers {", ".join(layers)}; {len(sc.timesteps)} timesteps, the official grid): '
          f'{times[False] / times[True]:.1f}x faster ({times[False]:.2f} s -> {times[True]:.2f} s), scores identical; '
          f'time bound {exit_time_bound(pipe.unet, layers, ctx, batch_size, repeats):.1f}x (bare UNet forwards of '
          f'{batch_size} rows, whole over stopped), FLOP bound {exit_flop_bound(pipe.unet, layers):.1f}x here, '
          f'{exit_flop_bound(sd, down_mid(sd)):.1f}x on an SD-2.1-base-shaped UNet')

if __name__ == '__main__': main()
