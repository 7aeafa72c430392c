"""MM-DiT backbones (FLUX.1): joint attention seen as Prompt-to-Prompt's cross and self views, the text columns
computed without the full matrix, edits through the values equal to edits of the maps, and the runner's loop
equal to diffusers' ``FluxPipeline``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from promptedit.backbones.base import AttentionSite
from promptedit.backbones.mmdit import (joint_attention, latent_image_ids, pack_latents, text_column_attention,
                                        unpack_latents)
from promptedit.control import AttentionControl, AttentionReplace, AttentionRefine, AttentionReweight
from promptedit.control.edits import cross_replace_alpha
from promptedit.runner import denoise

L, N, H, D = 6, 16, 2, 8  # text keys, image tokens (4 × 4), heads, head width
SITE = AttentionSite("single_transformer_blocks.0.attn", "joint", 1, "blocks", 1)


def _qkv(batch, order="text-first", seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, H, L + N, D, generator=g) for _ in range(3))
    text, image = (slice(0, L), slice(L, L + N)) if order == "text-first" else (slice(N, N + L), slice(0, N))
    return q, k, v, text, image


@pytest.mark.parametrize("order", ["text-first", "image-first"])  # FLUX.1 joins [text, image], SD3 [image, text]
def test_the_text_columns_and_their_mass_rebuild_the_fused_attention(order):
    q, k, v, text, image = _qkv(3, order)
    ref = F.scaled_dot_product_attention(q, k, v)[:, :, image]
    image_part, mass, probs = text_column_attention(q[:, :, image], k, v, text)
    assert torch.allclose(probs.sum(-1), torch.ones(3, H, N), atol=1e-6)  # each row: a distribution over words
    full = (q[:, :, image] @ k.transpose(-1, -2) / D ** 0.5).softmax(-1)  # the matrix the function never builds
    assert torch.allclose(mass[..., 0], full[..., text].sum(-1), atol=1e-6)
    assert torch.allclose(image_part + mass * (probs @ v[:, :, text]), ref, atol=1e-5)


class _Everything(AttentionControl):
    """Wants every view and hands the maps back unchanged (the explicit path, no edit)."""

    def wants(self, site):
        return True


def _edits():
    g = torch.Generator().manual_seed(1)
    alpha = cross_replace_alpha(4, 1, L, 1.0)
    eq = torch.ones(1, L)
    eq[0, 2] = 3.0
    return {
        "replace": lambda **kw: AttentionReplace(torch.rand(1, L, L, generator=g), alpha, **kw),
        "refine": lambda **kw: AttentionRefine(torch.tensor([[0, 1, 3, 2, 4, 5]]), torch.tensor([[1., 1, 0, 1, 1, 1]]),
                                               alpha, **kw),
        "reweight": lambda **kw: AttentionReweight(eq, alpha, **kw),
    }


@pytest.mark.parametrize("order", ["text-first", "image-first"])
@pytest.mark.parametrize("kind", ["replace", "refine", "reweight"])
@pytest.mark.parametrize("inject", [False, True])
def test_an_edit_through_the_values_equals_the_edit_of_the_maps(kind, inject, order):
    """The fused route (ValueEdit, source rows for the image block) gives what the explicit route gives: the
    controller's edited word distributions applied at the row's text mass, the source's image block injected."""
    q, k, v, text, image = _qkv(4, order)  # 2 prompts with classifier-free guidance: uncond ×2, source, target
    outs = []
    for fused in (True, False):
        ctrl = _edits()[kind](self_replace_steps=(0, 4) if inject else (0, 0), self_replace_min_downsample=1,
                              fused=fused)
        ctrl.begin(num_steps=4, latent_size=(4, 4), n_prompts=2)
        ctrl.begin_step(0)
        assert (ctrl.value_edit(AttentionSite("x", "cross", 1, "blocks", 1)) is not None) == fused
        outs.append(joint_attention(q, k, v, text=text, image=image, controller=ctrl, site=SITE))
    fused, explicit = outs
    assert torch.allclose(fused, explicit, atol=1e-5)
    plain = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(fused[:3], plain[:3])  # the unconditional rows and the source are never touched
    assert torch.equal(fused[3, :, text], plain[3, :, text])  # nor the target's text queries
    assert not torch.allclose(fused[3], plain[3], atol=1e-3)
    assert torch.allclose(joint_attention(q, k, v, text=text, image=image, controller=started(_Everything()),
                                          site=SITE), plain, atol=1e-5)


def started(ctrl, n=2):
    ctrl.begin(num_steps=4, latent_size=(4, 4), n_prompts=n)
    ctrl.begin_step(0)
    return ctrl


def test_packing_is_fluxs_and_round_trips():
    from diffusers import FluxPipeline

    x = torch.randn(2, 16, 6, 8)
    assert torch.equal(pack_latents(x), FluxPipeline._pack_latents(x, 2, 16, 6, 8))
    assert torch.equal(unpack_latents(pack_latents(x), (6, 8)), x)
    assert torch.equal(latent_image_ids(6, 8), FluxPipeline._prepare_latent_image_ids(1, 3, 4, "cpu", torch.float32))


@pytest.fixture(scope="module")
def flux_dev():
    from promptedit.testing import tiny_flux_model

    return tiny_flux_model(guidance_embeds=True)


def test_a_guidance_distilled_flux_runs_one_branch_with_the_scale_as_input_as_the_pipeline(flux_dev):
    from diffusers import FluxPipeline

    from promptedit.guidance import EmbeddedGuidance

    assert isinstance(flux_dev.make_guidance(3.5), EmbeddedGuidance)
    pipe = FluxPipeline(**flux_dev.pipeline_components())
    pipe.set_progress_bar_config(disable=True)
    x = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    prompts = ["a photo of a cat", "a red circle on a white background"]
    ref = pipe(prompts, latents=pack_latents(x), num_inference_steps=3, height=32, width=32, output_type="latent",
               **flux_dev.family_entry.pipeline_call(flux_dev, 3.5)).images
    ours = denoise(flux_dev, flux_dev.encode(prompts, size=(32, 32)), x, num_inference_steps=3, guidance_scale=3.5,
                   progress=False)
    assert torch.allclose(ours, unpack_latents(ref, (16, 16)), atol=1e-5)
    # a controller that wants nothing runs the stock processors: bit-identical; one that reads every map: equal
    cond = flux_dev.encode(prompts, size=(32, 32))
    assert torch.equal(denoise(flux_dev, cond, x, num_inference_steps=3, guidance_scale=3.5, progress=False,
                               controller=AttentionControl()), ours)
    assert torch.allclose(denoise(flux_dev, cond, x, num_inference_steps=3, guidance_scale=3.5, progress=False,
                                  controller=_Everything()), ours, atol=1e-5)
