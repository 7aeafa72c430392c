"""The embedded model's codec and training recipe, on a tiny configuration."""

import pytest
import torch

from promptedit.codec import PatchCodec
from promptedit.models import load_model, save_model
from promptedit.train.shapes import TrainConfig, build_tokenizer, min_snr_weights, train
from promptedit.world import spec
from promptedit.testing import TINY_TRAIN as TINY

pytestmark = pytest.mark.integration


def test_codec_is_exact_and_round_trips_through_a_folder(tmp_path, capfd):
    codec = PatchCodec(patch_size=4)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    z = codec.encode(x).latent_dist.mean
    assert z.shape == (2, 48, 16, 16)
    assert torch.equal(codec.decode(z).sample, x)
    # a 4x4 patch becomes the 48 channels of one latent position
    assert torch.equal(z[0, :16, 0, 0], x[0, 0, :4, :4].reshape(16))
    codec.save_pretrained(tmp_path / "vae")
    capfd.readouterr()
    loaded = PatchCodec.from_pretrained(tmp_path / "vae")
    assert "not expected" not in capfd.readouterr().err  # diffusers' warning about unknown config attributes
    assert torch.equal(loaded(x), x) and loaded.latent_channels == 48


def test_tokenizer_has_every_word_as_one_token():
    tok = build_tokenizer(TrainConfig(**TINY))
    words = {w for group in (spec.COLOURS, spec.SHAPES, spec.BACKGROUNDS, spec.SIZES, spec.TEXTURES) for w in group}
    words |= {"a", "and", "on", "background", "at", "night", "blurry", "photo", "of", "sketch", "pixel", "art"}
    for w in sorted(words):
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    ids = tok("a red circle on a white background").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 9
    assert tok.model_max_length == 32


def test_min_snr_weights():
    a = torch.tensor([0.999, 0.5, 0.001])
    w = min_snr_weights(a, torch.arange(3), gamma=5.0)
    snr = a / (1 - a)
    assert torch.allclose(w, torch.tensor([5.0 / snr[0], 1.0, 1.0]))
    v = min_snr_weights(a, torch.arange(3), gamma=5.0, prediction_type="v_prediction")
    assert torch.allclose(v, torch.clamp(snr, max=5.0) / (snr + 1))


def test_train_resume_and_export(tmp_path):
    config = TrainConfig(**TINY)
    logs = []
    model = train(config, tmp_path / "run", progress=False, log=logs.append)
    assert model.training_info["steps"] == 3 and (tmp_path / "run" / "checkpoint.pt").is_file()
    more = train(TrainConfig(**{**TINY, "steps": 4}), tmp_path / "run", progress=False, log=logs.append)
    assert any("resumed from step 3" in m for m in logs)
    assert more.training_info["steps"] == 4
    folder = save_model(more, tmp_path / "export")
    loaded = load_model(folder)
    assert isinstance(loaded.vae, PatchCodec) and loaded.image_size == 64 and loaded.max_length == 32
    from promptedit.methods.editing import EditSpec, edit

    res = edit(loaded, EditSpec("a red circle on a white background", ("a blue circle on a white background",)),
               num_inference_steps=2, progress=False)
    assert res.images.shape == (2, 64, 64, 3)


def test_batches_rendered_ahead_by_workers_are_the_stream_in_order():
    """--workers renders in other processes; the batches, and so the run, must be the same as in-process."""
    from promptedit.train.shapes import rendered_batch, rendered_batches

    config = TrainConfig(**{**TINY, "steps": 5, "batch_size": 3})
    ahead = list(rendered_batches(config, start=2, workers=2))
    assert len(ahead) == 3
    for step, (captions, x, masks) in zip(range(2, 5), ahead):
        want_captions, want_x, want_masks = rendered_batch(config, step)
        assert captions == want_captions and torch.equal(x, want_x)
        assert all((a == b).all() for a, b in zip(masks, want_masks))


def test_training_with_workers_gives_the_same_weights(tmp_path):
    a = train(TrainConfig(**TINY), tmp_path / "a", progress=False, log=lambda m: None)
    b = train(TrainConfig(**TINY), tmp_path / "b", progress=False, log=lambda m: None, workers=1)
    assert all(torch.equal(p, q) for p, q in zip(a.unet.parameters(), b.unet.parameters()))


