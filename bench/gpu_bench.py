"""GPU benchmark: DSD scoring at Stable Diffusion scale, the official shape of work against the fast path.

The model is an SD-2.1-base-shaped UNet (`adapters.sd21_base_unet_config`, 865.9 M parameters, 64x64 latents for
512 px images) with seeded random weights, in bf16, built on the device: nothing is downloaded. Inputs are random
latents and random text embeddings (77 x 1024); every pair is scored at 2 timesteps with the preset's layers
(default: the `official` preset, whose layers are the official ones).

Official shape (as the official pipeline_dsd.py works): `official_shape_scores`, `scoring.reference_score` on any
device: one (text, image) pair at a time, the unconditional and conditional inputs doubled into one batch, eager
attention (probabilities materialised) in every layer. `reference_score` itself waits for the device after every
forward (`float(s)`) and sums on the CPU; this equivalent (checked against it in tests/test_bench.py) keeps everything
on the device, installs the eager processors once and never waits for the device, so the official shape's figure is,
if anything, flattering and the speedup conservative. Fast path: `DSDScorer.score_latents`, every (timestep, image,
text) triple batched, recorders on the selected cross-attention layers only, SDPA everywhere else, the unconditional
branch once per (timestep, image); `--compile` compiles the UNet in place (`torch.compile`, static shapes).

Agreement: both paths in the run's dtype against the official shape in fp32 (same weights, upcast) on the first
pairs. The run exits 1 when the fast path is further from fp32 than 1e-4 plus 4x the official shape's own distance
(in bf16 both round alike); `--smoke` (fp32) also demands the same caption ranking for every image.

    python bench/gpu_bench.py [--compile] [--pairs 256] [--texts 4] [--batch-size 64] [--preset official]
    python bench/gpu_bench.py --smoke   # the same code on the CPU: a tiny SD-shaped UNet in fp32, in seconds

On the lent H200 (whose image lacks diffusers and fastcore): `bash bench/gpu_wheels.sh` here, then one device call
`bash bench/gpu_run.sh` with carry [".whl"] and timeout_s 540 (eager and compiled runs, logs in $OUT).
"""
import argparse, copy, math, resource, time
from contextlib import contextmanager
import diffusers, torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from discffusion.adapters import sd21_base_unet_config
from discffusion.core import device_name
from discffusion.hooks import select_layers
from discffusion.scoring import PRESETS, DSDScorer, noise_bank, spaced_timesteps, _eager_attention, _naive_pool

SD21_BASE_PARAMS_M = 865.9 # SD 2.1-base's UNet, millions of parameters
TEXT_TOKENS = 77 # CLIP's context length

def tiny_unet_config() -> dict:
    "SD 2.1-base's UNet layout (block types, two layers a block, linear projections, head dims) at toy width."
    return sd21_base_unet_config() | dict(sample_size=16, block_out_channels=(32, 32, 64, 64), norm_num_groups=8,
                                          attention_head_dim=(2, 4, 8, 8), cross_attention_dim=32)

def sd_scheduler() -> DDPMScheduler:
    "Stable Diffusion's training noise schedule (scaled-linear betas, epsilon prediction)."
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012)

def build_unet(config: dict, device='cpu', dtype=torch.float32, seed: int = 0) -> UNet2DConditionModel:
    "A `UNet2DConditionModel` of `config` with seeded random weights, initialised on `device`, in `dtype`, frozen."
    torch.manual_seed(seed)
    with torch.device(device): unet = UNet2DConditionModel(**config)
    cast = {torch.float32: unet.float, torch.float16: unet.half, torch.bfloat16: unet.bfloat16}[dtype]
    return cast().eval().requires_grad_(False)  # not `.to(dtype)`: diffusers' `to` warns about fp32-kept modules

def count_params(unet) -> int:
    "Number of parameters of `unet`."
    return sum(p.numel() for p in unet.parameters())

