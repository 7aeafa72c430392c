"""Stable Diffusion 3 / 3.5 on tiny random-weight components built in code (:func:`promptedit.testing.
tiny_sd3_components`, SD3.5 Medium in miniature): the conditioning is diffusers' to the bit."""

from __future__ import annotations

import warnings

import pytest
import torch

from promptedit.errors import ParameterError, PromptTruncatedWarning, UnknownWordsWarning

pytestmark = pytest.mark.integration

PROMPTS = ["a photo of a cat", "a blue square on a black background", "A Zebra-dog, café!"]
# 84 words: past CLIP's 77 tokens and (spelled letter by letter by the tiny T5) past 256 T5 tokens, not 512
LONG = " ".join(["a zebra and a giraffe near"] * 14)


def sd3_text(parts: dict, max_sequence_length: int = 256):
    from promptedit.conditioning import SD3Text

    return SD3Text([parts["tokenizer"], parts["tokenizer_2"], parts["tokenizer_3"]],
                   [parts["text_encoder"], parts["text_encoder_2"], parts["text_encoder_3"]],
                   max_sequence_length=max_sequence_length)


@pytest.fixture(scope="module")
def parts():
    from promptedit.testing import tiny_sd3_components

    return tiny_sd3_components(0)


@pytest.mark.parametrize("max_sequence_length, t5_width", [(256, 32), (512, 48)])
def test_sd3_conditioning_is_the_pipelines(parts, max_sequence_length, t5_width):
    """embeddings = [CLIP-L ‖ CLIP-G penultimate, zero-padded to T5's width ; T5] on the sequence, pooled = both CLIPs'
    projections, ∅ = the empty prompt's: bit for bit what ``StableDiffusion3Pipeline.encode_prompt`` gives, for
    short prompts, one CLIP truncates, and one T5 truncates at 256; with a T5 as wide as the CLIPs together (the tiny
    model's 16 + 16 = 32) and one wider (48, as SD3's 768 + 1280 < 4096: the CLIP keys are zero-padded)."""
    from diffusers import StableDiffusion3Pipeline

    from promptedit.testing import _tiny_t5

    parts = {**parts, "text_encoder_3": _tiny_t5(parts["tokenizer_3"], 4, d_model=t5_width)}
    pipe = StableDiffusion3Pipeline(**parts)
    text = sd3_text(parts, max_sequence_length)
    assert len(text.tokenize(LONG, warn=False).ids) > 77 and len(parts["tokenizer_3"](LONG).input_ids) in range(257, 513)
    prompts = [*PROMPTS, LONG]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cond = text.encode(prompts)
        uncond = text.unconditional(len(prompts))
    truncated = [str(w.message) for w in caught if w.category is PromptTruncatedWarning]
    assert len(truncated) == (2 if max_sequence_length == 256 else 1)  # CLIP's 77, and T5's 256
    # T5 reads é as its unknown token (CLIP spells every byte): the word is named
    unknown = [str(w.message) for w in caught if w.category is UnknownWordsWarning]
    assert len(unknown) == 1 and "'café'" in unknown[0]
    embeds, neg, pooled, neg_pooled = pipe.encode_prompt(prompts, None, None, device="cpu",
                                                         max_sequence_length=max_sequence_length)
    assert cond.embeddings.shape == (4, 77 + max_sequence_length, t5_width)
    assert text.max_length == 77 + max_sequence_length and cond.pooled.shape == (4, 32) and text.hidden_size == t5_width
    assert torch.equal(cond.embeddings, embeds) and torch.equal(cond.pooled, pooled)
    assert torch.allclose(uncond.embeddings, neg, atol=1e-6) and torch.allclose(uncond.pooled, neg_pooled, atol=1e-6)
    # ∅ is one row, the empty prompt's, expanded: the pipeline's negative of a batch of one bit for bit (a batch of
    # four "" gives it within float error: CPU kernels differ with the batch)
    _, neg, _, neg_pooled = pipe.encode_prompt(PROMPTS[:1], None, None, device="cpu",
                                               max_sequence_length=max_sequence_length)
    assert torch.equal(uncond.embeddings[:1], neg) and torch.equal(uncond.pooled[:1], neg_pooled)
    # the CLIP keys' features past CLIP-L ‖ CLIP-G (16 + 16) are the zero padding to T5's width
    assert (cond.embeddings[:, :77, 32:] == 0).all() and (cond.embeddings[:, :77, :32] != 0).any()


