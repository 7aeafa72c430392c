"""Inversions on tiny random-weight components: the properties that define each method."""

import json

import numpy as np
import pytest
import torch

from promptedit.methods.editing import EditSpec, edit
from promptedit.errors import ImageInputError
from promptedit.methods.inversion import Inversion, InversionError, invert, reconstruct
from promptedit.samplers.ddim import ddim_inverse_step, ddim_step

pytestmark = pytest.mark.integration


def edit_inversion(model, inv, spec, *, null_branches=None, **kw):
    return edit(model, spec, start=inv, edit_null=null_branches, **kw)


def final_latents(model, inv):
    return reconstruct(model, inv, progress=False).final_latents

PROMPT = "a photo of a cat"
STEPS = 4


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.full((32, 32, 3), 200, np.uint8)
    img[8:24, 8:24] = rng.integers(0, 255, 3)
    return img


def test_ddim_step_and_inverse_step_are_inverse():
    x, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    assert torch.allclose(ddim_inverse_step(eps, ddim_step(eps, x, 0.3, 0.6), 0.3, 0.6), x, atol=1e-5)


def test_direct_inversion_reconstructs_the_latents_exactly(tiny_model, image):
    inv = invert(tiny_model, image, PROMPT, method="direct", num_inference_steps=STEPS, progress=False)
    res = edit_inversion(tiny_model, inv, EditSpec(PROMPT, ("a photo of a dog",)), progress=False)
    from promptedit.runner import encode_images

    z0 = encode_images(tiny_model, image[None].astype(np.float32) / 255)
    assert torch.equal(inv.latents[0:1], z0)
    assert (res.images[0] == reconstruct(tiny_model, inv, progress=False).images[0]).all()


def test_inversions_take_the_models_inversion_steps_not_its_sampling_steps(tiny_model, image):
    import dataclasses

    model = dataclasses.replace(tiny_model, defaults=tiny_model.defaults.replace("inversion", num_inference_steps=3))
    inv = invert(model, image, PROMPT, method="ddim", progress=False)
    assert inv.num_inference_steps == 3 != model.defaults.sampling.num_inference_steps
    assert inv.latents.shape[0] == 4  # z*_0 … z*_T
    assert invert(model, image, PROMPT, method="ddim", num_inference_steps=2, progress=False).num_inference_steps == 2


def test_edits_of_an_inversion_take_the_models_inversion_self_attention_window(tiny_model, image):
    import dataclasses

    model = dataclasses.replace(tiny_model, defaults=tiny_model.defaults.replace("inversion", self_replace=1.0))
    inv = invert(model, image, PROMPT, method="ddim", num_inference_steps=STEPS, progress=False)

    def edited(m, **window):
        spec = EditSpec(PROMPT, ("a photo of a dog",), mode="replace", **window)
        return edit_inversion(m, inv, spec, progress=False).images[1]

    default = edited(model)
    assert (default == edited(model, self_replace=1.0)).all()
    assert not (default == edited(model, self_replace=0.0)).all()
    assert (edited(tiny_model) == edited(model, self_replace=tiny_model.defaults.p2p.self_replace)).all()