def unet_gflops(config: dict) -> float:
    "GFLOP of one UNet row (one latent, one text) of `config`, counted on the meta device (nothing is computed)."
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device('meta'):
        unet, s = UNet2DConditionModel(**config), config['sample_size']
        x, ctx = torch.randn(1, config['in_channels'], s, s), torch.randn(1, TEXT_TOKENS, config['cross_attention_dim'])
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            unet(x, torch.tensor([500]), encoder_hidden_states=ctx)
    return counter.get_total_flops() / 1e9

def make_inputs(unet, n_img: int, n_text: int, n_timesteps: int, seed: int = 0):
    "Random latents `[n_img, C, H, W]`, text states `[n_text, 77, D]`, the empty caption's `[1, 77, D]`, the noise."
    g = torch.Generator().manual_seed(seed)
    c, s, d = unet.config.in_channels, unet.config.sample_size, unet.config.cross_attention_dim
    latents, texts = torch.randn(n_img, c, s, s, generator=g), torch.randn(n_text + 1, TEXT_TOKENS, d, generator=g)
    return latents, texts[1:], texts[:1], noise_bank(n_timesteps, (c, s, s), seed)


def _pair_step(unet, scheduler, store, names, z0, ctx, noise, tt, denoise, uncond_attention):
    "One pair at one timestep, as `reference_score`: a CFG-doubled forward, LSE of the cross-attention logits."
    zt = scheduler.add_noise(z0[None], noise[None], tt[:1])
    eps = unet(zt.repeat(2, 1, 1, 1), tt, encoder_hidden_states=ctx).sample
    pool = lambda half: sum(_naive_pool(store[n][half].float(), 'lse', None, 3) for n in names) / len(names)
    s = (pool(0) + pool(1)) / 2 if uncond_attention else pool(1)
    if denoise: s = s + (noise.float() - eps[0].float()).norm() - (noise.float() - eps[1].float()).norm()
    return s

@torch.no_grad()
def official_shape_scores(unet, scheduler, # a UNet2DConditionModel and a DDPM-type scheduler
                          latents, text_embeddings, uncond_embedding, timesteps, noise, # as `reference_score`
                          layers='official', denoise: bool = True, uncond_attention: bool = True, # a preset's choices
                         ) -> torch.Tensor:
    "`scoring.reference_score` (LSE, all tokens) on the UNet's device and dtype, with no host sync: `[n_text, n_img]`."
    names, dev = select_layers(unet, layers), unet.device
    latents, text_embeddings, uncond_embedding, noise = (x.to(dev, unet.dtype) for x in
                                                         (latents, text_embeddings, uncond_embedding, noise))
    tts = [torch.full((2,), int(t), device=dev) for t in timesteps]
    out = torch.zeros(len(text_embeddings), len(latents), dtype=torch.float64, device=dev)
    with _eager_attention(unet) as store:
        for i, c in enumerate(text_embeddings):
            ctx = torch.cat([uncond_embedding, c[None]])
            for j, z0 in enumerate(latents):
                for k, tt in enumerate(tts):
                    out[i, j] += _pair_step(unet, scheduler, store, names, z0, ctx, noise[k], tt, denoise,
                                            uncond_attention) / len(tts)
    return out.float()

def official_shape_for(unet, scheduler, preset: str, latents, text_embeddings, uncond_embedding, timesteps, noise):
    "`official_shape_scores` with the choices of `preset` (a key of `scoring.PRESETS`)."
    p = PRESETS[preset]
    return official_shape_scores(unet, scheduler, latents, text_embeddings, uncond_embedding, timesteps, noise,
                                 p['layers'], p['denoise'], p['uncond_attention'])

def fast_scores(scorer: DSDScorer, latents, text_embeddings, uncond_embedding, noise) -> torch.Tensor:
    "The fast path: `scorer.score_latents` on explicit inputs, `[n_text, n_img]`."
    return scorer.score_latents(latents, text_embeddings, noise=noise, uncond_embedding=uncond_embedding)


