"""Hand-written tests of `discffusion.prompt_learning` on the embedded model (a few steps each)."""
import json, tempfile
from pathlib import Path
import pytest
import torch
from discffusion.adapters import add_lora, load_adapter
from discffusion.prompt_learning import *
from discffusion.prompt_learning import _batch_indices
from discffusion.scoring import DSDScorer
from discffusion.shapes import make_split

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def data():
    "A scorer's worth of groups and a small validation set (encoders are frozen, so these can be shared)."
    sc = shapes_scorer()
    val = shapes_evalset(sc, make_split('val', 4, seed=0), directions=('t2i',))
    return shapes_groups(sc, make_split('train', 4, seed=0)), val


def test_gradient_reaches_only_trainable_parts(data):
    train, _ = data
    sc = shapes_scorer()
    cfg = TrainConfig(targets='cross-kv', prompt_tokens=2)
    lora, prompt = make_trainable(sc, cfg)
    loss, scores = group_loss(sc, train[:3], cfg, torch.Generator().manual_seed(0), prompt)
    loss.backward()
    grads = {n: p.grad for n, p in sc.unet.named_parameters() if p.requires_grad}
    assert grads and all(n.count('lora_') == 1 and '.attn2.' in n for n in grads)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if 'lora_B' in n)
    assert prompt.vectors.grad is not None and prompt.vectors.grad.abs().sum() > 0
    assert all(p.grad is None for p in sc.text_encoder.parameters())
    assert all(p.grad is None for p in sc.vae.parameters())


@pytest.mark.parametrize('preset', ['attention', 'official'])
def test_gradient_checkpointing_same_gradients(data, preset):
    train, _ = data
    grads = []
    for ckpt in (False, True):
        sc = shapes_scorer(preset=preset)
        cfg = TrainConfig(targets='official')
        make_trainable(sc, cfg)
        with torch.no_grad():
            for n, p in sc.unet.named_parameters():
                if 'lora_B' in n: p.fill_(0.01)
        if ckpt: sc.unet.enable_gradient_checkpointing()
        sc.unet.train()
        with checkpoint_safe(sc, train[:2], None, ckpt):   # without it the re-run forward uses other processors
            loss, _ = group_loss(sc, train[:2], cfg, torch.Generator().manual_seed(0))
            loss.backward()
        grads.append({n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                      for n, p in sc.unet.named_parameters() if p.requires_grad})
    for n in grads[0]: torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-4)
    assert sum(g.abs().sum() for g in grads[0].values()) > 0


def test_training_changes_score_and_is_deterministic():
    exs = make_split('test', 2, seed=0)
    images, texts = [e.image for e in exs], [e.caption for e in exs]
    base = shapes_scorer().score(images, texts)
    with tempfile.TemporaryDirectory() as d:
        outs = [train_shapes(Path(d)/name, shots=4, targets='official', seed=3, steps=3, pool=8, n_val=0, batch_size=2,
                             progress=False) for name in ('a', 'b')]
        got = [load_adapter(shapes_scorer(), o).score(images, texts) for o in outs]
        assert (got[0] - base).abs().max() > 1e-4
        torch.testing.assert_close(got[0], got[1], atol=0, rtol=0)
        info = json.loads((outs[0]/'adapter.json').read_text())
        assert info['shots'] == 4 and info['rank'] == 4 and info['scorer']['timesteps'] == [200, 800]


def test_prompt_only_training_saves_prompt_tokens_only():
    with tempfile.TemporaryDirectory() as d:
        out = train_shapes(Path(d)/'p', shots=2, targets='prompt', steps=2, pool=4, n_val=0, batch_size=2,
                           progress=False)
        assert (out/'prompt_tokens.safetensors').is_file() and not (out/'pytorch_lora_weights.safetensors').exists()
        sc = load_adapter(shapes_scorer(), out)
        assert sc.prompt_tokens.vectors.shape == (4, sc.text_encoder.config.hidden_size)
        with pytest.raises(TypeError, match='prompt tokens apply to a DSDScorer'):
            from discffusion.core import load_pipeline
            load_adapter(load_pipeline(None, device='cpu'), out)


def test_early_stopping(data):
    train, val = data
    sc = shapes_scorer()
    # lr 0: validation never improves strictly, so training stops after `patience` validations
    cfg = TrainConfig(targets='cross-kv', lr=0.0, steps=20, val_every=1, patience=2, batch_size=2)
    res = fit(sc, train, val, cfg, progress=False)
    assert res['history']['step'] == [1, 2] and res['history']['val_step'] == [0, 1, 2]


def test_mixed_precision_step(data):
    train, _ = data
    sc = shapes_scorer()
    cfg = TrainConfig(targets='cross-kv', steps=1, batch_size=2, mixed_precision='bf16', val_every=0)
    res = fit(sc, train[:2], None, cfg, progress=False)
    assert torch.isfinite(torch.tensor(res['history']['loss'])).all()
    cfg = TrainConfig(targets='cross-kv', steps=1, batch_size=2, val_every=0)
    fit(shapes_scorer(), train[:2], None, cfg, progress=False)


def test_bad_inputs(data):
    train, _ = data
    with pytest.raises(ValueError, match='only 3 are available'): sample_shots([1, 2, 3], 4)
    with pytest.raises(ValueError, match='rank'): add_lora(shapes_scorer().unet, 'official', rank=0)
    with pytest.raises(ValueError, match="timesteps: unknown mode"): TrainConfig(timesteps='fixed')
    with pytest.raises(ValueError, match='same number of candidates'):
        sc = shapes_scorer()
        g = CandidateGroup(train[0].latents[:1], train[0].hidden[:1], None)
        score_groups(sc, [train[0], g], torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, 4, 8, 8))
    assert sorted(_batch_indices(5, 0, 5, 1)) == list(range(5))
