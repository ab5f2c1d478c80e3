"""Hand-written tests of `discffusion.adapters`: parameter counts and adapter-folder integrity."""
import json
import pytest
import torch
from safetensors.torch import save_file
from diffusers import UNet2DConditionModel
from discffusion.adapters import *
from discffusion.core import embedded_model_path
from discffusion.scoring import DSDScorer

torch.set_num_threads(1)


def test_sd21_official_count():
    assert lora_parameter_count(sd21_base_unet_config(), 'official', 4) == 829_952
    assert lora_parameter_count(sd21_base_unet_config(), 'cross-kv', 4) < 829_952


@pytest.fixture(scope='module')
def unet_and_lora():
    unet = UNet2DConditionModel.from_pretrained(embedded_model_path()/'unet')
    return unet, add_lora(unet, 'cross-kv', rank=2)


@pytest.fixture
def prompt_adapter(tmp_path, unet_and_lora):
    unet, _ = unet_and_lora
    return save_adapter(unet, tmp_path/'prompt', PromptTokens(3, unet.config.cross_attention_dim))


def scorer():
    return DSDScorer.from_pretrained(None, device='cpu', timesteps=2)


@pytest.mark.parametrize('edit, message', [
    (dict(prompt_tokens=2), 'holds 3 prompt tokens, adapter.json lists 2'),
    (dict(prompt_tokens=-1), '"prompt_tokens": an int >= 0'),
    (dict(prompt_tokens=True), '"prompt_tokens": an int >= 0'),
    (dict(lora='no'), '"lora": true or false'),
    (dict(lora=True), 'lists pytorch_lora_weights.safetensors, which is missing'),
    (dict(prompt_tokens=0), 'prompt_tokens.safetensors is there but adapter.json does not list it'),
])
def test_adapter_json_must_agree_with_the_files(prompt_adapter, edit, message):
    info = json.loads((prompt_adapter/INFO_FILE).read_text()) | edit
    (prompt_adapter/INFO_FILE).write_text(json.dumps(info))
    with pytest.raises((ValueError, FileNotFoundError)) as e: load_adapter(scorer(), prompt_adapter)
    assert message in str(e.value) and '\n' not in str(e.value)


def test_adapter_json_that_is_not_an_object(prompt_adapter):
    (prompt_adapter/INFO_FILE).write_text('[1, 2]')
    with pytest.raises(ValueError, match='needs "lora"'): load_adapter(scorer(), prompt_adapter)


def test_prompt_file_without_vectors(prompt_adapter):
    save_file({'other': torch.zeros(3, 4)}, prompt_adapter/PROMPT_FILE)
    with pytest.raises(ValueError, match="holds no \\[n, dim\\] tensor 'vectors'"):
        load_adapter(scorer(), prompt_adapter)


def test_rank_in_json_must_match_the_weights(tmp_path, unet_and_lora):
    unet, lora = unet_and_lora
    out = save_adapter(unet, tmp_path/'lora', None, lora)
    (out/INFO_FILE).write_text(json.dumps(json.loads((out/INFO_FILE).read_text()) | dict(rank=8)))
    with pytest.raises(ValueError, match='adapter.json says rank 8, pytorch_lora_weights.safetensors has rank 2'):
        load_adapter(scorer(), out)


def test_inf_in_prompt_tokens_is_named(prompt_adapter):
    save_file({'vectors': torch.full((3, 64), float('inf'))}, prompt_adapter/PROMPT_FILE)
    with pytest.raises(ValueError, match="prompt_tokens.safetensors: tensor 'vectors' holds NaN or Inf"):
        load_adapter(scorer(), prompt_adapter)


def test_folder_path_that_is_a_file(tmp_path, unet_and_lora):
    unet, lora = unet_and_lora
    (tmp_path/'f').write_text('x')
    with pytest.raises(NotADirectoryError, match='is a file, not a folder'):
        save_adapter(unet, tmp_path/'f', None, lora)


def test_official_checkpoint_with_nan_is_named(tmp_path):
    attn = 'mid_block.attentions.0.transformer_blocks.0.attn2'
    sd = {f'{attn}.processor.to_k_lora.down.weight': torch.zeros(4, 8),
          f'{attn}.processor.to_k_lora.up.weight': torch.full((8, 4), float('nan'))}
    torch.save(sd, tmp_path/'pytorch_model.bin')
    with pytest.raises(ValueError, match="pytorch_model.bin: tensor '.*to_k_lora.up.weight' holds NaN"):
        convert_official_checkpoint(tmp_path/'pytorch_model.bin', tmp_path/'out')
    assert not (tmp_path/'out').exists()
