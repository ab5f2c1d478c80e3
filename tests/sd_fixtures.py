"""Stable-Diffusion-shaped pipelines with random weights and the genuine CLIP tokenizer, built offline.

The real 49,408-token CLIP BPE vocabulary used by SD 1.x/2.x ships inside the `open_clip_torch` wheel
(`open_clip/bpe_simple_vocab_16e6.txt.gz`); `.ci/run` installs that wheel with `--no-deps` and we read only that file.
"""
import gzip, json, importlib.util
from functools import lru_cache
from pathlib import Path
import pytest, torch

def _bytes_to_unicode():
    "GPT-2/CLIP's reversible byte -> printable-unicode table."
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs: bs.append(b); cs.append(256 + n); n += 1
    return [chr(c) for c in cs]

def bpe_file() -> Path:
    spec = importlib.util.find_spec('open_clip')
    path = spec and Path(spec.origin).parent/'bpe_simple_vocab_16e6.txt.gz'
    if not path or not path.exists():
        pytest.fail("the CLIP BPE vocabulary is missing: `pip install --no-deps open_clip_torch` (.ci/run does)")
    return path

@lru_cache(maxsize=None)
def clip_tokenizer_files(folder: str) -> str:
    "Write CLIP's vocab.json and merges.txt into `folder` (as openai/clip-vit-large-patch14 has them)."
    lines = gzip.open(bpe_file()).read().decode('utf-8').split('\n')[1:49152 - 256 - 2 + 1]
    merges = [tuple(l.split()) for l in lines]
    vocab = _bytes_to_unicode(); vocab += [v + '</w>' for v in vocab] + [''.join(m) for m in merges]
    vocab += ['<|startoftext|>', '<|endoftext|>']
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, 'vocab.json').write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    Path(folder, 'merges.txt').write_text('#version: 0.2\n' + '\n'.join(' '.join(m) for m in merges) + '\n')
    return folder

def clip_tokenizer(folder, pad_token='<|endoftext|>'):
    "The genuine CLIP tokenizer (SD 1.x pads with <|endoftext|>, SD 2.x with '!')."
    from transformers import CLIPTokenizer
    f = clip_tokenizer_files(str(folder))
    return CLIPTokenizer(f'{f}/vocab.json', f'{f}/merges.txt', pad_token=pad_token, model_max_length=77)

def sd_pipeline(folder, version='2', seed=0):
    "A tiny Stable Diffusion pipeline with SD 1.x/2.x's shapes, random weights and the real tokenizer."
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel, AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(seed)
    sd2 = version == '2'
    unet = UNet2DConditionModel(sample_size=8, layers_per_block=1, block_out_channels=(32, 32, 64, 64), norm_num_groups=8,
        down_block_types=('CrossAttnDownBlock2D',)*3 + ('DownBlock2D',), up_block_types=('UpBlock2D',) + ('CrossAttnUpBlock2D',)*3,
        cross_attention_dim=32, attention_head_dim=(2, 4, 8, 8) if sd2 else 8, use_linear_projection=sd2)
    vae = AutoencoderKL(block_out_channels=(8, 8, 16, 16), down_block_types=('DownEncoderBlock2D',)*4,
        up_block_types=('UpDecoderBlock2D',)*4, latent_channels=4, norm_num_groups=4, sample_size=64)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32))
    sched = DDIMScheduler(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012, steps_offset=1,
        clip_sample=False, set_alpha_to_one=False, prediction_type='v_prediction' if version == '2v' else 'epsilon')
    tok = clip_tokenizer(Path(folder)/'clip-bpe', '!' if sd2 else '<|endoftext|>')
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text.eval(), tokenizer=tok, unet=unet.eval(), scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
