"""The one runner and Prompt-to-Prompt on tiny random-weight SD components: the properties that pin results."""

import pytest
import torch

from promptedit.control import AttentionControl, AttentionReplace
from promptedit.methods.editing import edit, generate
from promptedit.errors import HookError, ParameterError, PromptError, PromptTruncatedWarning, WordNotInPromptError
from promptedit.backbones.unet import ControlledAttnProcessor, UNetBackbone
from promptedit.runner import SeedStart, denoise
from promptedit.control.edit_spec import EditSpec, build_controller
from promptedit.text.tokens import word_token_indices

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"
STEPS = 4


def latents_of(model, prompts, controller=None, seed=0, **kw):
    cond = model.encode(prompts, size=(32, 32))
    x_T = SeedStart(seed).prepare(model, prompts=prompts, num_inference_steps=STEPS, size=(32, 32)).x
    return denoise(model, cond, x_T, num_inference_steps=STEPS, guidance_scale=7.5, controller=controller,
                   progress=False, **kw)


class AllLayers(AttentionControl):
    """Wants every layer (explicit probabilities everywhere) and changes nothing."""

    def wants(self, site):
        return True


class Spy(AttentionControl):
    """Records what the wrapped controller receives and returns at cross-attention layers."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def begin(self, **kw):
        super().begin(**kw)
        self.inner.begin(**kw)

    def begin_step(self, step):
        super().begin_step(step)
        self.inner.begin_step(step)

    def wants(self, site):
        return site.is_cross

    def forward(self, attn, site):
        out = self.inner.forward(attn, site) if self.inner.wants(site) else attn
        self.seen.append((self.cur_step, attn.clone(), out.clone()))
        return out


def test_empty_controller_reproduces_plain_loop_exactly(tiny_model):
    plain = latents_of(tiny_model, [SRC])
    assert torch.equal(latents_of(tiny_model, [SRC], AttentionControl()), plain)
    # the explicit-probability path matches the fused kernel to float precision
    assert torch.allclose(latents_of(tiny_model, [SRC], AllLayers()), plain, atol=1e-4)


def test_replace_with_identical_prompts_changes_nothing(tiny_model):
    res = edit(tiny_model, EditSpec(SRC, (SRC,), mode="replace", self_replace=0.5), seed=1, progress=False)
    plain = generate(tiny_model, SRC, seed=1, progress=False)
    assert (res.images[0] == res.images[1]).all()
    # the same as plain generation, up to the explicit-softmax path's float rounding
    assert abs(res.images[0].astype(int) - plain.images[0]).max() <= 1


def test_full_cross_injection_gives_target_the_source_maps_through_the_mapper(tiny_model):
    inner, mode, _ = build_controller(EditSpec(SRC, (TGT,), cross_replace=1.0, self_replace=0.0),
                                      tiny_model.tokenizer, STEPS, tiny_model.defaults.p2p)
    assert mode == "replace" and isinstance(inner, AttentionReplace)
    spy = Spy(inner)
    latents_of(tiny_model, [SRC, TGT], spy)
    assert {s for s, *_ in spy.seen} == set(range(STEPS))
    for _, before, after in spy.seen:
        expected = torch.einsum("hpw,wn->hpn", before[0], inner.mapper[0])
        assert torch.allclose(after[1], expected, atol=1e-6)
        assert torch.equal(after[0], before[0])
    cat = word_token_indices(tiny_model.tokenizer, SRC, "cat")[0]
    dog = word_token_indices(tiny_model.tokenizer, TGT, "dog")[0]
    _, before, after = spy.seen[0]
    assert torch.allclose(after[1, ..., dog], before[0, ..., cat])


def test_refine_leaves_added_tokens_attention_untouched(tiny_model):
    tgt = "a photo of a striped cat"
    inner, mode, _ = build_controller(EditSpec(SRC, (tgt,), cross_replace=1.0), tiny_model.tokenizer, STEPS,
                                      tiny_model.defaults.p2p)
    assert mode == "refine"
    spy = Spy(inner)
    latents_of(tiny_model, [SRC, tgt], spy)
    added = word_token_indices(tiny_model.tokenizer, tgt, "striped")
    cat_t = word_token_indices(tiny_model.tokenizer, tgt, "cat")
    cat_s = word_token_indices(tiny_model.tokenizer, SRC, "cat")
    for _, before, after in spy.seen:
        assert torch.equal(after[1][..., added], before[1][..., added])
        assert torch.allclose(after[1][..., cat_t], before[0][..., cat_s])


def test_reweight_with_c_one_changes_nothing(tiny_model):
    res = edit(tiny_model, EditSpec(SRC, (SRC,), mode="reweight", reweight={"cat": 1.0}), seed=2, progress=False)
    plain = generate(tiny_model, SRC, seed=2, progress=False)
    assert abs(res.images[1].astype(int) - plain.images[0]).max() <= 1
    strong = edit(tiny_model, EditSpec(SRC, (SRC,), mode="reweight", reweight={"cat": 4.0}), seed=2, progress=False)
    assert not (strong.images[1] == plain.images[0]).all()


def test_local_blend_with_all_ones_mask_equals_no_blend(tiny_model):
    spec = EditSpec(SRC, (TGT,), blend_words=("cat", "dog"), blend_start=0.0)
    blended, _, _ = build_controller(spec, tiny_model.tokenizer, STEPS, tiny_model.defaults.p2p)
    blended.local_blend.threshold = -1.0  # every pixel is inside the mask
    plain, _, _ = build_controller(EditSpec(SRC, (TGT,)), tiny_model.tokenizer, STEPS, tiny_model.defaults.p2p)
    a = latents_of(tiny_model, [SRC, TGT], blended)
    b = latents_of(tiny_model, [SRC, TGT], plain)
    assert blended.local_blend.last_mask is not None and blended.local_blend.last_mask.all()
    assert torch.allclose(a, b, atol=1e-4)  # blend layers run explicit probabilities, the rest fused: rounding
    # a real threshold keeps the source's latents outside the words' region
    spec2 = EditSpec(SRC, (TGT,), blend_words=("cat", "dog"), blend_start=0.0, blend_threshold=0.95)
    ctrl, _, _ = build_controller(spec2, tiny_model.tokenizer, STEPS, tiny_model.defaults.p2p)
    x0 = latents_of(tiny_model, [SRC, TGT], ctrl)
    mask = ctrl.local_blend.last_mask  # (2, 1, h, w) of the last step
    assert 0 < mask[1].float().mean() < 1
    outside = ~mask[1, 0]
    assert torch.equal(x0[1][:, outside], x0[0][:, outside])
    assert not torch.equal(x0[1][:, mask[1, 0]], x0[0][:, mask[1, 0]])


def test_local_blend_pool_size_comes_from_the_model_defaults(tiny_model):
    """The max-pool dilation before local blending's threshold is the model's (P2P code: 3); 1 dilates nothing,
    so its mask lies inside the mask of the default."""
    import dataclasses

    from promptedit.errors import ModelLoadError

    spec = EditSpec(SRC, (TGT,), blend_words=("cat", "dog"), blend_start=0.0, blend_threshold=0.95)
    masks = {}
    for k in (3, 1):
        ctrl, _, _ = build_controller(spec, tiny_model.tokenizer, STEPS,
                                      dataclasses.replace(tiny_model.defaults.p2p, blend_pool_size=k))
        assert ctrl.local_blend.pool_size == k
        latents_of(tiny_model, [SRC, TGT], ctrl)
        masks[k] = ctrl.local_blend.last_mask
    assert masks[1].sum() < masks[3].sum()
    with pytest.raises(ModelLoadError, match="blend_pool_size"):
        dataclasses.replace(tiny_model.defaults.p2p, blend_pool_size=2)


def test_processors_are_restored(tiny_model):
    before = dict(tiny_model.unet.attn_processors)
    edit(tiny_model, EditSpec(SRC, (TGT,)), progress=False, num_inference_steps=2)
    after = tiny_model.unet.attn_processors
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    with pytest.raises(RuntimeError):
        with tiny_model.backbone.attach(AttentionControl()) as report:
            assert report.cross_layers == 10 and report.self_layers == 10
            assert all(isinstance(p, ControlledAttnProcessor) for p in tiny_model.unet.attn_processors.values())
            raise RuntimeError("boom")
    assert all(tiny_model.unet.attn_processors[k] is before[k] for k in before)


def test_hooking_a_unet_without_cross_attention_fails_loudly():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"), mid_block_type=None,
                                cross_attention_dim=8, norm_num_groups=4)
    with pytest.raises(HookError, match="no cross-attention"):
        with UNetBackbone(unet).attach(AttentionControl()):
            pass


def test_unknown_word_raises(tiny_model):
    with pytest.raises(WordNotInPromptError, match="'horse'"):
        edit(tiny_model, EditSpec(SRC, (SRC,), mode="reweight", reweight={"horse": 2.0}), progress=False)
    with pytest.raises(PromptError, match="'horse'"):
        edit(tiny_model, EditSpec(SRC, (TGT,), blend_words=("horse",)), progress=False)


def test_overlong_prompt_is_truncated_with_a_warning(tiny_model):
    with pytest.warns(PromptTruncatedWarning):
        res = generate(tiny_model, "a cat " * 60, num_inference_steps=1, progress=False)
    assert res.images.shape == (1, 32, 32, 3)


def test_bad_parameters_raise_value_errors(tiny_model):
    with pytest.raises(ParameterError, match="num_inference_steps"):
        generate(tiny_model, SRC, num_inference_steps=0, progress=False)
    with pytest.raises(ParameterError, match="guidance"):
        generate(tiny_model, SRC, guidance_scale="lots", progress=False)
    with pytest.raises(ParameterError, match="multiple of"):
        generate(tiny_model, SRC, height=36, progress=False)
    with pytest.raises(ParameterError, match="0 <= start <= end <= 1"):
        EditSpec(SRC, (TGT,), cross_replace=1.5)
    with pytest.raises(ParameterError):
        EditSpec(SRC, (TGT,), mode="swap")
    assert issubclass(ParameterError, ValueError)


def test_mode_auto_picks_refine_and_says_so(tiny_model):
    res = edit(tiny_model, EditSpec(SRC, ("a photo of a big cat",)), num_inference_steps=2, progress=False)
    assert res.mode == "refine" and "refine" in res.notes[0]
    from promptedit.errors import AlignmentError

    with pytest.raises(AlignmentError, match="refine"):
        edit(tiny_model, EditSpec(SRC, ("a photo of a big cat",), mode="replace"), progress=False)


def test_several_targets_in_one_batch(tiny_model):
    res = edit(tiny_model, EditSpec(SRC, (TGT, "a photo of a mat")), seed=5, progress=False)
    assert res.images.shape[0] == 3
    alone = edit(tiny_model, EditSpec(SRC, (TGT,)), seed=5, progress=False)
    assert (res.images[0] == alone.images[0]).all()  # the source branch is not affected by the targets
    assert torch.allclose(torch.tensor(res.images[1], dtype=torch.float), torch.tensor(alone.images[1], dtype=torch.float), atol=2)


def test_feature_injection_copies_source_features_into_targets(tiny_model):
    name = tiny_model.backbone.default_feature_layers()[0]
    module = dict(tiny_model.unet.named_modules())[name]
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        edit(tiny_model, EditSpec(SRC, (TGT,), inject_features=0.5), progress=False)
    finally:
        handle.remove()
    assert len(seen) == STEPS
    for step, out in enumerate(seen):  # (uncond src, uncond tgt, cond src, cond tgt)
        same = torch.equal(out[1], out[0]) and torch.equal(out[3], out[2])
        assert same == (step < STEPS // 2)


def test_a_v_prediction_models_loop_reproduces_diffusers_pipeline_and_edits():
    """A v-prediction model: the same images as diffusers' StableDiffusionPipeline (which reads the scheduler's
    prediction type), as the ε model gives; and an edit runs on it."""
    from promptedit.testing import tiny_components

    model = tiny_components(1, prediction_type="v_prediction")
    assert model.prediction_type == "v_prediction"
    assert_loop_reproduces_the_pipeline(model, "v_prediction")
    # inversion and null-text take ε from v themselves (samplers.ddim.eps_from_output): a DDIM step through it is
    # diffusers'
    from diffusers import DDIMScheduler

    from promptedit.samplers.ddim import ddim_step, eps_from_output

    sampler = model.make_sampler()
    sampler.set_steps(4)
    scheduler = DDIMScheduler.from_config(sampler.scheduler.config, prediction_type="v_prediction")
    scheduler.set_timesteps(4)
    v, x_t = torch.randn(2, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))  # (n, C, h, w) each
    for t in scheduler.timesteps.tolist():
        a_t, a_prev = sampler.alphas(t)
        ours = ddim_step(eps_from_output(v, x_t, a_t, model.prediction_type), x_t, a_t, a_prev)
        assert torch.allclose(ours, scheduler.step(v, t, x_t, eta=0.0).prev_sample, atol=1e-5)
    res = edit(model, EditSpec(SRC, (TGT,)), num_inference_steps=2, progress=False)
    assert res.images.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("spec", [
    EditSpec(SRC, (TGT, "a photo of a cow"), mode="replace", self_replace=0.5, cross_replace_words={"dog": (0.2, 0.7)}),
    EditSpec(SRC, ("a photo of a striped cat",), mode="refine", cross_replace=(0.25, 1.0), reweight={"striped": 3.0}),
    EditSpec(SRC, (SRC,), mode="reweight", reweight={"cat": -2.0}),
], ids=["replace", "refine+reweight", "reweight"])
def test_edits_through_the_values_equal_explicit_probabilities(tiny_model, spec):
    """The fused path (ValueEdit, SDPA kept) gives the edit the explicit-probability path gives."""
    x0 = {}
    for fused in (True, False):
        ctrl, _, _ = build_controller(spec, tiny_model.tokenizer, STEPS, tiny_model.defaults.p2p)
        ctrl.fused = fused
        x0[fused] = latents_of(tiny_model, spec.prompts, ctrl)
    plain = latents_of(tiny_model, spec.prompts)
    assert torch.allclose(x0[True], x0[False], atol=1e-4)
    assert (x0[True][1:] - plain[1:]).abs().max() > 1e-2  # and it is an edit


def test_maps_default_to_the_nearest_resolution_the_unet_has(tiny_model):
    """A UNet with one downsampling level has cross-attention at 1/1 and 1/2 of the latent only: the papers'
    default 1/4 falls back to the nearest (said in a note), and only an explicit resolution it lacks is refused."""
    import dataclasses

    from diffusers import UNet2DConditionModel

    from promptedit.defaults import ModelDefaults

    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D",) * 2,
                                up_block_types=("CrossAttnUpBlock2D",) * 2, cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8).eval().requires_grad_(False)
    model = dataclasses.replace(tiny_model, backbone=UNetBackbone(unet), defaults=ModelDefaults())
    assert model.attention_downsamples() == [1, 2]
    from promptedit.methods.editing import attention

    res = attention(model, SRC, num_inference_steps=2, self_attention=False, progress=False)
    assert res.attention_downsample == 2 and "using 1/2" in res.notes[0]
    assert res.attention.maps(downsample=2).shape[1:3] == (8, 8)
    with pytest.raises(ParameterError, match="no cross-attention maps at 1/4 .* it has 1/1, 1/2"):
        attention(model, SRC, downsample=4, num_inference_steps=2, progress=False)
    blended = edit(model, EditSpec(SRC, (TGT,), blend_words=("cat", "dog")), num_inference_steps=2, progress=False)
    assert any("local blend" in n and "1/2" in n for n in blended.notes) and blended.blend_mask is not None
    assert any("self-attention injection" in n for n in blended.notes)  # 1/4 for self-attention: none either


def assert_loop_reproduces_the_pipeline(model, prediction_type: str):
    """No control: the same images as diffusers' StableDiffusionPipeline for the same x_T and DDIM scheduler, whose
    prediction type the test states (a model that lost its own would not match)."""
    import numpy as np
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from promptedit.runner import decode_latents

    pipe = StableDiffusionPipeline(**model.pipeline_components())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, prediction_type=prediction_type)
    pipe.set_progress_bar_config(disable=True)
    ours = generate(model, [SRC, TGT], seed=3, num_inference_steps=4, guidance_scale=7.5, progress=False)
    ref = pipe([SRC, TGT], num_inference_steps=4, guidance_scale=7.5, height=32, width=32,
               latents=ours.latents.expand(2, -1, -1, -1), output_type="np").images  # (2, 32, 32, 3) in [0, 1]
    assert np.abs(decode_latents(model, ours.final_latents) - ref).max() < 1e-5


def test_our_loop_reproduces_diffusers_stable_diffusion_pipeline(tiny_model):
    assert_loop_reproduces_the_pipeline(tiny_model, "epsilon")


@pytest.mark.slow
def test_the_compiled_unet_gives_the_eager_results(tiny_model):
    """model.compile(): runs without attention control take the compiled UNet, with the eager path's results (fp32
    tolerance here; fp16 on a GPU); controlled runs stay eager. (Slow: inductor compiles for about a minute.)"""
    import dataclasses

    compiled = dataclasses.replace(tiny_model).compile()
    a = generate(tiny_model, SRC, seed=1, num_inference_steps=2, progress=False)
    b = generate(compiled, SRC, seed=1, num_inference_steps=2, progress=False)
    assert torch.allclose(a.final_latents, b.final_latents, atol=1e-4)
    e = edit(compiled, EditSpec(SRC, (TGT,)), seed=1, num_inference_steps=2, progress=False)
    assert e.images.shape == (2, 32, 32, 3)


def test_sizes_far_beyond_the_models_are_refused_unless_allowed_and_memory_is_checked(tiny_model, monkeypatch):
    import promptedit.runner as runner

    with pytest.raises(ParameterError, match="more than 4x this model's native 32 px"):
        runner.check_size(tiny_model, 256, 32)
    monkeypatch.setattr(runner.checks, "available_memory", lambda device: 10 * 2**20)
    need = tiny_model.estimate_memory(256, 256, 2)
    assert need > 10 * 2**20
    with pytest.raises(ParameterError, match="GiB is free"):
        runner.check_size(tiny_model, 256, 256, allow_large=True)
    monkeypatch.setattr(runner.checks, "available_memory", lambda device: need + 1)
    runner.check_size(tiny_model, 256, 256, allow_large=True)
    # the estimate grows with the pixels and the branches (what a run holds scales so)
    assert tiny_model.estimate_memory(512, 512, 2) > 3 * need
    assert tiny_model.estimate_memory(256, 256, 4) > 1.5 * need