def sync(device):
    "Wait for the device's queued work (CUDA); nothing on the CPU."
    if torch.device(device).type == 'cuda': torch.cuda.synchronize(device)

def timed(fn, device, repeats: int = 3):
    "(warm-up seconds, fastest of `repeats` timed calls, last result): the device is synchronised around each call."
    sync(device); t0 = time.perf_counter(); out = fn(); sync(device); warm = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); sync(device); best = min(best, time.perf_counter() - t0)
    return warm, best, out

def reset_peak_memory(device):
    "Start a new peak-memory window (CUDA); the CPU's peak RSS cannot be reset."
    if torch.device(device).type == 'cuda': torch.cuda.reset_peak_memory_stats(device)

def peak_memory(device) -> str:
    "Peak memory since the last reset: `torch.cuda.max_memory_allocated` on CUDA, the process's peak RSS on the CPU."
    if torch.device(device).type == 'cuda':
        return f'{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (CUDA max allocated)'
    return f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB (process peak RSS, whole run so far)'

@contextmanager
def exact_fp32():
    "Full-precision float32 matmuls and convolutions (no TF32) while inside."
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try: yield
    finally: torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def caption_gap(scores: torch.Tensor) -> float:
    "The smallest difference between two captions' scores for one image (`[n_text, n_img]`); inf with one caption."
    if len(scores) < 2: return math.inf
    return scores.double().sort(0).values.diff(dim=0).min().item()

def agreement(scores: torch.Tensor, reference: torch.Tensor) -> dict:
    "Max |scores - reference| and, over images (columns), how many rank all captions alike and pick the same top one."
    scores, reference = scores.double().cpu(), reference.double().cpu()
    order = lambda s: s.argsort(0, descending=True)
    return dict(max_abs=(scores - reference).abs().max().item(), images=scores.shape[1],
                ranking=int((order(scores) == order(reference)).all(0).sum()),
                top1=int((scores.argmax(0) == reference.argmax(0)).sum()))

def allowed_error(official: dict, atol: float = 1e-4) -> float:
    "How far from fp32 the fast path may be: `atol` plus 4x the official shape's own distance (both round alike)."
    return atol + 4 * official['max_abs']

def agreement_failures(fast: dict, official: dict, strict: bool, label: str = 'fast', atol: float = 1e-4) -> list[str]:
    "Why `fast` disagrees: error beyond `atol` plus 4x the official shape's own, or (`strict`) a caption ranking."
    allowed = allowed_error(official, atol)
    out = [f"{label}: max |difference| {fast['max_abs']:.3g} > {allowed:.3g}"] if fast['max_abs'] > allowed else []
    if strict and fast['ranking'] < fast['images']:
        out.append(f"{label}: caption ranking differs for {fast['images'] - fast['ranking']} of {fast['images']} images")
    return out

def unet_rows(T: int, n_img: int, n_text: int, uncond: bool) -> int:
    "UNet rows of the fast path: one per (timestep, image, text), plus one per (timestep, image) when unconditional."
    return T * n_img * n_text + (T * n_img if uncond else 0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--smoke', action='store_true',
                   help='the same code on the CPU: a tiny SD-shaped UNet in fp32, small sizes; checks agreement')
    p.add_argument('--device', default=None, help='default: cuda (cpu with --smoke)')
    p.add_argument('--dtype', default=None, choices=['bfloat16', 'float16', 'float32'],
                   help='default: bfloat16 (float32 with --smoke)')
    p.add_argument('--preset', default='official', choices=list(PRESETS))
    p.add_argument('--pairs', type=int, default=None, help='pairs the fast path scores (default 256; 8 with --smoke)')
    p.add_argument('--texts', type=int, default=4, help='texts per image (images = pairs / texts)')
    p.add_argument('--official-pairs', type=int, default=None,
                   help='pairs the official shape scores, the first images with all texts (default 16; 8 with --smoke)')
    p.add_argument('--timesteps', type=int, default=2, help='timesteps a pair (spaced over [200, 800])')
    p.add_argument('--batch-size', type=int, default=None,
                   help='UNet rows a call on the fast path (default 64; 8 with --smoke)')
    p.add_argument('--repeats', type=int, default=3, help='timed calls after the warm-up (the fastest counts)')
    p.add_argument('--compile', action='store_true', help='torch.compile the UNet in place for the fast path')
    a = p.parse_args(argv)
    small = dict(device='cpu', dtype='float32', pairs=8, official_pairs=8, batch_size=8)
    full = dict(device='cuda', dtype='bfloat16', pairs=256, official_pairs=16, batch_size=64)
    for k, v in (small if a.smoke else full).items():
        if getattr(a, k) is None: setattr(a, k, v)
    for k in ('pairs', 'texts', 'official_pairs', 'timesteps', 'batch_size', 'repeats'):
        if getattr(a, k) < 1: p.error(f"--{k.replace('_', '-')}: must be at least 1, got {getattr(a, k)}")
    if a.pairs % a.texts: p.error(f'--pairs: must be a multiple of --texts={a.texts}, got {a.pairs}')
    return a

