"DSDScorer on SD-1.x/2.x-shaped pipelines (random weights, genuine CLIP tokenizer), end to end."
import warnings
import numpy as np, pytest, torch
from PIL import Image
from discffusion.scoring import DSDScorer, noise_bank
from sd_fixtures import sd_pipeline, clip_tokenizer

TEXTS = ['a photo of a red cube', 'two dogs playing in the snow']

@pytest.fixture(scope='module', params=['1', '2', '2v'])
def pipe(request, tmp_path_factory): return sd_pipeline(tmp_path_factory.mktemp('sd'), request.param)

def images(n=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size + 8 * i, 3), dtype=np.uint8)) for i in range(n)]

def test_score_matrix_matches_score_latents(pipe):
    sc = DSDScorer.from_pipeline(pipe, timesteps=[100, 500], batch_size=4)
    s = sc.score(images(), TEXTS)
    assert s.shape == (2, 3) and torch.isfinite(s).all()
    ctx, mask = sc.encode_texts(TEXTS)
    assert ctx.shape == (2, 77, 32) and mask is None
    torch.testing.assert_close(s, sc.score_latents(sc.encode_images(images()), ctx))
    torch.testing.assert_close(DSDScorer.from_pipeline(pipe, timesteps=[100, 500], batch_size=7).score(images(), TEXTS), s, atol=1e-5, rtol=0)
    other_seed = DSDScorer.from_pipeline(pipe, timesteps=[100, 500], seed=1).score(images(), TEXTS)
    assert not torch.allclose(other_seed, s)

@pytest.mark.parametrize('preset', ['attention', 'official'])
def test_each_input_encoded_once_and_uncond_only_when_needed(pipe, preset):
    sc = DSDScorer.from_pipeline(pipe, preset=preset, timesteps=[100, 500], batch_size=4)
    calls = {'vae': 0, 'text': 0, 'unet': 0}
    hooks = [pipe.vae.encoder.register_forward_pre_hook(lambda m, a: calls.__setitem__('vae', calls['vae'] + len(a[0]))),
             pipe.text_encoder.register_forward_pre_hook(lambda m, a, kw: calls.__setitem__('text', calls['text'] + len((a or [kw['input_ids']])[0])), with_kwargs=True),
             pipe.unet.register_forward_pre_hook(lambda m, a: calls.__setitem__('unet', calls['unet'] + len(a[0])))]
    try: sc.score(images(), TEXTS)
    finally: [h.remove() for h in hooks]
    T, n_img, n_text = 2, 3, 2
    assert calls['vae'] == n_img
    assert calls['text'] == n_text + (preset == 'official')                  # "" once, for the denoising term
    assert calls['unet'] == T * n_img * n_text + (T * n_img if preset == 'official' else 0)

def test_official_preset_adds_the_denoising_term(pipe):
    att = DSDScorer.from_pipeline(pipe, preset='attention', timesteps=[300]).score(images(2), TEXTS)
    off = DSDScorer.from_pipeline(pipe, preset='official', timesteps=[300]).score(images(2), TEXTS)
    assert not torch.allclose(att, off)

def test_real_token_mask_pools_over_caption_tokens_only(pipe):
    sc = DSDScorer.from_pipeline(pipe, token_mask='real', timesteps=[300])
    _, mask = sc.encode_texts(TEXTS)
    n_tokens = [len(pipe.tokenizer(t).input_ids) for t in TEXTS]
    assert mask.sum(1).tolist() == n_tokens
    assert not torch.allclose(sc.score(images(2), TEXTS), DSDScorer.from_pipeline(pipe, timesteps=[300]).score(images(2), TEXTS))

def test_long_text_is_truncated_with_a_warning_giving_its_length(pipe):
    long = ' '.join(['word'] * 100)
    n = len(pipe.tokenizer(long).input_ids)
    sc = DSDScorer.from_pipeline(pipe, timesteps=[300])
    with pytest.warns(UserWarning, match=f'texts\\[1\\] is {n} tokens long; truncated to the tokenizer.s limit of 77'):
        ctx, _ = sc.encode_texts(['short', long])
    assert n == 102 and ctx.shape[1] == 77

def test_bad_inputs_name_the_argument(pipe, tmp_path):
    sc = DSDScorer.from_pipeline(pipe, timesteps=[300])
    with pytest.raises(FileNotFoundError, match=r'images\[1\]: no file at'): sc.score([images(1)[0], tmp_path/'missing.png'], TEXTS)
    (tmp_path/'broken.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match=r'images\[0\]: cannot read'): sc.score([tmp_path/'broken.png'], TEXTS)
    with pytest.raises(ValueError, match='images: empty'): sc.score([], TEXTS)
    with pytest.raises(ValueError, match='texts: empty'): sc.score(images(1), [])
    with pytest.raises(ValueError, match=r'texts\[1\]: empty string'): sc.score(images(1), ['a cat', '  '])

def test_paths_and_non_rgb_images(pipe, tmp_path):
    rgb = images(1, size=48)[0]
    rgb.save(tmp_path/'a.png'); rgb.convert('L').save(tmp_path/'grey.png')
    sc = DSDScorer.from_pipeline(pipe, timesteps=[300])
    torch.testing.assert_close(sc.score([tmp_path/'a.png'], TEXTS), sc.score([rgb], TEXTS))
    with pytest.warns(UserWarning, match=r"images\[0\]: converted from mode 'L' to RGB"): sc.score([str(tmp_path/'grey.png')], TEXTS)

def test_sdxl_shaped_unet_is_refused(pipe):
    from diffusers import UNet2DConditionModel
    xl = UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'), up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D'),
        cross_attention_dim=32, attention_head_dim=4, addition_embed_type='text_time', addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8)
    with pytest.raises(ValueError, match="unet: addition_embed_type='text_time'"): DSDScorer(xl, pipe.scheduler)

def test_saved_folder_loads_and_partial_folder_names_missing_file(pipe, tmp_path):
    from discffusion.core import load_pipeline
    pipe.save_pretrained(tmp_path/'sd')
    loaded = load_pipeline(tmp_path/'sd', device='cpu')
    sc = DSDScorer.from_pipeline(loaded, timesteps=[300])
    torch.testing.assert_close(sc.score(images(2), TEXTS), DSDScorer.from_pipeline(pipe, timesteps=[300]).score(images(2), TEXTS))
    for f in (tmp_path/'sd'/'unet').glob('diffusion_pytorch_model.*'): f.unlink()
    with pytest.raises(FileNotFoundError, match='missing unet/diffusion_pytorch_model.safetensors'): load_pipeline(tmp_path/'sd')
