"""`discffusion.visualize`: the explorer driven headless (widget values set from Python, as a reader's clicks would),
and the heat maps on Stable-Diffusion-shaped pipelines (random weights, the genuine CLIP tokenizer)."""
import datetime, io
import pytest, torch
from matplotlib.figure import Figure
from discffusion.scoring import DSDScorer
from discffusion.shapes import Obj, Scene, render
from discffusion.toy import color_masks
from discffusion.adapters import PromptTokens, add_lora, load_adapter, save_adapter
from discffusion.visualize import (explorer, scene_captions, attention_maps, word_spans, plot_word_maps,
                                   scores_by_timestep, scores_by_layer, png)
from sd_fixtures import sd_pipeline, clip_tokenizer

SCENE = Scene((Obj('red', 'circle'), Obj('blue', 'square')), 'left of')

FAST = [781] # one timestep keeps these tests fast whatever the presets' default grids are

@pytest.fixture(scope='module')
def scorer(): return DSDScorer.from_pretrained(device='cpu', timesteps=FAST)

def direct(scorer, **options):
    "A scorer on the same models with `options`, built without the explorer."
    return DSDScorer(scorer.unet, scorer.scheduler, scorer.vae, scorer.text_encoder, scorer.tokenizer, **options)

def upload_value(image, name='scene.png'):
    "What `FileUpload.value` holds after a reader uploads `image`."
    buf = io.BytesIO(); image.save(buf, format='PNG')
    return ({'name': name, 'type': 'image/png', 'size': buf.tell(), 'content': memoryview(buf.getvalue()),
             'last_modified': datetime.datetime.now(datetime.timezone.utc)},)