def test_edits_give_the_inversions_null_to_every_branch_or_to_the_source_branch_only(tiny_model, image):
    """edit_null="source": the source branch still takes the inversion's null (the same reconstruction,
    bit for bit), the edited branch the empty prompt's; the model's inversion.edit_null is the default."""
    import dataclasses

    from promptedit.defaults import InversionDefaults
    from promptedit.errors import ModelLoadError, ParameterError

    nti = invert(tiny_model, image, PROMPT, method="null-text", num_inference_steps=STEPS, num_inner_steps=2,
                 progress=False)
    npi = invert(tiny_model, image, PROMPT, method="negative-prompt", num_inference_steps=STEPS, progress=False)
    ddim = invert(tiny_model, image, PROMPT, method="ddim", num_inference_steps=STEPS, progress=False)
    spec = EditSpec(PROMPT, ("a photo of a dog",), mode="replace")
    for inv in (nti, npi):
        every = edit_inversion(tiny_model, inv, spec, progress=False, null_branches="all")
        source = edit_inversion(tiny_model, inv, spec, progress=False, null_branches="source")
        assert every.edit_null == "all" and source.edit_null == "source"
        assert torch.equal(every.final_latents[0], source.final_latents[0])
        assert not torch.allclose(every.final_latents[1], source.final_latents[1])
    # direct and DDIM inversions have no null of their own: the same edit either way
    a, b = (edit_inversion(tiny_model, ddim, spec, progress=False, null_branches=nb).final_latents
            for nb in ("all", "source"))
    assert torch.equal(a, b)
    assert InversionDefaults().edit_null == "all"  # the papers'
    model = dataclasses.replace(tiny_model, defaults=tiny_model.defaults.replace("inversion", edit_null="source"))
    assert edit_inversion(model, nti, spec, progress=False).edit_null == "source"
    with pytest.raises(ParameterError, match="edit_null"):
        edit_inversion(tiny_model, nti, spec, progress=False, null_branches="target")
    with pytest.raises(ModelLoadError, match="edit_null"):
        InversionDefaults(edit_null="none")


def test_negative_prompt_inversion_samples_like_guidance_one(tiny_model, image):
    npi = invert(tiny_model, image, PROMPT, method="negative-prompt", num_inference_steps=STEPS, progress=False)
    ddim = invert(tiny_model, image, PROMPT, method="ddim", num_inference_steps=STEPS, guidance_scale=1.0,
                  progress=False)
    assert torch.equal(npi.latents, ddim.latents)
    a, b = reconstruct(tiny_model, npi, progress=False).images[0], reconstruct(tiny_model, ddim, progress=False).images[0]
    assert np.abs(a.astype(int) - b).max() <= 1


def test_null_text_inversion_beats_plain_ddim_at_the_same_guidance(tiny_model, image):
    steps = []
    nti = invert(tiny_model, image, PROMPT, method="null-text", num_inference_steps=STEPS, num_inner_steps=5,
                 progress=False, on_step=lambda i, loss, iters: steps.append((i, loss, iters)))
    ddim = invert(tiny_model, image, PROMPT, method="ddim", num_inference_steps=STEPS, progress=False)
    assert nti.null_embeddings.shape == (STEPS, tiny_model.max_length, 32)
    assert len(nti.losses) == STEPS and [s[0] for s in steps] == list(range(STEPS))
    assert nti.guidance_scale == ddim.guidance_scale == 7.5
    # what inversion must give back is z*_0 (the random tiny VAE cannot reproduce the image itself)
    def latent_error(inv):
        x0 = final_latents(tiny_model, inv)
        return (x0 - inv.latents[:1]).pow(2).mean().item()

    err = latent_error(nti)
    assert err < latent_error(ddim)
    # replaying the saved ∅_t retraces the optimisation: its last step's error is the loss measured there
    # (before the step's final Adam update, which at t ≈ 0 changes little)
    assert err == pytest.approx(nti.losses[-1], rel=0.02)
    # each step keeps its own ∅_t: Adam updates in place, and a ∅_t sharing storage with the next step's
    # would silently become the last one (the reconstruction then leaves the pivots)
    optimised = [i for i, _, iters in steps if iters > 0]
    assert len(optimised) > 1
    assert all(not torch.equal(nti.null_embeddings[a], nti.null_embeddings[b])
               for a, b in zip(optimised, optimised[1:]))


def test_save_load_and_refuse_other_models(tiny_model, image, tmp_path):
    inv = invert(tiny_model, image, PROMPT, method="null-text", num_inference_steps=2, num_inner_steps=1,
                 progress=False)
    again = Inversion.from_bytes(inv.to_bytes())
    assert torch.equal(again.latents, inv.latents) and torch.equal(again.null_embeddings, inv.null_embeddings)
    assert again.prompt == PROMPT and again.method == "null-text" and again.losses == inv.losses
    with pytest.raises(InversionError, match="not a promptedit inversion"):
        Inversion.from_bytes(b"garbage" * 10)
    import dataclasses

    other = dataclasses.replace(inv, latents=inv.latents[:, :, :8, :8])
    with pytest.raises(InversionError, match="another model or size"):
        other.check_compatible(tiny_model)
    from promptedit.testing import tiny_components

    with pytest.raises(InversionError, match="another model"):  # same architecture, other weights
        inv.check_compatible(tiny_components(1))