def test_sd3_encode_ids_carries_gradients_to_all_three_encoders():
    """``encode_ids`` (one ids tensor per encoder) is :meth:`encode` with gradients: training reads the text so."""
    from promptedit.testing import tiny_sd3_components

    parts = tiny_sd3_components(1)
    text = sd3_text(parts, 32)
    ids = [text._ids(text.tokenizer, PROMPTS[:2]), text._ids(text.tokenizer_2, PROMPTS[:2]),
           text._ids(text.tokenizer_3, PROMPTS[:2], 32)]
    assert [tuple(i.shape) for i in ids] == [(2, 77), (2, 77), (2, 32)]
    for encoder in text.encoders:
        encoder.requires_grad_(True)
    cond = text.encode_ids(ids)
    # the same values (within float error: attention takes another kernel when it keeps gradients)
    assert torch.allclose(cond.embeddings.detach(), text.encode(PROMPTS[:2]).embeddings, atol=1e-5)
    (cond.embeddings.square().sum() + cond.pooled.square().sum()).backward()
    for encoder in text.encoders:
        grads = [p.grad for p in encoder.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("length", [0, 513, 2.5, True])
def test_sd3_refuses_a_t5_length_it_cannot_take(parts, length):
    with pytest.raises(ParameterError, match="max_sequence_length"):
        sd3_text(parts, length)


@pytest.fixture(scope="module")
def sd3():
    from promptedit.testing import tiny_sd3_model

    return tiny_sd3_model(0)


def test_sd3_sites_are_joint_with_sd35s_image_only_attention_as_self(sd3):
    """Each block's ``attn`` is a joint site; SD3.5's second attention (the tiny model's first block) a self site;
    all on the 2 × 2-patch grid, in the transformer's blocks."""
    sites = {s.name: s for s in sd3.backbone.sites()}
    assert {n: (s.kind, s.grid, s.place, s.index) for n, s in sites.items()} == {
        "transformer_blocks.0.attn": ("joint", 2, "blocks", 0), "transformer_blocks.0.attn2": ("self", 2, "blocks", 0),
        "transformer_blocks.1.attn": ("joint", 2, "blocks", 1)}
    assert sd3.unet.transformer_blocks[-1].context_pre_only and sd3.backbone.grids() == [2]
    assert sd3.backbone.grids(kind="self") == [2] and sd3.max_length == 77 + 32 and sd3.keys.length == 77 + 32



def test_our_loop_is_stable_diffusion_3_pipelines_and_a_controller_wanting_nothing_is_bit_identical(sd3):
    """Generation with no control equals ``StableDiffusion3Pipeline`` for the same x_T, steps and scheduler (classifier-
    free guidance, [uncond, cond]); a controller that wants nothing runs the stock processors, bit for bit; one that
    reads every map (joint views and SD3.5's self-attention, explicitly) gives the same within float error."""
    from diffusers import StableDiffusion3Pipeline

    from promptedit.control import AttentionControl
    from promptedit.runner import denoise

    class Everything(AttentionControl):
        def wants(self, site):
            return True

    pipe = StableDiffusion3Pipeline(**sd3.pipeline_components())
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a photo of a cat", "a red circle on a white background"]
    x = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = pipe(prompts, latents=x, num_inference_steps=3, height=32, width=32, output_type="latent",
               **sd3.family_entry.pipeline_call(sd3, 4.0)).images
    cond = sd3.encode(prompts, size=(32, 32))
    ours = denoise(sd3, cond, x, num_inference_steps=3, guidance_scale=4.0, progress=False)
    assert (ours - ref).abs().max() < 1e-5 and (ours - x).abs().max() > 0.1
    assert torch.equal(denoise(sd3, cond, x, num_inference_steps=3, guidance_scale=4.0, progress=False,
                               controller=AttentionControl()), ours)
    assert torch.allclose(denoise(sd3, cond, x, num_inference_steps=3, guidance_scale=4.0, progress=False,
                                  controller=Everything()), ours, atol=1e-5)


def test_a_saved_sd3_folder_loads_here_and_in_diffusers_keeping_t5s_length(sd3, tmp_path):
    """Save → load keeps the family, the weights and T5's length (the tokenizer's ``model_max_length``, so the text
    keys stay 77 + 32); diffusers' ``StableDiffusion3Pipeline`` loads the same folder and gives our conditioning."""
    from diffusers import StableDiffusion3Pipeline

    from promptedit.conditioning import SD3Text
    from promptedit.models import load_model, save_model

    folder = save_model(sd3, tmp_path / "sd3")
    loaded = load_model(folder, device="cpu")
    assert isinstance(loaded.text, SD3Text) and loaded.family == "sd3" and loaded.keys.length == 77 + 32
    assert loaded.text.max_sequence_length == 32 and [s.start for s in loaded.keys.spans] == [0, 77]
    pipe = StableDiffusion3Pipeline.from_pretrained(folder)
    prompts = ["a photo of a cat"]
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompts, None, None, device="cpu",
                                                  do_classifier_free_guidance=False, max_sequence_length=32)
    cond = loaded.encode(prompts, size=(32, 32))
    assert torch.equal(cond.embeddings, embeds) and torch.equal(cond.pooled, pooled)


@pytest.mark.parametrize("fused", [True, False])
def test_sd35s_image_only_attention_takes_the_sources_maps_through_the_values_or_the_maps(fused):
    """Self-attention injection at SD3.5's second attention: the targets' rows are P_source · V_target, whether
    applied through the values (fused kernels) or to explicit maps; the other rows are the plain attention's."""
    import torch.nn.functional as F

    from promptedit.backbones.base import AttentionSite
    from promptedit.backbones.mmdit import self_attention
    from promptedit.control import AttentionControl, AttentionReplace
    from promptedit.control.edits import cross_replace_alpha

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 2, 16, 8, generator=g) for _ in range(3))  # uncond ×2, source, target; 4 × 4 tokens
    site = AttentionSite("transformer_blocks.0.attn2", "self", 2, "blocks", 0)
    ctrl = AttentionReplace(torch.eye(6)[None], cross_replace_alpha(4, 1, 6, 1.0), self_replace_steps=(0, 4),
                            self_replace_min_downsample=1, fused=fused)
    ctrl.begin(num_steps=4, latent_size=(8, 8), n_prompts=2)
    ctrl.begin_step(0)
    assert (ctrl.value_edit(site) is not None) == fused
    out = self_attention(q, k, v, controller=ctrl, site=site)
    plain = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out[:3], plain[:3], atol=1e-6)
    assert torch.allclose(out[3], F.scaled_dot_product_attention(q[2], k[2], v[3]), atol=1e-5)
    assert torch.equal(self_attention(q, k, v, controller=AttentionControl(), site=site), plain)
