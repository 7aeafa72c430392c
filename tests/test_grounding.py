"""The token-grounding loss of the embedded model's recipe (train/grounding.py)."""

import pytest
import torch

from promptedit.train.grounding import (BACKGROUND, GroundingRecorder, grounding_targets, token_grounding_loss,
                                        word_mass_loss, word_regions)
from promptedit.train.shapes import TrainConfig, build_tokenizer, train
from promptedit.world.dataset import iter_samples
from promptedit.testing import TINY_TRAIN as TINY

pytestmark = pytest.mark.integration


def test_word_regions_follow_the_grammar():
    cap = "a sketch of a big striped red circle and a blue star on a white background at night"
    regions = dict(zip(cap.split(), word_regions(cap)))  # the words here are unique but for "a"
    assert [regions[w] for w in ("big", "striped", "red", "circle")] == [0, 0, 0, 0]
    assert [regions[w] for w in ("blue", "star")] == [1, 1]
    assert regions["white"] == BACKGROUND and regions["background"] == BACKGROUND
    for w in ("a", "sketch", "of", "and", "on", "at", "night"):
        assert regions[w] is None, w
    assert len(word_regions(cap)) == len(cap.split())


def test_targets_put_each_word_on_its_tokens_and_pixels():
    tok = build_tokenizer(TrainConfig(**TINY))
    captions, masks = [], []
    for caption, _, m in iter_samples(6, seed=3):
        captions.append(caption)
        masks.append(m)
    captions[1] = ""  # a dropped caption grounds nothing
    regions, grounded = grounding_targets(captions, masks, 32)
    assert regions.shape == (6, 32, 64, 64) and grounded.shape == (6, 32)
    assert not grounded[1].any()
    for b in (0, 2, 3):
        ids = tok(captions[b]).input_ids
        words = captions[b].split()
        assert len(ids) == len(words) + 2  # every world word is one token, after the start token
        for i, r in enumerate(word_regions(captions[b])):
            assert bool(grounded[b, i + 1]) == (r is not None)
            if r is None:
                continue
            want = ~masks[b].any(0) if r == BACKGROUND else masks[b][r]
            assert torch.equal(regions[b, i + 1].bool(), torch.from_numpy(want))


def test_loss_is_zero_inside_and_grows_with_mass_outside():
    regions = torch.zeros(1, 4, 8, 8)
    regions[0, 1, :4] = 1.0  # token 1's word: the top half
    grounded = torch.tensor([[False, True, False, False]])
    inside = torch.zeros(1, 64, 4)
    inside[0, :32, 1] = 1 / 32  # all of token 1's mass in the top half
    inside[0, :, 0] = 1.0
    assert token_grounding_loss([inside], regions, grounded).item() == pytest.approx(0.0, abs=1e-7)
    half = inside.clone()
    half[0, :, 1] = 1 / 64  # spread evenly: half the mass outside → (1 − 0.5)² = 0.25
    assert token_grounding_loss([half], regions, grounded).item() == pytest.approx(0.25)
    # pooled to a coarser layer the same maps give the same fraction; sample weights scale the terms
    coarse = torch.full((1, 16, 4), 1 / 16)
    assert token_grounding_loss([coarse], regions, grounded, torch.tensor([0.5])).item() == pytest.approx(0.125)
    with pytest.raises(ValueError):
        token_grounding_loss([], regions, grounded)


def test_word_mass_asks_each_pixel_to_attend_to_the_words_describing_it():
    regions = torch.zeros(1, 5, 8, 8)
    regions[0, 1, :4] = 1.0  # token 1: the object, top half
    regions[0, 2, 4:] = 1.0  # token 2: the background, bottom half
    regions[0, 3, :4] = 1.0  # token 3 would be the object too, but it is not grounded
    grounded = torch.tensor([[False, True, True, False, False]])
    own = torch.zeros(1, 64, 5)
    own[0, :32, 1] = 0.6  # top pixels: 0.6 on their word; bottom: 0.5 on theirs; the rest on token 4 (padding)
    own[0, 32:, 2] = 0.5
    own[..., 4] = 1 - own[..., :4].sum(-1)
    assert word_mass_loss([own], regions, grounded, floor=0.5).item() == pytest.approx(0.0, abs=1e-7)
    padding = torch.zeros(1, 64, 5)
    padding[..., 4] = 1.0  # everything read from the padding: every pixel falls short by the whole floor
    assert word_mass_loss([padding], regions, grounded, floor=0.5).item() == pytest.approx(0.25)
    wrong = torch.zeros(1, 64, 5)
    wrong[0, :32, 3] = 1.0  # mass on an ungrounded word, and on the other region's word, counts as missing
    wrong[0, 32:, 1] = 1.0
    assert word_mass_loss([wrong], regions, grounded, torch.tensor([0.5]), floor=0.4).item() == pytest.approx(0.08)
    # a coarser layer: the regions are pooled to it, each 2×2 map pixel still one region
    coarse = torch.zeros(1, 16, 5)
    coarse[0, :8, 1] = 0.3
    coarse[0, 8:, 2] = 0.5
    assert word_mass_loss([coarse], regions, grounded, floor=0.5).item() == pytest.approx(0.5 * 0.2**2)
    nothing = torch.zeros(1, 5, dtype=torch.bool)  # a dropped caption asks nothing
    assert word_mass_loss([padding], regions, nothing).item() == 0.0
    probs = padding.clone().requires_grad_(True)
    word_mass_loss([probs], regions, grounded).backward()
    assert probs.grad[0, :32, 1].lt(0).all() and probs.grad[0, :, 4].eq(0).all()
    with pytest.raises(ValueError):
        word_mass_loss([own], regions, grounded, floor=0.0)