def _damaged(inv, meta_change=None, **tensors):
    """An inversion file with its metadata changed (``meta_change(meta)``) or some tensors replaced."""
    from safetensors.torch import save

    meta = inv.metadata()
    if meta_change:
        meta_change(meta)
    base = {"latents": inv.latents}
    if inv.null_embeddings is not None:
        base["null_embeddings"] = inv.null_embeddings
    base.update(tensors)
    return save({k: v.contiguous() for k, v in base.items()}, metadata={"promptedit": json.dumps(meta)})


def test_a_damaged_inversion_file_is_refused_before_any_work(tiny_model, image):
    inv = invert(tiny_model, image, PROMPT, method="null-text", num_inference_steps=2, num_inner_steps=1,
                 progress=False)
    nan = inv.latents.clone()
    nan[1, 0, 0, 0] = float("nan")
    cases = [
        (_damaged(inv, lambda m: m.pop("prompt")), "lacks 'prompt'"),
        (_damaged(inv, lambda m: m.update(num_inference_steps="many")), "'num_inference_steps'"),
        (_damaged(inv, lambda m: m.update(method="magic")), "unknown inversion method"),
        (_damaged(inv, latents=nan), "NaN"),
        (_damaged(inv, latents=inv.latents[:2]), "expected 3 latents"),
        (_damaged(inv, null_embeddings=inv.null_embeddings[:1]), "expected 2 null embeddings"),
        (_damaged(inv, lambda m: m.update(method="ddim")), "null embeddings present"),
    ]
    for data, message in cases:
        with pytest.raises(InversionError, match=message):
            Inversion.from_bytes(data, "x.safetensors")
        try:
            Inversion.from_bytes(data, "x.safetensors")
        except InversionError as e:
            assert "\n" not in str(e)


def test_edit_an_inverted_image_keeps_the_source(tiny_model, image):
    inv = invert(tiny_model, image, PROMPT, method="direct", num_inference_steps=STEPS, progress=False)
    res = edit_inversion(tiny_model, inv, EditSpec(PROMPT, ("a photo of a dog",), blend_words=("cat", "dog")),
                         progress=False)
    assert res.mode == "replace" and res.images.shape == (2, 32, 32, 3)
    with pytest.raises(InversionError, match="inversion's prompt"):
        edit_inversion(tiny_model, inv, EditSpec("a photo of a dog", ("a photo of a cat",)), progress=False)


def test_image_loading_rules(tmp_path):
    from PIL import Image

    from promptedit.images.inputs import load_image

    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    rgba.save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png", (16, 16))
    assert out.image.shape == (16, 16, 3) and (out.image == 255).all()  # transparent over white
    assert "centre-cropped 40x20 to 20x20" in out.rule and "alpha" in out.rule
    g16 = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    g16.save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png", (8, 8))
    assert (out.image == 255).all() and "16-bit" in out.rule
    pad = load_image(tmp_path / "a.png", (16, 16), fit="pad")
    assert "padded" in pad.rule
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="not an image"):
        load_image(tmp_path / "t.png", (8, 8))
    with pytest.raises(ImageInputError, match="not found"):
        load_image(tmp_path / "missing.png", (8, 8))


def test_null_text_optimisation_in_half_precision_stays_finite(image):
    """A UNet in fp16 (the default on a GPU) must not make ∅ NaN: Adam's ε is 0 in fp16."""
    from promptedit.testing import tiny_components

    half = tiny_components(0).to(dtype=torch.float16)
    nti = invert(half, image, PROMPT, method="null-text", num_inference_steps=STEPS, num_inner_steps=3,
                 progress=False)
    assert torch.isfinite(nti.null_embeddings).all() and all(np.isfinite(nti.losses))
    ddim = invert(half, image, PROMPT, method="ddim", num_inference_steps=STEPS, progress=False)

    def latent_error(inv):
        x0 = final_latents(half, inv).float()
        return (x0 - inv.latents[:1]).pow(2).mean().item()

    assert latent_error(nti) < latent_error(ddim)


