"""`DSDScorer(preset='official')` against a literal port of the official Discffusion code.

The port below is written from the official repository (github.com/eric-ai-lab/Discffusion; paths are inside it,
line numbers from one snapshot), not from discffusion's code: its attention processor with
`get_attention_scores(mode="logsumexp")`, its UNet's score tail, its Euler scheduler's `add_noise` and
`scale_model_input`, and its pipeline's timestep loop. The official code runs on its own fork of diffusers; the
port reproduces the fork's behaviour with today's diffusers modules (the same weights, the same formulas).

Same inputs on both sides: clean latents (the official pipeline samples the VAE posterior at every timestep, a
documented departure, so both sides get the posterior mean), the same text embeddings and the same noise bank
(the official `self.noise_samples`, indexed by the position in the timestep list). The scorer uses its preset's
own default grid, which must be the official one.
"""
import re
import numpy as np
import pytest, torch
from discffusion.core import load_pipeline
from discffusion.scoring import DSDScorer, noise_bank
from sd_fixtures import sd_pipeline

# --- diffusers/src/diffusers/models/attention_processor.py ------------------------------------------------------

def get_attention_scores(attn, query, key, attention_mask=None):
    "`Attention.get_attention_scores`, mode='logsumexp', pooling=False, manual_acceleration=False (lines 346-414)."
    dtype = query.dtype
    if attn.upcast_attention: query, key = query.float(), key.float()
    if attention_mask is None:
        baddbmm_input = torch.empty(query.shape[0], query.shape[1], key.shape[1], dtype=query.dtype, device=query.device)
        beta = 0
    else:
        baddbmm_input, beta = attention_mask, 1
    attention_scores = torch.baddbmm(baddbmm_input, query, key.transpose(-1, -2), beta=beta, alpha=attn.scale)
    if attn.upcast_softmax: attention_scores = attention_scores.float()
    attention_probs = attention_scores.softmax(dim=-1).to(dtype)
    logscore = torch.logsumexp(attention_scores, dim=-1)  # line 412
    return attention_probs, logscore