def setup_device(device: str):
    "CUDA settings for speed (TF32 for fp32 matmuls, cuDNN autotuning: shapes are fixed); checks the device exists."
    if torch.device(device).type != 'cuda': return
    if not torch.cuda.is_available(): raise SystemExit(f'--device {device}: CUDA is not available here (try --smoke)')
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True

def setup(a):
    "The UNet, scheduler, scorer, timesteps and inputs of a run (parsed arguments `a`), on the device, in the dtype."
    setup_device(a.device)
    dtype, config = getattr(torch, a.dtype), tiny_unet_config() if a.smoke else sd21_base_unet_config()
    unet, timesteps = build_unet(config, a.device, dtype), spaced_timesteps(a.timesteps)
    params = count_params(unet) / 1e6
    if not a.smoke and round(params, 1) != SD21_BASE_PARAMS_M:
        raise SystemExit(f"UNet: {params:.1f} M parameters, expected SD 2.1-base's {SD21_BASE_PARAMS_M} M")
    inputs = make_inputs(unet, a.pairs // a.texts, a.texts, len(timesteps))
    scorer = DSDScorer(unet, sd_scheduler(), preset=a.preset, timesteps=timesteps, batch_size=a.batch_size,
                       progress=False)
    return config, scorer, [x.to(a.device, dtype) for x in inputs]

def describe(a, config, scorer, n_off: int) -> tuple[int, float]:
    "Print what runs; return the fast path's UNet rows and the GFLOP of one row."
    T, n_img, gflop = len(scorer.timesteps), a.pairs // a.texts, unet_gflops(config)
    rows = unet_rows(T, n_img, a.texts, scorer.needs_uncond)
    print(f'machine: {device_name(a.device)}, {torch.get_num_threads()} CPU threads; torch {torch.__version__}, '
          f'diffusers {diffusers.__version__}')
    print(f'UNet: {count_params(scorer.unet) / 1e6:.1f} M parameters, latents {scorer.unet.config.in_channels}x'
          f'{config["sample_size"]}x{config["sample_size"]}, {a.dtype} on {a.device}, {gflop:.1f} GFLOP a row')
    print(f'preset {a.preset}: layers {scorer.layers}, timesteps {scorer.timesteps}')
    print(f'fast path: {n_img} images x {a.texts} texts = {a.pairs} pairs, {rows} UNet rows, batch size {a.batch_size}')
    print(f'official shape: {n_off} images x {a.texts} texts = {n_off * a.texts} pairs, {2 * T * n_off * a.texts} UNet '
          'rows (CFG-doubled, eager attention)')
    return rows, gflop

def print_agreement(pair: dict, official: dict, fast: dict, gap: float, scale: float):
    "Print the fast path's agreement with the official shape, and both paths' distance from exact fp32."
    print(f'max |fast - official|: {pair["max_abs"]:.3g} (scores up to {scale:.3g}, smallest caption gap {gap:.3g})')
    print(f'caption ranking agrees (fast vs official): {pair["ranking"]}/{pair["images"]} images, '
          f'top caption {pair["top1"]}/{pair["images"]}')
    print(f'against the official shape in exact fp32: max |official - fp32| {official["max_abs"]:.3g}, '
          f'max |fast - fp32| {fast["max_abs"]:.3g} (allowed: {allowed_error(official):.3g})')
    print(f'ranking as in fp32: official {official["ranking"]}/{official["images"]}, '
          f'fast {fast["ranking"]}/{fast["images"]}')

def measure(a, scorer, latents, texts, uncond, noise, n_off: int) -> dict:
    "Time the official shape (first `n_off` images) and the fast path, score the fp32 reference: times, scores, memory."
    unet = scorer.unet
    official = lambda m: official_shape_for(m, scorer.scheduler, a.preset, latents[:n_off], texts, uncond,
                                            scorer.timesteps, noise)
    reset_peak_memory(a.device)
    _, t_off, off = timed(lambda: official(unet), a.device, max(1, a.repeats - 2))
    mem_off = peak_memory(a.device)
    with exact_fp32(): ref = official(copy.deepcopy(unet).float())  # same weights, upcast: no rounding but fp32's
    if a.compile: unet.compile(dynamic=False)  # in place: module names (and so the layer selection) stay as they are
    reset_peak_memory(a.device)
    warm, t_fast, fast = timed(lambda: fast_scores(scorer, latents, texts, uncond, noise), a.device, a.repeats)
    return dict(t_off=t_off, off=off, mem_off=mem_off, ref=ref, warm=warm, t_fast=t_fast, fast=fast[:, :n_off],
                mem_fast=peak_memory(a.device))

def report(a, m: dict, rows: int, gflop: float, pairs_off: int) -> list[str]:
    "Print the figures of `measure`; return the agreement failures (strict ones with `--smoke` in fp32)."
    print(f'official shape: {pairs_off / m["t_off"]:.2f} pairs/s ({m["t_off"]:.3f} s for {pairs_off} pairs)')
    print(f'fast path{" (compiled)" if a.compile else ""}: {a.pairs / m["t_fast"]:.2f} pairs/s ({m["t_fast"]:.3f} s '
          f'for {a.pairs} pairs; first call {m["warm"]:.1f} s)')
    print(f'fast path UNet throughput: {rows / m["t_fast"]:.1f} rows/s ({rows / a.pairs:.2f} rows a pair), '
          f'{rows * gflop / m["t_fast"] / 1e3:.2f} TFLOP/s')
    print(f'speedup: {(a.pairs / m["t_fast"]) / (pairs_off / m["t_off"]):.2f}')
    pair, off, fast = agreement(m['fast'], m['off']), agreement(m['off'], m['ref']), agreement(m['fast'], m['ref'])
    print_agreement(pair, off, fast, caption_gap(m['ref']), m['off'].abs().max().item())
    same = m['mem_off'] == m['mem_fast']
    print(f'peak memory: {m["mem_fast"]}' if same else
          f'peak memory: official shape {m["mem_off"]}; fast path {m["mem_fast"]}')
    strict = a.smoke and a.dtype == 'float32'  # exact arithmetic: rankings must match too (bf16 may swap close captions)
    return (agreement_failures(fast, off, strict, 'fast vs fp32 official') +
            (agreement_failures(pair, off, strict, 'fast vs official') if strict else []))

def main(argv=None):
    a = parse_args(argv)
    config, scorer, (latents, texts, uncond, noise) = setup(a)
    n_off = min(len(latents), max(1, a.official_pairs // a.texts))
    rows, gflop = describe(a, config, scorer, n_off)
    failures = report(a, measure(a, scorer, latents, texts, uncond, noise, n_off), rows, gflop, n_off * a.texts)
    if failures: raise SystemExit('agreement FAILED: ' + '; '.join(failures))
    print('agreement: ok')

if __name__ == '__main__': main()
