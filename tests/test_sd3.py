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


@pytest.mark.parametrize("max_sequence_length", [256, 512])
@pytest.mark.parametrize("t5_width", [32, 48])
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