class OfficialAttnProcessor:
    "`AttnProcessor.__call__` of the fork (lines 482-540), returning the output and storing the logsumexp score."
    def __init__(self, key, scores): self.key, self.scores = key, scores

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None: encoder_hidden_states = hidden_states
        elif attn.norm_cross: encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key, value = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key), attn.head_to_batch_dim(value)
        attention_probs, score = get_attention_scores(attn, query, key, attention_mask)
        hidden_states = attn.batch_to_head_dim(torch.bmm(attention_probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4: hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection: hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        if self.key is not None: self.scores[self.key] = score  # BasicTransformerBlock returns attn2's (attention.py 160-181)
        return hidden_states

# --- the nested score dict the fork's UNet builds -----------------------------------------------------------------
# unet_2d_blocks.py 584-597, 905-956, 1995-2047: {'attn_j': {'tfblock_k': score}} per cross-attention block;
# unet_2d_condition.py 822-878: scores_dict['down'][f'block_{idx}'], scores_dict['mid']['block'], scores_dict['up'][f'block_{i}'].
_PATH = re.compile(r'^(?:(down|up)_blocks\.(\d+)|(mid)_block)\.attentions\.(\d+)\.transformer_blocks\.(\d+)\.attn2$')

def score_key(module_path):
    m = _PATH.match(module_path)
    if m is None: return None
    stage = m.group(1) or m.group(3)
    return (stage, 'block' if stage == 'mid' else f'block_{m.group(2)}', f'attn_{m.group(4)}', f'tfblock_{m.group(5)}')

def official_unet(unet, sample, timestep, noise, encoder_hidden_states, use_bias=True):
    "`UNet2DConditionModel.forward` of the fork: the noise prediction halves and `dbscore` (lines 636-915)."
    flat = {}
    procs = {name: OfficialAttnProcessor(score_key(name.removesuffix('.processor')), flat) for name in unet.attn_processors}
    originals = dict(unet.attn_processors)
    unet.set_attn_processor(procs)
    try: sample = unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample
    finally: unet.set_attn_processor(originals)
    scores_dict = {'down': {}, 'mid': {}, 'up': {}}
    for (stage, block, attn, tf), score in flat.items():  # forward order, as the fork's dict insertions
        scores_dict[stage].setdefault(block, {}).setdefault(attn, {})[tf] = score
    all_means = []
    for blocks in scores_dict.values():  # lines 886-890
        for attn in list(blocks.values())[-1].values():
            last_tfblock = list(attn.values())[-1]
            all_means.append(last_tfblock.mean())
    ascore = sum(all_means) / len(all_means)
    noise = noise.flatten(1)  # lines 742-743
    if use_bias:  # lines 905-911
        noise_uncond, noise_cond = sample.chunk(2)
        noise_cond, noise_uncond = noise_cond.flatten(1), noise_uncond.flatten(1)
        bias = torch.norm(noise - noise_uncond, p=2, dim=1) - torch.norm(noise - noise_cond, p=2, dim=1)
        return ascore + bias
    return ascore

# --- diffusers/src/diffusers/schedulers/scheduling_euler_discrete.py of the fork ----------------------------------

class OfficialEuler:
    "The fork's `EulerDiscreteScheduler`: construction (lines 115-157), `scale_model_input` (159-180), `add_noise` (356-379)."
    def __init__(self, config):
        n = config['num_train_timesteps']
        if config.get('trained_betas') is not None: betas = torch.tensor(config['trained_betas'], dtype=torch.float32)
        elif config['beta_schedule'] == 'scaled_linear':
            betas = torch.linspace(config['beta_start'] ** 0.5, config['beta_end'] ** 0.5, n, dtype=torch.float32) ** 2
        else: betas = torch.linspace(config['beta_start'], config['beta_end'], n, dtype=torch.float32)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = np.array(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas[::-1], [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(np.linspace(0, n - 1, n, dtype=float)[::-1].copy())
        self.order = 1

    def scale_model_input(self, sample, timestep):
        step_index = (self.timesteps == timestep).nonzero().item()
        return sample / ((self.sigmas[step_index] ** 2 + 1) ** 0.5)

    def add_noise(self, original_samples, noise, timesteps):
        sigmas = self.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        step_indices = [(self.timesteps == t).nonzero().item() for t in timesteps]
        sigma = sigmas[step_indices].flatten()
        while len(sigma.shape) < len(original_samples.shape): sigma = sigma.unsqueeze(-1)
        return original_samples + noise * sigma

# --- diffusers/src/diffusers/pipelines/stable_diffusion/pipeline_dsd.py -------------------------------------------

def sampled_timesteps(scheduler, num_inference_steps, strength, sampling_steps):
    "`DSDPipeline.sampled_timesteps` (lines 561-568)."
    rate = int(1000 / sampling_steps)
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init_timestep, 0)
    t_end = len(scheduler.timesteps) - t_start
    timesteps_indices = np.arange(t_start * scheduler.order, t_end, rate)
    return scheduler.timesteps[timesteps_indices].tolist()[::-1]

@torch.no_grad()
def official_score(unet, scheduler, init_latents, prompt_embeds, noise_samples, sampling_steps=30):
    "`DSDPipeline.__call__` for one (image, text) pair, defaults strength=0.8, num_inference_steps=50 (lines 627-801)."
    timesteps = sampled_timesteps(scheduler, 50, 0.8, sampling_steps)  # line 771
    t_scores = []
    for sampling_step, t in enumerate(timesteps):
        latent_timestep = torch.tensor([t] * 1)
        noise = noise_samples[sampling_step].unsqueeze(0).repeat(1, 1, 1, 1)  # prepare_latents, lines 616-621
        latents = scheduler.add_noise(init_latents, noise, latent_timestep)
        latent_model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)  # lines 779-780
        t_scores.append(official_unet(unet, latent_model_input, t, noise, prompt_embeds))
    return torch.stack(t_scores).permute(1, 0).mean(dim=1), timesteps  # ensembling, lines 796-801

# --- the check ----------------------------------------------------------------------------------------------------

def _check(pipe, texts, seed=0):
    scorer = DSDScorer.from_pipeline(pipe, preset='official', seed=seed)
    euler = OfficialEuler(dict(pipe.scheduler.config))
    latents = scorer.encode_images(torch.rand(2, 3, scorer.resolution, scorer.resolution, generator=torch.Generator().manual_seed(1)))
    hidden, _ = scorer.encode_texts(texts)
    noise = noise_bank(len(scorer.timesteps), tuple(latents.shape[1:]), seed)
    uncond = scorer._uncond_embedding()
    ours = torch.stack([scorer.score_latents(latents[j:j + 1], hidden[i:i + 1])[0, 0]
                        for i in range(len(texts)) for j in range(len(latents))])
    theirs, timesteps = zip(*[official_score(pipe.unet, euler, latents[j:j + 1], torch.cat([uncond, hidden[i:i + 1]]), noise)
                              for i in range(len(texts)) for j in range(len(latents))])
    assert [int(t) for t in sorted(timesteps[0])] == scorer.timesteps and len(scorer.timesteps) == 30
    torch.testing.assert_close(ours, torch.cat(theirs).float(), atol=1e-4, rtol=0)
    return ours

def test_official_preset_matches_the_official_code_on_the_embedded_model():
    pipe = load_pipeline(device='cpu')
    ours = _check(pipe, ['a red circle above a blue square', 'a blue square above a red circle'])
    assert ours.std() > 0  # the pairs differ: the check is not vacuous

def test_official_preset_matches_the_official_code_on_an_sd2_shaped_unet(tmp_path):
    _check(sd_pipeline(tmp_path, version='2'), ['a photo of a dog', 'a cat'], seed=3)