def test_the_web_apps_real_image_tab_passes_the_edit_null(tiny_model, image, tmp_path):
    from PIL import Image

    from promptedit.app import App

    Image.fromarray(image).save(tmp_path / "in.png")
    app = App(tiny_model, str(tmp_path / "app"))
    _, _, inv_bytes, _ = app.invert(str(tmp_path / "in.png"), PROMPT, "negative-prompt", STEPS, 7.5)
    for choice, expected in (("source", "source"), ("all", "all"), (None, tiny_model.defaults.inversion.edit_null)):
        gallery, record = app.edit_real(inv_bytes, "a photo of a dog", "replace", "", "", choice)
        assert len(gallery) == 2
        with open(record) as f:
            assert json.load(f)["edit_null"] == expected


# ----------------------------------------------------------------------------- flow models (the exact velocity of
# tests/helpers.GaussianFlowModel until a flow family is on main)


def gaussian_x0(seed=30):
    return torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(seed))  # (1, C, h, w)


@pytest.mark.parametrize("solver", ["euler", "rf-solver", "fireflow", "uni-inv"])
def test_flow_inversion_runs_the_solver_up_the_models_schedule(solver):
    from helpers import GaussianFlowModel
    from promptedit.methods.inversion import flow_inversion
    from promptedit.samplers.flow import integrate

    model = GaussianFlowModel()
    x0, cond = gaussian_x0(), model.cond(0.5)
    pivots = flow_inversion(model, x0, cond, num_inference_steps=6, solver=solver, progress=False)
    sampler = model.make_sampler()
    sampler.set_steps(6)
    assert pivots.shape == (7, 4, 4, 4) and torch.equal(pivots[0], x0[0])
    # the model's guided velocity at guidance 1, each step from the lower level: the solver's own trajectory
    expected = integrate(lambda x, s: model.predict(x, s * 1000, cond), x0, sampler.sigmas.flip(0), solver)
    assert torch.equal(pivots, expected[:, 0])
    calls = {"euler": 6, "rf-solver": 12, "fireflow": 7, "uni-inv": 7}[solver]
    model.calls = 0
    flow_inversion(model, x0, cond, num_inference_steps=6, solver=solver, progress=False)
    assert model.calls == calls


def test_the_loop_samples_with_an_inversions_solver_and_reconstructs_as_steps_grow():
    from helpers import GaussianFlowModel
    from promptedit.methods.inversion import flow_inversion
    from promptedit.runner import denoise

    model = GaussianFlowModel()
    x0, cond = gaussian_x0(), model.cond(0.5)
    errors = {}
    for steps in (8, 16):
        for solver in (None, "rf-solver", "fireflow"):  # None: the sampler's own step, Euler
            pivots = flow_inversion(model, x0, cond, num_inference_steps=steps, solver=solver or "euler",
                                    progress=False)
            out = denoise(model, cond, pivots[-1:], num_inference_steps=steps, guidance_scale=1.0, solver=solver,
                          progress=False)
            errors[steps, solver] = float((out - x0).abs().max())
    for solver in (None, "rf-solver", "fireflow"):
        assert errors[16, solver] < errors[8, solver] / 1.8, errors
    for steps in (8, 16):
        assert errors[steps, "rf-solver"] < errors[steps, "fireflow"] < errors[steps, None] / 3, errors


def test_the_exact_flow_inversion_reconstructs_exactly_while_its_targets_are_edited():
    from helpers import GaussianFlowModel
    from promptedit.methods.inversion import PivotSource, flow_inversion
    from promptedit.runner import denoise

    model = GaussianFlowModel()
    x0 = gaussian_x0()
    pivots = flow_inversion(model, x0, model.cond(0.5), num_inference_steps=3, progress=False)
    out = denoise(model, model.cond(0.5, -1.0), pivots[-1:], num_inference_steps=3, guidance_scale=2.0,
                  controller=PivotSource(pivots), progress=False)
    assert torch.equal(out[0], x0[0])  # 3 Euler steps err by far more than rounding: the correction makes it exact
    plain = denoise(model, model.cond(0.5), pivots[-1:], num_inference_steps=3, guidance_scale=2.0, progress=False)
    assert float((plain[0] - x0[0]).abs().max()) > 0.05 and float((out[1] - x0[0]).abs().max()) > 0.5


