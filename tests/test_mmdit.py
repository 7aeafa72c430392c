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


def test_kv_edits_processor_replaying_an_empty_background_is_the_stock_layer(flux_dev):
    """KV-Edit's processor with nothing cached (every token foreground) is diffusers' own processor, bit for bit,
    in both modes: its own attention call is the stock one."""
    from promptedit.backbones.mmdit import KVCache

    from promptedit.backbones.mmdit import FluxKVProcessor

    x = torch.randn(2, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = flux_dev.encode(["a photo of a cat", "a dog"], size=(32, 32))
    stock = flux_dev.predict(x, 500.0, cond, guidance=3.5)
    cache = KVCache(background=torch.arange(0), foreground=torch.arange(64))
    with flux_dev.backbone.kv_attention(cache) as n_layers:
        recorded = flux_dev.predict(x, 500.0, cond, guidance=3.5)
        cache.mode = "replay"
        replayed = flux_dev.predict(x, 500.0, cond, guidance=3.5)
    assert n_layers == 2 and len(cache.entries) == 2  # one double-stream and one single-stream block
    assert torch.equal(recorded, stock) and torch.equal(replayed, stock)
    assert not any(isinstance(p, FluxKVProcessor) for p in flux_dev.backbone.module.attn_processors.values())


def test_a_token_subset_against_the_cached_background_is_the_full_run(flux_dev):
    """The foreground tokens alone (their own position ids), attending to the background keys and values cached
    from a run of every token at the same input, give that run's foreground rows: the subset path is right.
    Without the cache they do not (the background matters)."""
    from promptedit.backbones.mmdit import KVCache

    backbone = flux_dev.backbone
    tokens = pack_latents(torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(1)))  # (1, 64, 64)
    ids = backbone.token_ids(16, 16)
    cond = flux_dev.encode(["a photo of a cat"], size=(32, 32))
    fg = torch.tensor([9, 10, 17, 18, 19, 27, 40])
    bg = torch.tensor([i for i in range(64) if i not in set(fg.tolist())])
    cache = KVCache(background=bg, foreground=fg)
    with backbone.kv_attention(cache):
        full = backbone.predict_tokens(tokens, ids, 700.0, cond, guidance=3.5)  # (1, 64, 64)
        cache.mode = "replay"
        subset = backbone.predict_tokens(tokens[:, fg], ids[fg], 700.0, cond, guidance=3.5)  # (1, 7, 64)
    assert torch.allclose(subset, full[:, fg], atol=1e-5)
    alone = backbone.predict_tokens(tokens[:, fg], ids[fg], 700.0, cond, guidance=3.5)
    assert not torch.allclose(alone, full[:, fg], atol=1e-3)


def test_kv_edits_attention_mask_hides_the_background_from_the_foreground_only():
    from promptedit.backbones.mmdit import KVCache

    cache = KVCache(background=torch.tensor([0, 2]), foreground=torch.tensor([1, 3]), mask_foreground=True)
    mask = cache.record_mask(2, 4, "cpu")  # (6, 6): 2 text tokens, then 4 image tokens
    hidden = {(2 + f, 2 + b) for f in (1, 3) for b in (0, 2)}
    assert {(int(i), int(j)) for i, j in (~mask).nonzero()} == hidden
    assert KVCache(torch.tensor([0]), torch.tensor([1])).record_mask(2, 2, "cpu") is None


def test_instant_masks_read_the_joint_layers_image_to_text_view():
    """InstDiffEdit's controller on a joint layer sees each image query's distribution over the text keys (the
    cross view, never the image keys): queries of a 2 × 2 corner that look at "cat" give that corner as the mask."""
    from promptedit.control.masks import InstantMask

    d = 8
    k = torch.zeros(1, 1, L + N, d)  # the text keys 0..5 one-hot; the image keys zero (they take a share too)
    k[0, 0, :L, :L] = 8 * torch.eye(L)
    q = torch.zeros(1, 1, L + N, d)
    corner = [0, 1, 4, 5]  # image tokens (rows 0–1, columns 0–1 of the 4 × 4 grid)
    q[0, 0, L:, 2] = 1.0  # every image query looks at word 2 ("photo") …
    q[0, 0, [L + i for i in corner]] = torch.eye(d)[5]  # … but the corner's look at word 5 ("cat")
    v = torch.randn(1, 1, L + N, d)
    ctrl = InstantMask([[1], [2], [3], [5]], None, downsample=2, smooth_times=0, anchor_candidates=[3])
    ctrl.begin(num_steps=1, latent_size=(8, 8), n_prompts=1)
    ctrl.begin_step(0)
    site = AttentionSite("transformer_blocks.0.attn", "joint", 2, "blocks", 0)
    joint_attention(q, k, v, text=slice(0, L), image=slice(L, L + N), controller=ctrl, site=site)
    seen = ctrl._sum  # (rows, image queries, keys): what the controller read, before the step folds it
    assert seen.shape == (1, N, L) and torch.allclose(seen.sum(-1), torch.ones(1, N))  # over the words only
    ctrl.step_callback(torch.zeros(1, 16, 8, 8))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert ctrl.selection.anchor == 3 and torch.equal(ctrl.masks[-1], expected)


@pytest.mark.parametrize("family", ["flux", "flux-dev", "sd3"])
def test_value_injection_swaps_the_targets_values_in_its_blocks_and_steps_only(family, request):
    """RF-Solver-Edit's / Stable Flow's value injection through the MM-DiT processors (classifier-free guided tiny
    models: both halves of the batch; the guidance-distilled FLUX.1 the papers edit: one): nothing to inject (no
    such block, an empty window) runs the stock processors bit for bit; injecting leaves the source's row as it
    was and changes the target's; with source = target it is plain generation."""
    from promptedit.control import ValueInjection
    from promptedit.testing import TINY_MODELS

    model = request.getfixturevalue({"flux": "flux_model", "flux-dev": "flux_dev"}[family]) if "flux" in family \
        else TINY_MODELS[family](0)
    x = torch.randn(1, model.latent_channels, 16, 16, generator=torch.Generator().manual_seed(0)).expand(2, -1, -1, -1)
    depths = model.backbone.block_depths()
    assert depths == [0, 1] and model.backbone.default_value_blocks() == [1]

    def run(prompts, controller=None):
        return denoise(model, model.encode(prompts, size=(32, 32)), x, num_inference_steps=1, guidance_scale=4.0,
                       progress=False, controller=controller)

    plain = run(["a photo of a cat", "a photo of a dog"])
    for nothing in (ValueInjection(1.0, [99]), ValueInjection((0.0, 0.0), depths)):
        assert torch.equal(run(["a photo of a cat", "a photo of a dog"], nothing), plain)
    for keys, tokens in ((False, "all"), (True, "image")):
        ours = run(["a photo of a cat", "a photo of a dog"], ValueInjection(1.0, depths, keys=keys, tokens=tokens))
        assert torch.allclose(ours[0], plain[0], atol=1e-5) and (ours[1] - plain[1]).abs().max() > 1e-3
    same = run(["a photo of a dog"] * 2)
    assert torch.allclose(run(["a photo of a dog"] * 2, ValueInjection(1.0, depths, keys=True)), same, atol=1e-5)