def test_a_run_can_start_from_an_exported_model(tmp_path):
    """--init-from: the new run's weights are the given model's (lr 0 keeps them), with its tokenizer."""
    start = train(TrainConfig(**TINY), tmp_path / "a", progress=False, log=lambda m: None)
    logs = []
    config = TrainConfig(**{**TINY, "steps": 1, "lr": 0.0, "data_seed": 5})
    tuned = train(config, tmp_path / "b", progress=False, log=logs.append, init_from=start)
    assert any("starting from" in m for m in logs)
    for mine, theirs in ((tuned.unet, start.unet), (tuned.text_encoder, start.text_encoder)):
        assert all(torch.equal(p, q) for p, q in zip(mine.parameters(), theirs.parameters()))
    assert tuned.tokenizer.get_vocab() == start.tokenizer.get_vocab()
    # in a folder that holds another tokenizer but no checkpoint, it takes the model's tokenizer, not the folder's
    from promptedit.testing import tiny_tokenizer

    other = tiny_tokenizer(max_length=config.max_length)
    assert other.get_vocab() != start.tokenizer.get_vocab()
    other.save_pretrained(tmp_path / "e" / "tokenizer")
    again = train(config, tmp_path / "e", progress=False, log=lambda m: None, init_from=start)
    assert again.tokenizer.get_vocab() == start.tokenizer.get_vocab()
    assert all(torch.equal(p, q) for p, q in zip(again.unet.parameters(), start.unet.parameters()))
    # a fresh run of the same config does not start there
    fresh = train(config, tmp_path / "c", progress=False, log=lambda m: None)
    assert not all(torch.equal(p, q) for p, q in zip(fresh.unet.parameters(), start.unet.parameters()))
    # another architecture is refused, naming the component
    other = TrainConfig(**{**TINY, "unet_channels": (16, 16, 32), "steps": 1})
    with pytest.raises(ValueError, match="UNet"):
        train(other, tmp_path / "d", progress=False, log=lambda m: None, init_from=start)


def test_identity_head_fitted_to_a_trained_encoder_lowers_its_loss():
    """A run from trained weights fits the word-identity classifier first instead of starting it at the token
    embeddings (which would pull the encoder's outputs towards them)."""
    from promptedit.train.shapes import build_model, caption_corpus, fit_identity_head
    from promptedit.train.words import token_identity_loss, word_positions

    config = TrainConfig(**TINY)
    tok = build_tokenizer(config)
    model = build_model(config, tok)
    encoder = model.text_encoder
    ids = tok(caption_corpus(n=64, seed=3)[:64], padding="max_length", max_length=config.max_length,
              truncation=True, return_tensors="pt").input_ids
    words = word_positions(ids, {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id})
    with torch.no_grad():
        hidden = encoder(ids)[0]
    before = token_identity_loss(hidden, ids, words, encoder.get_input_embeddings().weight)
    head = fit_identity_head(model, tok, config, iters=50, batch_size=64)
    after = token_identity_loss(hidden, ids, words, head)
    assert after < 0.5 * before


def test_training_stream_can_reweight_two_object_scenes():
    from promptedit.world import scene_at

    assert [scene_at(1, i) for i in range(20)] == [scene_at(1, i, spec.P_TWO_OBJECTS) for i in range(20)]
    assert all(len(scene_at(1, i, 1.0).objects) == 2 for i in range(20))
    assert all(len(scene_at(1, i, 0.0).objects) == 1 for i in range(20))
    with pytest.raises(ValueError, match="two-object"):
        TrainConfig(**{**TINY, "two_object_fraction": 1.5})


