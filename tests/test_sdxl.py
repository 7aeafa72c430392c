"""Stable Diffusion XL on tiny random-weight components built in code (as diffusers' own SDXL tests do): the loop
reproduces diffusers' pipeline, every method runs, and every command runs on an SDXL folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from promptedit.methods.editing import EditSpec, edit, generate
from promptedit.errors import ParameterError, PromptError

from helpers import run

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"


@pytest.fixture(scope="module")
def xl():
    from promptedit.testing import tiny_sdxl_components

    return tiny_sdxl_components(0)


@pytest.fixture(scope="module")
def xl_dir(xl, tmp_path_factory):
    from promptedit.testing import save_model

    return save_model(xl, tmp_path_factory.mktemp("models") / "tiny-xl")


@pytest.fixture(scope="module")
def image():
    img = np.full((32, 32, 3), 220, np.uint8)
    img[8:24, 8:24] = (200, 30, 30)
    return img


def test_our_loop_reproduces_diffusers_sdxl_pipeline(xl):
    """Conditioning as diffusers builds it (penultimate hidden states of both encoders, the second's pooled
    output, time ids, zeros for the empty prompt): the same images for the same seed and DDIM scheduler."""
    from diffusers import StableDiffusionXLPipeline

    from promptedit.runner import decode_latents

    pipe = StableDiffusionXLPipeline(**xl.pipeline_components())
    pipe.set_progress_bar_config(disable=True)
    for prompts in ([SRC], [SRC, TGT]):
        ours = generate(xl, prompts, seed=3, num_inference_steps=4, guidance_scale=7.5, progress=False)
        ref = pipe(prompts, num_inference_steps=4, guidance_scale=7.5, height=32, width=32,
                   latents=ours.latents.expand(len(prompts), -1, -1, -1),  # one x_T shared by the branches
                   output_type="np").images
        assert np.abs(decode_latents(xl, ours.final_latents) - ref).max() < 1e-5
    seeded = pipe(SRC, num_inference_steps=4, guidance_scale=7.5, height=32, width=32,
                  generator=torch.Generator("cpu").manual_seed(3), output_type="np").images
    ours = generate(xl, SRC, seed=3, num_inference_steps=4, guidance_scale=7.5, progress=False)
    assert np.abs(decode_latents(xl, ours.final_latents) - seeded).max() < 1e-5  # the same x_T from the seed


def test_conditioning_has_both_encoders_and_time_ids(xl, xl_dir):
    cond = xl.encode([SRC, TGT], size=(32, 48))
    assert cond.embeddings.shape == (2, 77, 64) and cond.pooled.shape == (2, 32)
    assert cond.time_ids.tolist() == [[32, 48, 0, 0, 32, 48]] * 2
    uncond = xl.unconditional(2, size=(32, 48))
    assert not uncond.embeddings.any() and not uncond.pooled.any()  # force_zeros_for_empty_prompt
    from promptedit.models import load_model

    assert load_model(xl_dir).text.force_zeros_for_empty_prompt  # a saved folder keeps it
    from promptedit.testing import tiny_sdxl_components

    empty = tiny_sdxl_components(0, force_zeros_for_empty_prompt=False).unconditional(1, size=(32, 32))
    assert empty.embeddings.abs().sum() > 0


def test_every_inversion_and_instant_masks_run(xl, image):
    from promptedit.methods.inversion import Inversion, InversionError, invert, reconstruct
    from promptedit.methods.maskedit import diffedit, instdiffedit

    for method in ("null-text", "negative-prompt", "direct", "ddim"):
        inv = invert(xl, image, SRC, method=method, num_inference_steps=3, num_inner_steps=2, progress=False)
        res = edit(xl, EditSpec(SRC, (TGT,)), start=inv, progress=False)
        assert res.images.shape == (2, 32, 32, 3) and res.method == method
        again = Inversion.from_bytes(inv.to_bytes())
        rec = reconstruct(xl, again, progress=False).images[0]
        assert np.array_equal(rec, reconstruct(xl, inv, progress=False).images[0])  # the file keeps it all
        # the edit's source branch retraces the same trajectory (batch of 2 vs 1: last-bit rounding may differ)
        assert np.abs(rec.astype(int) - res.images[0]).max() <= 1
    pooled = invert(xl, image, SRC, method="null-text", num_inference_steps=3, num_inner_steps=2, progress=False)
    assert pooled.null_pooled.shape == (3, 32) and pooled.settings["optimize_pooled"]  # SDXL's default
    tokens = invert(xl, image, SRC, method="null-text", num_inference_steps=3, num_inner_steps=2,
                    optimize_pooled=False, progress=False)
    assert tokens.null_pooled is None and not tokens.settings["optimize_pooled"]
    assert Inversion.from_bytes(pooled.to_bytes()).null_pooled.shape == (3, 32)
    edit(xl, EditSpec(SRC, (TGT,)), start=pooled, progress=False)
    from promptedit.testing import tiny_components

    with pytest.raises(InversionError):  # an SD model cannot use an SDXL inversion
        edit(tiny_components(0), EditSpec(SRC, (TGT,)), start=pooled, progress=False)
    r = instdiffedit(xl, image, SRC, TGT, num_inference_steps=6, progress=False)
    assert r.edited.shape == image.shape and r.mask.shape == (32, 32)
    with pytest.raises(ParameterError, match="no SDXL version"):
        diffedit(xl, image, SRC, TGT, num_inference_steps=6, progress=False)


def test_two_tokenizers_that_split_a_prompt_differently_are_refused(xl):
    import dataclasses

    from promptedit.conditioning import SDXLText
    from promptedit.text.vocab import build_clip_tokenizer

    other = build_clip_tokenizer(["cats and dogs"] * 3, vocab_size=300)
    text = SDXLText([xl.text.tokenizer, other], xl.text.encoders)
    odd = dataclasses.replace(xl, text=text)
    with pytest.raises(PromptError, match="split the prompt .* differently"):
        generate(odd, SRC, num_inference_steps=1, progress=False)


def test_every_command_runs_on_a_tiny_sdxl_folder(xl_dir, image, tmp_path, capsys):
    Image.fromarray(image).save(tmp_path / "in.png")
    m = ["--model", xl_dir, "--quiet"]
    ok = [
        ["generate", SRC, "--out", tmp_path / "g.png", "--steps", 2],
        ["edit", "--source", SRC, "--target", TGT, "--out", tmp_path / "e", "--steps", 2, "--save-attention",
         "--blend", "cat", "--blend", "dog"],
        ["edit", "--prompt", "a photo of a [cat:dog:0.5]", "--out", tmp_path / "p", "--steps", 2],
        ["invert", tmp_path / "in.png", "--prompt", SRC, "--out", tmp_path / "i.safetensors", "--steps", 2,
         "--inner-steps", 1],
        ["edit", "--inversion", tmp_path / "i.safetensors", "--target", TGT, "--out", tmp_path / "ie"],
        ["mask", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "m.png", "--steps", 4],
        ["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "me",
         "--steps", 4],
        ["attention", SRC, "--out", tmp_path / "a.png", "--steps", 2],
    ]
    for argv in ok:
        code, out, err = run(capsys, *argv, *m)
        assert code == 0, (argv, err)
    rec = json.loads((tmp_path / "e" / "result.json").read_text())
    assert rec["model_family"] == "sdxl" and rec["mode"] == "replace"
    bad = [
        (["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "x",
          "--method", "diffedit"], "no SDXL version"),
        (["generate", SRC, "--out", tmp_path / "x.png", "--height", 30], "multiple of"),
        (["edit", "--source", SRC, "--target", "a photo of a horse and a cow", "--mode", "replace", "--out",
          tmp_path / "x"], "not a word swap"),
        (["attention", SRC, "--out", tmp_path / "x.png", "--resolution", 4], "no cross-attention maps at 1/4"),
    ]
    for argv, message in bad:
        code, _, err = run(capsys, *argv, *m)
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    assert not (tmp_path / "x").exists()


def test_bench_masks_section_runs_on_sdxl_without_diffedit(xl):
    """`promptedit bench world --model` must report every section for an SDXL model: the masks section measures
    the instant masks and leaves DiffEdit's rows empty, saying why (diffusers has no SDXL DiffEdit)."""
    import dataclasses

    from promptedit.bench.world import bench_masks

    refining = dataclasses.replace(xl, defaults=xl.defaults.replace("masks", guided_filter_radius=1.0))
    section = bench_masks(refining, n=1, steps=2, examples=1)
    assert section.metrics["instant_mask_iou"].n == 1 and section.metrics["diffedit_mask_iou"].n == 0
    assert section.metrics["diffedit_mask_iou"].value is None and "diffedit_refined_mask_iou" not in section.metrics
    assert section.skipped == {"DiffEdit: diffusers has no pipeline for this model family": 1}
    assert section.units == 3 and [name for name, _ in section.examples[0].images][-1] == "instant edit"


def test_null_text_starts_from_the_empty_prompts_encoding_where_the_unconditional_is_zeros(xl, image):
    """Null-text's ∅ is the paper's ψ(""), not the zeros an SDXL checkpoint's unconditional branch takes
    (force_zeros_for_empty_prompt): with a vanishing learning rate the optimised nulls stay at ψ("")."""
    from promptedit.methods.inversion import invert

    assert xl.text.force_zeros_for_empty_prompt
    inv = invert(xl, image, SRC, method="null-text", num_inference_steps=2, num_inner_steps=1, lr=1e-12,
                 progress=False)
    empty = xl.encode([""], size=image.shape[:2])
    assert torch.count_nonzero(empty.embeddings) > 0
    assert torch.allclose(inv.null_embeddings[0], empty.embeddings[0].float(), atol=1e-6)
    assert torch.allclose(inv.null_pooled[0], empty.pooled[0].float(), atol=1e-6)