def test_recorder_keeps_gradients_and_passes_probabilities_through():
    from promptedit.backbones.base import AttentionSite

    rec = GroundingRecorder()
    rec.begin(num_steps=1, latent_size=(4, 4), n_prompts=2)
    rec.begin_step(0)
    probs = torch.rand(2, 3, 16, 5, requires_grad=True)
    site = AttentionSite("down_blocks.0.attentions.0.transformer_blocks.0.attn2", "cross", 1, "down", 0)
    assert rec.wants(site)
    assert rec(probs, site) is probs
    rec.maps[0].sum().backward()
    assert probs.grad is not None and rec.maps[0].shape == (2, 16, 5)


def _grounding_loss_of(model, captions, masks, t=200, loss=token_grounding_loss):
    """The grounding loss of ``model`` on a fixed batch at a fixed timestep (no gradients)."""
    ids = model.tokenizer(captions, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    z = torch.randn(len(captions), 48, 16, 16, generator=torch.Generator().manual_seed(0))
    rec = GroundingRecorder()
    with torch.no_grad(), model.backbone.attach(rec):
        rec.begin(num_steps=1, latent_size=(16, 16), n_prompts=len(captions))
        rec.begin_step(0)
        model.unet(z, torch.full((len(captions),), t), encoder_hidden_states=model.text_encoder(ids)[0])
    regions, grounded = grounding_targets(captions, masks, 32)
    return loss(rec.maps, regions, grounded).item()


def test_training_with_grounding_moves_attention_into_the_regions(tmp_path):
    """Training with the grounding term lowers it on held-out samples; without it, it stays put; it is logged,
    and no attention processor is left behind on the exported UNet."""
    captions, masks = [], []
    for caption, _, m in iter_samples(8, seed=99):
        captions.append(caption)
        masks.append(m)
    base = dict(TINY, steps=30, checkpoint_every=100, batch_size=8, lr=3e-3, ema_decay=0.0)
    start = _grounding_loss_of(train(TrainConfig(**dict(base, steps=1)), tmp_path / "a", progress=False,
                                     log=lambda m: None), captions, masks)
    off = train(TrainConfig(**dict(base, grounding_weight=0.0)), tmp_path / "b", progress=False, log=lambda m: None)
    on = train(TrainConfig(**dict(base, grounding_weight=5.0)), tmp_path / "c", progress=False, log=lambda m: None)
    assert "grounding" in on.training_info["history"][-1] and "grounding" not in off.training_info["history"][-1]
    assert not any("Controlled" in type(p).__name__ for p in on.unet.attn_processors.values())
    g_on, g_off = _grounding_loss_of(on, captions, masks), _grounding_loss_of(off, captions, masks)
    assert g_on < 0.9 * start and g_on < 0.9 * g_off, (start, g_off, g_on)


def test_training_with_the_word_mass_term_moves_mass_onto_the_words(tmp_path):
    captions, masks = [], []
    for caption, _, m in iter_samples(8, seed=99):
        captions.append(caption)
        masks.append(m)
    base = dict(TINY, steps=30, checkpoint_every=100, batch_size=8, lr=3e-3, ema_decay=0.0, grounding_weight=0.0,
                word_mass_weight=0.0)
    off = train(TrainConfig(**base), tmp_path / "off", progress=False, log=lambda m: None)
    on = train(TrainConfig(**dict(base, word_mass_weight=5.0)), tmp_path / "on", progress=False, log=lambda m: None)
    assert "word_mass" in on.training_info["history"][-1] and "word_mass" not in off.training_info["history"][-1]
    m_on, m_off = (_grounding_loss_of(m, captions, masks, loss=word_mass_loss) for m in (on, off))
    assert m_on < 0.8 * m_off, (m_off, m_on)