def test_an_sdxl_architecture_run_starts_from_an_sd_model_where_shapes_agree(tmp_path):
    """--arch sdxl: two text encoders and text-time conditioning; started from an SD-architecture model, its UNet
    reads the first encoder's half of the features as the SD UNet read them after the final layer norm, exactly
    for a token whose σ is the fold's σ̄ (the second half and the text-time embedding start at zero), its
    encoders' extra layer is the identity; it trains, resumes, exports and edits; an SD run cannot start from it."""
    from promptedit.methods.editing import EditSpec, edit
    from promptedit.train.shapes import build_model, init_sdxl_from_sd

    sd = train(TrainConfig(**TINY), tmp_path / "sd", progress=False, log=lambda m: None)
    pruned = build_model(TrainConfig(**{**TINY, "arch": "sdxl"}), sd.tokenizer)  # the layout that ships
    assert pruned.unet.mid_block is None and pruned.unet.config.up_block_types[0] == "UpBlock2D"
    init_sdxl_from_sd(pruned, sd)
    assert torch.equal(pruned.unet.up_blocks[0].resnets[0].conv1.weight, sd.unet.up_blocks[0].resnets[0].conv1.weight)
    # with SD's own UNet layout the start is SD's function exactly
    xl = build_model(TrainConfig(**{**TINY, "arch": "sdxl", "mid_block": True, "up_attention": (True,) * 3}),
                     sd.tokenizer)
    assert xl.family == "sdxl" and len(xl.text.encoders) == 2
    sigma = init_sdxl_from_sd(xl, sd)
    ids = sd.tokenizer(["a red circle on a white background"], padding="max_length", max_length=32,
                       return_tensors="pt").input_ids
    with torch.no_grad():
        h_sd = sd.text_encoder(ids, output_hidden_states=True).hidden_states[-1]  # the SD encoder's last layer
        h_xl = xl.text_encoder(ids, output_hidden_states=True).hidden_states[-2]  # what SDXL reads: penultimate
        assert torch.allclose(h_sd, h_xl, atol=1e-5)
        x, t = torch.randn(1, 48, 16, 16), torch.tensor([500])
        cond = sd.text_encoder(ids)[0]  # (1, L, D): after the final layer norm
        # every token rescaled about its mean to σ = σ̄: the same layer-norm output, and the fold is exact for it
        mu = h_xl.mean(-1, keepdim=True)
        h = mu + (h_xl - mu) * sigma / h_xl.var(-1, unbiased=False, keepdim=True).sqrt()
        feats = torch.cat([h, torch.randn_like(h)], dim=-1)
        added = {"text_embeds": torch.randn(1, TINY["text_hidden"]), "time_ids": torch.tensor([[64., 64, 0, 0, 64, 64]])}
        assert torch.allclose(xl.unet(x, t, encoder_hidden_states=feats, added_cond_kwargs=added).sample,
                              sd.unet(x, t, encoder_hidden_states=cond).sample, atol=1e-4)
    folder = save_model(sd, tmp_path / "sd-export")
    model = train(TrainConfig(**{**TINY, "arch": "sdxl"}), tmp_path / "xl", progress=False, log=lambda m: None,
                  init_from=load_model(folder))
    loaded = load_model(save_model(model, tmp_path / "xl-export"))
    assert loaded.family == "sdxl" and loaded.name.endswith("xl-export")
    res = edit(loaded, EditSpec("a red circle on a white background", ("a blue circle on a white background",)),
               num_inference_steps=2, progress=False)
    assert res.images.shape == (2, 64, 64, 3)
    with pytest.raises(ValueError, match="SDXL-architecture"):
        train(TrainConfig(**TINY), tmp_path / "bad", progress=False, log=lambda m: None, init_from=loaded)


def test_flux_training_noise_levels_are_the_shifted_logit_normal():
    """SD3's logit-normal σ (m = 0, s = 1), shifted as the scheduler shifts a 16 × 16-token image (FLUX.1's
    dynamic shift, μ = 1.15 there): the median is e^μ / (e^μ + 1)."""
    import math

    from promptedit.train.flow import FLUX_SCHEDULER, training_mu, training_sigmas

    assert training_mu(FLUX_SCHEDULER, 256) == pytest.approx(1.15) and training_mu(FLUX_SCHEDULER, 64) == 0.5
    sigmas = training_sigmas(20000, torch.Generator().manual_seed(0), FLUX_SCHEDULER, 256)
    assert sigmas.shape == (20000,) and 0 < sigmas.min() and sigmas.max() < 1
    assert sigmas.median().item() == pytest.approx(math.exp(1.15) / (math.exp(1.15) + 1), abs=0.01)
    fixed = training_sigmas(20000, torch.Generator().manual_seed(0), {"shift": 3.0}, 256)  # SD3's fixed shift
    assert fixed.median().item() == pytest.approx(0.75, abs=0.01)