def test_starts_with_the_scene_its_caption_and_hard_negatives(scorer):
    ex = explorer(scorer)
    assert ex.error is None, ex.error
    assert ex.texts() == scene_captions(SCENE)
    torch.testing.assert_close(ex.scores, scorer.score(render(SCENE, 32), ex.texts())[:, 0])
    assert ex.bars.value[:8] == b'\x89PNG\r\n\x1a\n' and ex.heatmaps.value[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'a red circle left of a blue square' in ex.status.value  # the embedded model ranks the caption first here

def test_a_new_colour_redraws_the_scene_rewrites_the_captions_and_rescores_once(scorer):
    ex = explorer(scorer)
    scores, heatmaps, bars, runs = ex.scores.clone(), ex.heatmaps.value, ex.bars.value, ex.runs
    ex.controls['color1'].value = 'green'
    assert ex.runs == runs + 1, "one control change must give one update"
    assert ex.error is None, ex.error
    assert ex.texts()[0] == 'a green circle left of a blue square'
    masks = color_masks(ex.image())
    assert masks['green'].any() and not masks['red'].any()
    torch.testing.assert_close(ex.scores, scorer.score(ex.image(), ex.texts())[:, 0])
    assert not torch.equal(ex.scores, scores) and ex.heatmaps.value != heatmaps and ex.bars.value != bars

def test_one_object_scene_and_hand_edited_captions_survive_a_scene_change(scorer):
    ex = explorer(scorer)
    ex.controls['relation'].value = '(one object)'
    assert ex.texts() == ['a red circle'] and ex.error is None
    ex.controls['captions'].value = 'a red circle\na red square\n\n'
    ex.controls['shape1'].value = 'square'
    assert ex.texts() == ['a red circle', 'a red square'], "a hand-edited caption list must not be overwritten"
    torch.testing.assert_close(ex.scores, scorer.score(render(Scene((Obj('red', 'square'),)), 32), ex.texts())[:, 0])

def test_pooling_layers_and_timesteps_give_the_scores_and_maps_of_that_scorer(scorer):
    ex = explorer(scorer)
    ex.controls['pooling'].value = 'max'
    same = direct(scorer, pooling='max', timesteps=FAST)
    torch.testing.assert_close(ex.scores, same.score(ex.image(), ex.texts())[:, 0])
    ex.controls['layers'].value = ('mid.0',)
    ex.controls['timesteps'].value = '200, 600'
    assert ex.error is None, ex.error
    same = direct(scorer, pooling='max', layers=['mid.0'], timesteps=[200, 600])
    torch.testing.assert_close(ex.scores, same.score(ex.image(), ex.texts())[:, 0])
    assert ex.heatmaps.value == png(plot_word_maps(same, ex.image(), ex.texts(), scores=ex.scores), ex.dpi), \
        "the heat maps shown must be those of the chosen layers and timesteps"

def test_preset_sets_its_controls_and_scores_with_one_update(scorer):
    ex = explorer(scorer)
    ex.controls['layers'].value = ('mid.0',)
    runs = ex.runs
    ex.controls['preset'].value = 'official'
    official = direct(scorer, preset='official')
    assert ex.runs == runs + 1
    assert list(ex.controls['layers'].value) == official.layers
    assert ex.controls['pooling'].value == official.pooling.method
    assert ex.controls['timesteps'].value == ', '.join(map(str, official.timesteps))
    torch.testing.assert_close(ex.scores, official.score(ex.image(), ex.texts())[:, 0])

@pytest.mark.parametrize('control, value, named', [
    ('timesteps', '200, abc', 'timesteps'), ('timesteps', '5000', 'timesteps'), ('layers', (), 'layers'),
    ('captions', ' \n', 'captions'), ('source', 'upload', 'upload')])
def test_bad_input_is_shown_in_the_status_line_naming_the_control(scorer, control, value, named):
    ex = explorer(scorer)
    ex.controls[control].value = value
    assert ex.error and ex.error.split(': ', 2)[1].startswith(named), ex.error
    assert ex.scores is None and named in ex.status.value

def test_upload_switches_the_source_and_scores_the_uploaded_image(scorer):
    ex = explorer(scorer)
    other = render(Scene((Obj('yellow', 'triangle'), Obj('green', 'circle')), 'above'), 64)   # resized to 32
    ex.controls['upload'].value = upload_value(other)
    assert ex.controls['source'].value == 'upload' and ex.error is None, ex.error
    torch.testing.assert_close(ex.scores, scorer.score(other, ex.texts())[:, 0])
    ex.controls['source'].value = 'scene'
    torch.testing.assert_close(ex.scores, scorer.score(render(SCENE, 32), ex.texts())[:, 0])

def test_explorer_starts_with_the_scorers_preset_and_refuses_another(scorer):
    official = direct(scorer, preset='official', timesteps=[400, 800])
    ex = explorer(official)
    assert ex.controls['preset'].value == 'official' and ex.controls['timesteps'].value == '400, 800'
    torch.testing.assert_close(ex.scores, official.score(ex.image(), ex.texts())[:, 0])
    with pytest.raises(ValueError, match="preset: the scorer's .* are not those of preset 'official'"):
        explorer(scorer, preset='official')
    with pytest.raises(ValueError, match='preset: unknown'):
        explorer(scorer, preset='fast')

@pytest.fixture(scope='module')
def adapter_folders(tmp_path_factory):
    "A prompt-token adapter and a LoRA adapter (non-zero B, so it changes the scores) of the embedded model."
    root, s = tmp_path_factory.mktemp('adapters'), DSDScorer.from_pretrained(device='cpu')
    save_adapter(s, root/'prompt', prompt=PromptTokens(2, s.unet.config.cross_attention_dim, std=1.0))
    config = add_lora(s.unet, 'official', rank=2)
    with torch.no_grad():
        for name, p in s.unet.named_parameters():
            if 'lora_B' in name: p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    save_adapter(s, root/'lora', lora=config)
    return root

@pytest.mark.parametrize('kind', ['prompt', 'lora'])
def test_adapter_folder_gives_the_adapted_scores_and_leaves_the_scorer_as_it_was(adapter_folders, kind):
    base = DSDScorer.from_pretrained(device='cpu', timesteps=FAST)
    ex = explorer(base)
    plain = ex.scores.clone()
    ex.controls['adapter'].value = str(adapter_folders/kind)
    assert ex.error is None, ex.error
    adapted = load_adapter(DSDScorer.from_pretrained(device='cpu', timesteps=FAST), adapter_folders/kind)
    torch.testing.assert_close(ex.scores, adapted.score(ex.image(), ex.texts())[:, 0])
    assert not torch.allclose(ex.scores, plain)
    assert base.prompt_tokens is None and not any('lora' in n for n, _ in base.unet.named_modules())
    ex.controls['adapter'].value = ''
    torch.testing.assert_close(ex.scores, plain)
    ex.controls['adapter'].value = str(adapter_folders/'missing')
    assert 'adapter: no folder' in ex.error

def test_timestep_curves_average_to_the_official_score_with_its_denoising_term(scorer):
    official = direct(scorer, preset='official', timesteps=[300, 700])
    images, texts = [render(SCENE, 32)], scene_captions(SCENE)
    per_t = scores_by_timestep(official, images, texts)
    torch.testing.assert_close(per_t.mean(0), official.score(images, texts))
    per_layer = scores_by_layer(official, images, texts, layers=official.layers)
    torch.testing.assert_close(torch.stack(list(per_layer.values())).mean(0), official.score(images, texts))

@pytest.mark.parametrize('version', ['1', '2'])
def test_words_and_maps_on_sd_shaped_pipelines_with_the_real_clip_tokenizer(tmp_path, version):
    pipe = sd_pipeline(tmp_path, version)
    sd = DSDScorer.from_pipeline(pipe, timesteps=[300, 700])
    text = 'a discffusion photograph of an astronaut, riding'
    spans = word_spans(sd.tokenizer, text)
    assert [w for w, _ in spans] == ['a', 'discffusion', 'photograph', 'of', 'an', 'astronaut', ',', 'riding', '<end>']
    assert len(spans[1][1]) > 1   # several BPE pieces, one word
    image = torch.rand(3, 80, 64)
    maps = attention_maps(sd, image, [text, 'a dog'], size=24)
    assert maps.shape == (2, 77, 24, 24)
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 24, 24))   # one unit of attention per pixel, over the 77 keys
    down = attention_maps(sd, image, [text], layers='down', size=24)   # stops the UNet after the down path
    assert down.shape == (1, 77, 24, 24) and not torch.allclose(down[0], maps[0])
    assert isinstance(plot_word_maps(sd, image, [text, 'a dog']), Figure)