def test_null_text_on_a_flow_optimises_through_the_velocity_from_sigma_one():
    from helpers import GaussianFlowModel
    from promptedit.conditioning import Conditioning
    from promptedit.methods.inversion import flow_inversion, null_text_optimization
    from promptedit.runner import denoise

    model = GaussianFlowModel()
    x0 = gaussian_x0()
    cond, uncond = (Conditioning(torch.full((1, x0.numel(), 1), v)) for v in (0.5, 0.0))  # a mean per element
    pivots = flow_inversion(model, x0, cond, num_inference_steps=4, progress=False)
    sampler = model.make_sampler()
    sampler.set_steps(4)
    assert float(sampler.sigmas[0]) == 1.0  # where ε gives no velocity (eps_step refuses): the velocity is used
    with torch.enable_grad():
        nulls, losses = null_text_optimization(model, pivots, cond, uncond, guidance_scale=3.0, num_inner_steps=50,
                                               lr=0.1, progress=False)
    assert nulls["embeddings"].shape == (4, x0.numel(), 1) and all(np.isfinite(losses))
    per_step = [Conditioning(e[None]) for e in nulls["embeddings"]]
    with_nulls = denoise(model, cond, pivots[-1:], num_inference_steps=4, guidance_scale=3.0, uncond=per_step,
                         progress=False)
    plain = denoise(model, cond, pivots[-1:], num_inference_steps=4, guidance_scale=3.0, uncond=uncond,
                    progress=False)
    assert float((with_nulls - x0).abs().max()) < float((plain - x0).abs().max()) / 10