def test_flux_loss_is_rectified_flow_with_the_sigma_timestep():
    """x_σ = (1 − σ)·x₀ + σ·ε, target ε − x₀, the backbone called at t = σ·1000: a backbone that answers
    (x − x₀)/σ, the exact velocity, has loss 0; one that answers 0 has E‖ε − x₀‖²."""
    from types import SimpleNamespace

    from promptedit.conditioning import Conditioning
    from promptedit.train.flow import FLUX_SCHEDULER, flow_loss

    z0 = torch.randn(4, 12, 32, 32)
    config = TrainConfig(**TINY)
    text = SimpleNamespace(encode_ids=lambda ids, size: Conditioning(torch.zeros(4, 3, 8)))

    def model(answer):
        return SimpleNamespace(text=text, scheduler_config=FLUX_SCHEDULER,
                               backbone=SimpleNamespace(predict=lambda x, t, cond: answer(x, t / 1000)))

    exact, _, signal = flow_loss(model(lambda x, s: (x - z0) / s[:, None, None, None]), z0, [], torch.Generator()
                                 .manual_seed(0), config)
    assert exact.item() < 1e-8 and signal.shape == (4,) and ((0 < signal) & (signal < 1)).all()
    zero, _, _ = flow_loss(model(lambda x, s: torch.zeros_like(x)), z0, [], torch.Generator().manual_seed(0), config)
    assert zero.item() == pytest.approx(1 + z0.pow(2).mean().item(), rel=0.05)


def test_a_flux_architecture_run_trains_resumes_exports_and_loads(tmp_path, monkeypatch):
    """--arch flux: a FluxTransformer2DModel (no guidance embedding) under CLIP's pooled vector, started from an
    SD-architecture run's CLIP encoder and tokenizer, and T5's keys on the T5-style tokenizer; the codec packs 2 × 2
    latent cells of 2 px patches into 16 × 16 tokens; it trains with the grounding terms on the joint attention's
    text view, resumes, exports in fp16 as a FluxPipeline folder, loads and generates."""
    import json

    from promptedit.methods.editing import generate
    import numpy as np

    from promptedit.testing import TINY_TRAIN_FLUX
    from promptedit.train import shapes
    from promptedit.train.grounding import grounding_targets

    sd = train(TrainConfig(**{**TINY, "steps": 1}), tmp_path / "sd", progress=False, log=lambda m: None)
    config = TrainConfig(**TINY_TRAIN_FLUX)
    assert config.patch_size == 2 and config.lr == 3e-4
    logs, maps = [], []

    def grounding(recorded, regions, grounded, weight):  # what the grounding term is given
        maps.append([tuple(a.shape) for a in recorded])
        return token_grounding_loss(recorded, regions, grounded, weight)

    token_grounding_loss = shapes.token_grounding_loss
    monkeypatch.setattr(shapes, "token_grounding_loss", grounding)
    model = train(config, tmp_path / "run", progress=False, log=logs.append, init_from=sd)
    # every joint layer's image → text view, (batch, 16 × 16 image tokens, 32 T5 keys), 1 double + 1 single block
    assert maps == [[(4, 256, 32)] * 2] * 3
    assert any("CLIP text encoder" in m for m in logs)
    assert model.family == "flux" and not model.unet.config.guidance_embeds and model.vae.latent_channels == 12
    assert model.text.components()["tokenizer"].get_vocab() == sd.tokenizer.get_vocab()
    # T5 has no start token: the grounded words are the keys at their own word index
    caption, objects = "a red circle on a white background", np.zeros((1, 64, 64), dtype=bool)
    objects[0, 8:24, 8:24] = True
    ids = model.tokenizer(caption).input_ids
    _, grounded = grounding_targets([caption], [objects], 32, first=0)
    assert [model.tokenizer.decode([ids[k]]) for k in grounded[0].nonzero()[:, 0]] == ["red", "circle", "white",
                                                                                        "background"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and "text_encoder_2" in state and (tmp_path / "run" / "tokenizer_2").is_dir()
    more = train(TrainConfig(**{**TINY_TRAIN_FLUX, "steps": 4}), tmp_path / "run", progress=False, log=logs.append)
    assert any("resumed from step 3" in m for m in logs) and more.training_info["steps"] == 4
    folder = save_model(more, tmp_path / "export", half=True)
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "FluxPipeline"
    loaded = load_model(folder)
    assert loaded.family == "flux" and loaded.image_size == 64 and loaded.unet.dtype == torch.float32
    assert torch.equal(loaded.unet.proj_out.weight, more.unet.proj_out.weight.half().float())
    # the defaults' 20 steps, shifted for the 64 px canvas's 256 tokens (the transformer's config records no size)
    res = generate(loaded, ["a red circle on a white background"], progress=False)
    assert res.images.shape == (1, 64, 64, 3) and res.sampling.num_inference_steps == 20