def test_ddim_models_refuse_the_flow_methods_and_flow_models_refuse_ddims_in_one_line(tiny_model, image, monkeypatch):
    from promptedit.errors import ParameterError
    from promptedit.methods.inversion import METHODS, default_method, inversion_solver
    from promptedit.samplers import FlowMatchEulerSampler

    monkeypatch.setattr(tiny_model, "encode", lambda *a, **k: pytest.fail("refused after starting work"))
    for method in ("euler", "rf-solver", "fireflow", "uni-inv"):
        with pytest.raises(ParameterError, match=f"inversion method {method} does not run on this model's DDIM "
                                                 "sampler .*; its methods: null-text, negative-prompt, direct, ddim$") as e:
            invert(tiny_model, image, PROMPT, method=method, num_inference_steps=2, progress=False)
        assert "\n" not in str(e.value)
    assert default_method(tiny_model) == "null-text"
    flow = FlowMatchEulerSampler({"shift": 3.0})
    monkeypatch.setattr(tiny_model, "make_sampler", lambda **kw: FlowMatchEulerSampler({"shift": 3.0}))
    assert default_method(tiny_model) == "euler"
    with pytest.raises(ParameterError, match="inversion method ddim does not run on this model's flow-match-euler "
                                             "sampler \\(it inverts with ddim\\); its methods: null-text, "
                                             "negative-prompt, direct, euler, rf-solver, fireflow, uni-inv$") as e:
        invert(tiny_model, image, PROMPT, method="ddim", num_inference_steps=2, progress=False)
    assert "\n" not in str(e.value)
    assert {m: inversion_solver(flow, m) for m in METHODS if m != "ddim"} == {
        "null-text": "euler", "negative-prompt": "euler", "direct": "euler", "euler": "euler",
        "rf-solver": "rf-solver", "fireflow": "fireflow", "uni-inv": "uni-inv"}
    # a flow model's saved inversion is refused by a DDIM model's edit, before any work
    monkeypatch.undo()
    f = tiny_model.vae_scale_factor
    inv = Inversion(method="fireflow", prompt=PROMPT, latents=torch.zeros(3, 4, 32 // f, 32 // f),
                    num_inference_steps=2, model=tiny_model.name, height=32, width=32)
    with pytest.raises(ParameterError, match="inversion method fireflow does not run on this model's DDIM sampler"):
        inv.prepare(tiny_model, prompts=[PROMPT], num_inference_steps=2, size=(32, 32))
    inv.settings = {"solver": "fireflow"}
    back = Inversion.from_bytes(inv.to_bytes())
    assert back.method == "fireflow" and back.settings == {"solver": "fireflow"} and torch.equal(back.latents, inv.latents)


# ----------------------------------------------------------------------------- on the tiny random FLUX.1 model


def flux_error(model, inv, image):
    from promptedit.runner import encode_images

    z0 = encode_images(model, image[None].astype(np.float32) / 255)
    return float((final_latents(model, inv) - z0).abs().max())


def test_flux_euler_inversion_reconstructs_closer_as_steps_grow_and_second_order_closer_still(flux_model, image):
    errors = {(method, steps): flux_error(flux_model, invert(flux_model, image, PROMPT, method=method,
                                                             num_inference_steps=steps, guidance_scale=1.0,
                                                             progress=False), image)
              for method, steps in (("euler", 4), ("euler", 8), ("rf-solver", 4), ("fireflow", 4))}
    # measured: euler 0.77 at 4 steps, 0.47 at 8; rf-solver 0.23 and fireflow 0.29 at 4
    assert errors["euler", 8] < errors["euler", 4] * 0.75, errors
    assert errors["rf-solver", 4] < errors["euler", 4] / 2 and errors["fireflow", 4] < errors["euler", 4] / 2, errors


def test_flux_direct_inversion_is_exact_and_edits_beside_it(flux_model, image):
    inv = invert(flux_model, image, PROMPT, method="direct", num_inference_steps=3, progress=False)
    assert flux_error(flux_model, inv, image) == 0.0  # Euler alone errs by 0.77 at 4 steps
    res = edit(flux_model, EditSpec(PROMPT, ("a photo of a dog",)), start=inv, progress=False)
    rec = reconstruct(flux_model, inv, progress=False)
    assert torch.equal(res.final_latents[0], rec.final_latents[0]) and not torch.equal(res.final_latents[1],
                                                                                         rec.final_latents[0])


def test_flux_inversions_save_load_and_edit_with_their_solver(flux_model, image, monkeypatch):
    from promptedit.runner import loop

    inv = invert(flux_model, image, PROMPT, method="fireflow", num_inference_steps=3, guidance_scale=1.0,
                 progress=False)
    assert inv.settings == {"solver": "fireflow", "samples_with": "fireflow"}
    back = Inversion.from_bytes(inv.to_bytes())
    assert back.method == "fireflow" and torch.equal(back.latents, inv.latents)
    solvers = []
    denoise = loop.denoise
    monkeypatch.setattr(loop, "denoise", lambda *a, **k: solvers.append(k["solver"]) or denoise(*a, **k))
    assert torch.equal(final_latents(flux_model, back), final_latents(flux_model, inv)) and solvers == ["fireflow"] * 2


def test_null_text_runs_on_classifier_free_flux_and_is_refused_on_guidance_distilled_flux(flux_model, image):
    from promptedit.errors import ParameterError
    from promptedit.testing import tiny_flux_model

    inv = invert(flux_model, image, PROMPT, method="null-text", num_inference_steps=2, guidance_scale=3.0,
                 num_inner_steps=2, progress=False)
    assert inv.null_embeddings.shape[0] == 2 and inv.settings["solver"] == "euler"
    assert np.isfinite(flux_error(flux_model, inv, image))
    dev = tiny_flux_model(0, guidance_embeds=True)
    for method in ("null-text", "negative-prompt"):
        with pytest.raises(ParameterError, match=f"^{method} inversion needs classifier-free guidance .* embedded$"):
            invert(dev, image, PROMPT, method=method, num_inference_steps=2, progress=False)
    assert invert(dev, image, PROMPT, num_inference_steps=2, progress=False).method == "euler"  # the flow's default
