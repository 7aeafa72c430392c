"""The Sampler and Guidance seam: DDIM as a Sampler (bit for bit diffusers' DDIMScheduler where the loop steps),
its equations, and the guidance kinds the loop batches and combines; each type's construction checks."""

import numpy as np
import pytest
import torch

from promptedit.errors import ParameterError
from promptedit.guidance import (ClassifierFree, EmbeddedGuidance, Guidance, NoGuidance, classifier_free,
                                 require_classifier_free)
from promptedit.samplers import DDIMSampler, FlowMatchEulerSampler, Sampler, strength_start
from promptedit.samplers.ddim import eps_from_output, q_sample, x0_from_output

pytestmark = pytest.mark.unit

SD_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "steps_offset": 1, "timestep_spacing": "leading"}


def latents(n=2, seed=0):
    return torch.randn(n, 4, 4, 4, generator=torch.Generator().manual_seed(seed))  # (n, C, h, w)


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and isinstance(excinfo.value, ValueError)
    return text


# ----------------------------------------------------------------------------- DDIM as a Sampler


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_sampler_steps_are_diffusers_ddim_bit_for_bit(prediction_type):
    from diffusers import DDIMScheduler

    config = {**SD_CONFIG, "prediction_type": prediction_type}
    sampler = DDIMSampler(config)
    assert sampler.name == "DDIM" and sampler.init_noise_sigma == 1.0
    reference = DDIMScheduler.from_config({**config, "clip_sample": False, "set_alpha_to_one": False})
    reference.set_timesteps(5)
    assert torch.equal(sampler.set_steps(5), reference.timesteps) and sampler.num_steps == 5
    x, out = latents(seed=1), latents(seed=2)
    for t in sampler.timesteps:
        assert torch.equal(sampler.step(out, t, x), reference.step(out, t, x, eta=0.0).prev_sample)
        assert torch.equal(sampler.scale_model_input(x, t), reference.scale_model_input(x, t))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_inverse_step_undoes_a_step_and_outputs_convert_consistently(prediction_type):
    sampler = DDIMSampler({**SD_CONFIG, "prediction_type": prediction_type})
    sampler.set_steps(4)
    x, out = latents(seed=3), latents(seed=4)
    for t in sampler.timesteps:
        a_t, _ = sampler.alphas(t)
        eps, x0 = sampler.to_eps(out, t, x), sampler.to_x0(out, t, x)
        # x_t = √ᾱ·x₀ + √(1−ᾱ)·ε, whatever the model predicts
        assert torch.allclose(a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps, x, atol=1e-5)
        # the step from ε is the step from the model's output, and inverting it with that ε gives x_t back
        stepped = sampler.eps_step(eps, t, x)
        assert torch.allclose(stepped, sampler.step(out, t, x), atol=1e-5)
        if prediction_type == "epsilon":  # ε does not depend on the latent it is taken at
            assert torch.allclose(sampler.inverse_step(out, t, stepped), x, atol=1e-4)


def test_noise_to_a_step_and_after_it_follow_the_schedule():
    sampler = DDIMSampler(SD_CONFIG)
    sampler.set_steps(5)
    x0, noise = latents(1, seed=5), latents(1, seed=6)
    for i, t in enumerate(sampler.timesteps.tolist()):
        level = sampler.noise_to(x0, noise, i)
        assert torch.equal(level, q_sample(x0, noise, float(sampler.scheduler.alphas_cumprod[t])))
        if i + 1 < sampler.num_steps:  # the level after a step is the next step's
            assert torch.equal(sampler.noise_to(x0, noise, i, after=True), sampler.noise_to(x0, noise, i + 1))
    # after the last step: the schedule's final ᾱ
    last = sampler.noise_to(x0, noise, sampler.num_steps - 1, after=True)
    assert torch.equal(last, q_sample(x0, noise, float(sampler.scheduler.final_alpha_cumprod)))


def test_ddim_output_conversions_match_the_papers():
    x, out = latents(seed=7), latents(seed=8)
    assert eps_from_output(out, x, 0.3, "epsilon") is out
    assert torch.allclose(x0_from_output(out, x, 0.3, "v_prediction"), 0.3**0.5 * x - 0.7**0.5 * out)
    for f in (eps_from_output, x0_from_output):
        with pytest.raises(ParameterError, match="unsupported prediction type 'sample'"):
            f(out, x, 0.3, "sample")


def test_a_ddim_sampler_refuses_a_schedule_it_cannot_run_in_one_line():
    for config, match in (({**SD_CONFIG, "num_train_timesteps": 0}, "num_train_timesteps is 0"),
                          ({**SD_CONFIG, "num_train_timesteps": True}, "num_train_timesteps is True"),
                          ({**SD_CONFIG, "num_train_timesteps": 4, "trained_betas": [0.5, 0.9, 1.5, 0.2]},
                           r"noise levels outside \(0, 1\]")):
        with pytest.raises(ParameterError, match=match) as e:
            DDIMSampler(config)
        one_line(e)
    sampler = DDIMSampler(SD_CONFIG)
    with pytest.raises(ParameterError, match="set_steps first"):
        sampler.num_steps
    with pytest.raises(ParameterError, match="at most 1000 on this model") as e:
        sampler.set_steps(1001)
    one_line(e)
    # SD's leading spacing with steps_offset 1 has no timestep 1000 for 1000 steps
    with pytest.raises(ParameterError, match="below 1000") as e:
        sampler.set_steps(1000)
    one_line(e)
    assert len(sampler.set_steps(999)) == 999


def test_strength_start_is_sdedits_rule_and_checks_the_strength():
    assert strength_start(10, 1.0) == 0 and strength_start(10, 0.5) == 5 and strength_start(10, 0.01) == 9
    sampler = DDIMSampler(SD_CONFIG)
    sampler.set_steps(8)
    assert sampler.start_index(0.25) == strength_start(8, 0.25) == 6
    for bad in (0.0, 1.5, float("nan"), "half"):
        with pytest.raises(ParameterError, match="strength") as e:
            strength_start(10, bad)
        one_line(e)


def test_the_sampler_base_is_abstract_and_refuses_diffedit_without_an_inverse_scheduler():
    with pytest.raises(TypeError):
        Sampler()

    class Euler(DDIMSampler):  # a sampler with no inverse scheduler of its own
        name = "Euler"
        inverse_scheduler = Sampler.inverse_scheduler

    with pytest.raises(ParameterError, match="the Euler sampler has none") as e:
        Euler(SD_CONFIG).inverse_scheduler()
    one_line(e)
    assert type(DDIMSampler(SD_CONFIG).inverse_scheduler()).__name__ == "DDIMInverseScheduler"


# ----------------------------------------------------------------------------- guidance


def test_classifier_free_batches_the_unconditional_branch_first_and_combines_with_eq_6(tiny_model):
    g = ClassifierFree(7.5)
    assert g.branches == 2 and g.predict_kwargs() == {}
    x = latents()
    assert torch.equal(g.batch(x), torch.cat([x, x]))
    cond = tiny_model.encode(["a cat", "a dog"], size=(32, 32))
    uncond = tiny_model.unconditional(1, size=(32, 32))
    both = g.conditioning(cond, uncond)
    assert len(both) == 4
    assert torch.equal(both.embeddings[:2], uncond.expand(2).embeddings)
    assert torch.equal(both.embeddings[2:], cond.embeddings)
    out_u, out_c = latents(seed=1), latents(seed=2)
    assert torch.equal(g.combine(torch.cat([out_u, out_c])), out_u + 7.5 * (out_c - out_u))
    assert torch.equal(g.guide(out_u, out_c), classifier_free(out_u, out_c, 7.5))
    with pytest.raises(ParameterError, match="unconditional branch"):
        g.conditioning(cond)
    # scale 1 is the conditional branch alone: one branch, nothing batched or combined
    one = ClassifierFree(1)
    assert one.branches == 1 and one.batch(x) is x and one.combine(x) is x and one.conditioning(cond) is cond


def test_embedded_and_no_guidance_run_one_branch():
    x = latents()
    embedded = EmbeddedGuidance(3.5)
    assert embedded.branches == 1 and embedded.batch(x) is x and embedded.combine(x) is x
    assert embedded.predict_kwargs() == {"guidance": 3.5} and embedded.name == "embedded"
    none = NoGuidance()
    assert none.branches == 1 and none.scale == 1.0 and none.predict_kwargs() == {}
    with pytest.raises(ParameterError, match="takes no guidance: guidance_scale must be 1, got 2") as e:
        NoGuidance(2.0)
    one_line(e)


@pytest.mark.parametrize("kind", [ClassifierFree, EmbeddedGuidance, Guidance])
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "strong", None])
def test_a_guidance_scale_that_is_no_finite_number_at_least_0_is_refused_in_one_line(kind, bad):
    with pytest.raises(ParameterError, match="guidance_scale must be a") as e:
        kind(bad)
    one_line(e)


def test_null_text_and_negative_prompt_inversion_need_classifier_free_guidance(tiny_model, monkeypatch):
    from promptedit.methods.inversion import NEEDS_CLASSIFIER_FREE, Inversion, invert, null_text_optimization

    assert require_classifier_free(ClassifierFree(2.0), "x") == ClassifierFree(2.0)
    monkeypatch.setattr(tiny_model, "make_guidance", lambda scale: EmbeddedGuidance(scale))
    monkeypatch.setattr(tiny_model, "encode", lambda *a, **k: pytest.fail("refused after starting work"))
    image = np.zeros((32, 32, 3), np.uint8)
    for method in NEEDS_CLASSIFIER_FREE:
        with pytest.raises(ParameterError, match=f"{method} inversion needs classifier-free guidance .* is "
                                                 "embedded") as e:
            invert(tiny_model, image, "a cat", method=method, num_inference_steps=2, progress=False)
        one_line(e)
    f = tiny_model.vae_scale_factor
    inv = Inversion(method="negative-prompt", prompt="a cat", latents=torch.zeros(3, 4, 32 // f, 32 // f),
                    model=tiny_model.name, height=32, width=32)
    with pytest.raises(ParameterError, match="an edit of a negative-prompt inversion needs classifier-free"):
        inv.prepare(tiny_model, prompts=["a cat"], num_inference_steps=2, size=(32, 32))
    with pytest.raises(ParameterError, match="null-text inversion needs classifier-free guidance"):
        null_text_optimization(tiny_model, latents(3, seed=1), None, None, guidance_scale=3.0, progress=False)


def test_the_loop_batches_as_many_branches_as_the_guidance_says(tiny_model, monkeypatch):
    from promptedit.runner import denoise

    batches = []
    predict = tiny_model.predict

    def counting(x, t, cond, **kw):
        batches.append((x.shape[0], len(cond)))
        return predict(x, t, cond, **kw)

    monkeypatch.setattr(tiny_model, "predict", counting)
    cond = tiny_model.encode(["a cat", "a dog"], size=(32, 32))
    x = torch.randn(1, tiny_model.latent_channels, 4, 4, generator=torch.Generator().manual_seed(0))
    for scale, rows in ((7.5, 4), (1.0, 2)):
        batches.clear()
        denoise(tiny_model, cond, x, num_inference_steps=2, guidance_scale=scale, progress=False)
        assert batches == [(rows, rows)] * 2


def test_runs_use_the_models_sampler_and_records_name_it(tiny_model, monkeypatch):
    from promptedit.methods.editing import generate
    from promptedit.outputs.records import result_fields

    class Renamed(DDIMSampler):
        name = "DDIM (renamed)"

    made = []

    def make_sampler(latent_size=None):
        made.append(Renamed(tiny_model.scheduler_config))
        return made[-1]

    monkeypatch.setattr(tiny_model, "make_sampler", make_sampler)
    result = generate(tiny_model, "a cat", seed=0, num_inference_steps=2, height=32, width=32, progress=False)
    assert made and result.sampling.sampler == "DDIM (renamed)"
    assert result_fields(result)["scheduler"] == "DDIM (renamed)"


def test_check_sampling_checks_the_scale_as_the_models_guidance_takes_it(tiny_model, monkeypatch):
    from promptedit.runner import check_sampling

    check_sampling(2, 7.5, tiny_model)
    monkeypatch.setattr(tiny_model, "make_guidance", lambda scale: NoGuidance(scale))
    with pytest.raises(ParameterError, match="takes no guidance") as e:
        check_sampling(2, 7.5, tiny_model)
    one_line(e)
    check_sampling(2, 1.0, tiny_model)


# ----------------------------------------------------------------------------- flow-matching Euler

SD3_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0}  # SD3 and SD3.5's scheduler
FLUX_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
               "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}  # FLUX.1-dev's
FLUX_SCHNELL_CONFIG = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}


def flow_reference(config, num_steps, *, spacing="scheduler", mu=None):
    """diffusers' scheduler set as StableDiffusion3Pipeline ("scheduler") or FluxPipeline ("linspace") sets it."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    reference = FlowMatchEulerDiscreteScheduler.from_config(config)
    sigmas = np.linspace(1.0, 1 / num_steps, num_steps) if spacing == "linspace" else None
    reference.set_timesteps(None if sigmas is not None else num_steps, sigmas=sigmas, mu=mu)
    return reference


@pytest.mark.parametrize("num_steps", [1, 2, 4, 28, 50])
def test_flow_schedules_are_diffusers_for_sd3_and_flux_bit_for_bit(num_steps):
    from promptedit.samplers.flow import image_seq_len_mu

    cases = [(SD3_CONFIG, "scheduler", {}, None), (FLUX_SCHNELL_CONFIG, "linspace", {}, None)]
    # FLUX.1-dev at 16 … 6000 latent tokens (64 px … past its largest size), by token count or by μ itself
    for tokens in (16, 256, 1024, 4096, 6000):
        mu = image_seq_len_mu(tokens)
        cases += [(FLUX_CONFIG, "linspace", {"image_seq_len": tokens}, mu), (FLUX_CONFIG, "linspace", {"mu": mu}, mu),
                  (FLUX_CONFIG, "scheduler", {"image_seq_len": tokens}, mu)]
    # the linear time shift and a terminal sigma (LTX-Video's options) follow diffusers too
    cases += [({**FLUX_CONFIG, "time_shift_type": "linear"}, "linspace", {"mu": 1.3}, 1.3)]
    if num_steps > 1:  # (one step cannot be stretched: diffusers' sigma is NaN, ours refuses; see below)
        cases += [({**SD3_CONFIG, "shift_terminal": 0.1}, "scheduler", {}, None)]
    for config, spacing, kwargs, mu in cases:
        sampler = FlowMatchEulerSampler(config, spacing=spacing)
        reference = flow_reference(config, num_steps, spacing=spacing, mu=mu)
        assert torch.equal(sampler.set_steps(num_steps, **kwargs), reference.timesteps), (config, spacing, kwargs)
        assert torch.equal(sampler.sigmas, reference.sigmas) and sampler.num_steps == num_steps
        assert sampler.sigmas[0] == 1.0 and sampler.sigmas[-1] == 0.0


def test_flow_shifts_are_the_papers_equations():
    from promptedit.samplers.flow import image_seq_len_mu, shift_sigmas, time_shift

    sigma = np.linspace(0.05, 1.0, 20)
    # SD3's σ' = shift·σ / (1 + (shift − 1)·σ): identity at shift 1, ends kept, more steps near the noise
    assert np.allclose(shift_sigmas(sigma, 1.0), sigma) and shift_sigmas(1.0, 3.0) == 1.0
    assert np.all(shift_sigmas(sigma[:-1], 3.0) > sigma[:-1])
    # FLUX's exponential time shift is SD3's shift with shift = e^μ; the linear one with shift = μ
    assert np.allclose(time_shift(sigma, 0.7), shift_sigmas(sigma, np.exp(0.7)))
    assert np.allclose(time_shift(sigma, 1.3, "linear"), shift_sigmas(sigma, 1.3))
    # μ runs on the line through (256 tokens, 0.5) and (4096 tokens, 1.15)
    assert image_seq_len_mu(256) == pytest.approx(0.5) and image_seq_len_mu(4096) == pytest.approx(1.15)
    assert image_seq_len_mu(2176) == pytest.approx(0.825)


def fake_velocity(x, t):
    """A velocity field that depends on the latent and the timestep (what a model's output does)."""
    return torch.tanh(x) * (float(t) / 1000) - 0.3 * x  # (n, C, h, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config,spacing,kwargs", [(SD3_CONFIG, "scheduler", {}),
                                                   (FLUX_CONFIG, "linspace", {"image_seq_len": 1024})])
def test_flow_steps_are_diffusers_step_bit_for_bit_along_a_whole_run(config, spacing, kwargs, dtype):
    from promptedit.samplers.flow import image_seq_len_mu

    sampler = FlowMatchEulerSampler(config, spacing=spacing)
    assert sampler.name == "flow-match-euler" and sampler.init_noise_sigma == 1.0
    sampler.set_steps(6, **kwargs)
    reference = flow_reference(config, 6, spacing=spacing, mu=image_seq_len_mu(1024) if kwargs else None)
    ours = theirs = latents(seed=9).to(dtype)
    for t in sampler.timesteps:  # the pipelines' loop: the model's output at x_t, then one step
        assert torch.equal(sampler.scale_model_input(ours, t), ours)
        ours = sampler.step(fake_velocity(ours, t).to(dtype), t, ours)
        theirs = reference.step(fake_velocity(theirs, t).to(dtype), t, theirs).prev_sample
        assert ours.dtype == theirs.dtype == dtype and torch.equal(ours, theirs)
    # a float32 latent with a half-precision output: stepped in float32, returned in the output's dtype
    t = sampler.timesteps[2]
    reference._step_index = 2
    x32, v = latents(seed=3), latents(seed=4).to(dtype)
    expected = reference.step(v, t, x32).prev_sample
    assert torch.equal(sampler.step(v, t, x32), expected)
    # unlike diffusers' step, ours keeps no count of its calls: the same step again gives the same latent
    assert torch.equal(sampler.step(v, t, x32), expected)


def test_flow_inverse_step_undoes_a_step_exactly_on_a_straight_path_and_to_first_order_otherwise():
    from promptedit.samplers.flow import euler_step

    sampler = FlowMatchEulerSampler(SD3_CONFIG)
    sampler.set_steps(5)
    x0, noise = latents(seed=10), latents(seed=11)
    v = noise - x0  # the constant velocity of the straight path from x0 to the noise
    for i, t in enumerate(sampler.timesteps):
        x = sampler.noise_to(x0, noise, i)
        stepped = sampler.step(v, t, x)  # Euler is exact on a straight path: it lands on the next level
        assert torch.allclose(stepped, sampler.noise_to(x0, noise, i, after=True), atol=1e-6)
        assert torch.allclose(sampler.inverse_step(v, t, stepped), x, atol=1e-6)
    # a velocity field that bends: inverting with the velocity taken at the lower level errs by O(Δσ²)
    x = latents(seed=12)
    errors = []
    for h in (0.1, 0.05, 0.025):
        sigma, lower = torch.tensor(0.6), torch.tensor(0.6 - h)
        down = euler_step(fake_velocity(x, 600), x, sigma, lower)
        errors.append(float((euler_step(fake_velocity(down, 600), down, lower, sigma) - x).abs().max()))
    assert errors[0] > 0 and all(3.5 < a / b < 4.5 for a, b in zip(errors, errors[1:]))


def test_flow_noising_and_conversions_round_trip():
    sampler = FlowMatchEulerSampler(FLUX_CONFIG, spacing="linspace")
    sampler.set_steps(4, mu=0.9)
    x0, noise = latents(seed=13), latents(seed=14)
    for i, t in enumerate(sampler.timesteps):
        sigma = float(sampler.sigmas[i])
        x = sampler.noise_to(x0, noise, i)
        assert torch.allclose(x, (1 - sigma) * x0 + sigma * noise, atol=1e-6)
        v = noise - x0  # the true velocity gives back x0 and the noise
        assert torch.allclose(sampler.to_x0(v, t, x), x0, atol=1e-5)
        assert torch.allclose(sampler.to_eps(v, t, x), noise, atol=1e-5)
        out = latents(seed=15 + i)  # any output: x = (1 − σ)·x̂0 + σ·ε̂ and v = ε̂ − x̂0
        x0_hat, eps_hat = sampler.to_x0(out, t, x), sampler.to_eps(out, t, x)
        assert torch.allclose((1 - sigma) * x0_hat + sigma * eps_hat, x, atol=1e-5)
        assert torch.allclose(eps_hat - x0_hat, out, atol=1e-5)
        if i > 0:  # below σ = 1 the step from ε is the step from v, and it is differentiable
            eps = eps_hat.clone().requires_grad_(True)
            stepped = sampler.eps_step(eps, t, x)
            assert torch.allclose(stepped, sampler.step(out, t, x), atol=1e-5)
            stepped.sum().backward()
            assert eps.grad is not None and bool(torch.isfinite(eps.grad).all())
    # after the last step the level is σ = 0: the clean latent itself
    assert torch.equal(sampler.noise_to(x0, noise, 3, after=True), x0)
    with pytest.raises(ParameterError, match="at σ = 1 has no meaning.*null-text") as e:
        sampler.eps_step(noise, sampler.timesteps[0], noise)
    one_line(e)


@pytest.mark.parametrize("config,match", [
    ({**SD3_CONFIG, "shift": 0}, r"shift must be in \(0, inf\), got 0"),
    ({**SD3_CONFIG, "shift": float("nan")}, "shift must be a finite number"),
    ({**SD3_CONFIG, "num_train_timesteps": 1}, r"num_train_timesteps must be in \[2, inf\]"),
    ({**SD3_CONFIG, "num_train_timesteps": 1000.0}, "num_train_timesteps must be a whole number"),
    ({**FLUX_CONFIG, "use_dynamic_shifting": "yes"}, "use_dynamic_shifting must be true or false"),
    ({**FLUX_CONFIG, "max_image_seq_len": 256}, r"max_image_seq_len \(256\) must be above base_image_seq_len"),
    ({**FLUX_CONFIG, "max_shift": None}, "max_shift must be a finite number"),
    ({**FLUX_CONFIG, "time_shift_type": "cosine"}, "time_shift_type must be exponential or linear"),
    ({**SD3_CONFIG, "shift_terminal": 1.0}, r"shift_terminal must be in \[0, 1\)"),
    ({**SD3_CONFIG, "use_karras_sigmas": True}, r"does not run Karras sigmas \(use_karras_sigmas"),
    ({**SD3_CONFIG, "stochastic_sampling": True}, "does not run stochastic sampling"),
    ({**SD3_CONFIG, "invert_sigmas": True}, "does not run inverted sigmas"),
])
def test_a_flow_sampler_refuses_a_configuration_it_cannot_run_in_one_line(config, match):
    with pytest.raises(ParameterError, match=match) as e:
        FlowMatchEulerSampler(config)
    one_line(e)


def test_a_flow_sampler_refuses_bad_arguments_in_one_line():
    with pytest.raises(ParameterError, match="spacing must be one of scheduler, linspace, got 'sd3'") as e:
        FlowMatchEulerSampler(SD3_CONFIG, spacing="sd3")
    one_line(e)
    fixed, dynamic = FlowMatchEulerSampler(SD3_CONFIG), FlowMatchEulerSampler(FLUX_CONFIG, spacing="linspace")
    for call, match in ((lambda: fixed.num_steps, "set_steps first"),
                        (lambda: fixed.step(latents(), 1000.0, latents()), "set_steps first"),
                        (lambda: fixed.set_steps(0), r"num_inference_steps must be in \[1, inf\]"),
                        (lambda: fixed.set_steps(2.5), "num_inference_steps must be a whole number"),
                        (lambda: fixed.set_steps(4, mu=1.0), "mu shifts a schedule with dynamic shifting; .*shift 3"),
                        (lambda: dynamic.set_steps(4), "set_steps needs mu or image_seq_len"),
                        (lambda: dynamic.set_steps(4, mu=1.0, image_seq_len=64), "not both"),
                        (lambda: dynamic.set_steps(4, mu=float("inf")), "mu must be a finite number"),
                        (lambda: dynamic.set_steps(4, image_seq_len=0), r"image_seq_len must be in \[1, inf\]"),
                        (lambda: fixed.inverse_scheduler(), "DiffEdit pipeline inverts with DDIM only")):
        with pytest.raises(ParameterError, match=match) as e:
            call()
        one_line(e)
    # the fixed schedule takes the image's token count (it needs none) so that a caller can always pass it
    assert torch.equal(fixed.set_steps(4, image_seq_len=64), FlowMatchEulerSampler(SD3_CONFIG).set_steps(4))
    for call, match in ((lambda: fixed.step(latents(), 123.0, latents()), "timestep 123 is not one of the "
                                                                           "sampler's 4 timesteps"),
                        (lambda: fixed.noise_to(latents(), latents(), 4), r"step must be in \[0, 3\]")):
        with pytest.raises(ParameterError, match=match) as e:
            call()
        one_line(e)
    # more steps than float32 tells apart: a huge shift crowds the sigmas near 1 until they repeat
    with pytest.raises(ParameterError, match="num_inference_steps 1000 gives no strictly falling schedule") as e:
        FlowMatchEulerSampler({**SD3_CONFIG, "shift": 1e6}).set_steps(1000)
    one_line(e)
    with pytest.raises(ParameterError, match=r"at least 2 on this model .* shift_terminal 0.1\), got 1") as e:
        FlowMatchEulerSampler({**SD3_CONFIG, "shift_terminal": 0.1}).set_steps(1)
    one_line(e)
    linear = FlowMatchEulerSampler({**FLUX_CONFIG, "time_shift_type": "linear"})
    with pytest.raises(ParameterError, match=r"mu must be in \(0, inf\)"):
        linear.set_steps(4, mu=0.0)


def test_the_flow_sampler_hands_out_diffusers_scheduler_with_the_checkpoints_configuration():
    sampler = FlowMatchEulerSampler(FLUX_CONFIG, spacing="linspace")
    for scheduler in (sampler.checkpoint_scheduler(), sampler.scheduler):
        assert type(scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
        assert all(scheduler.config[k] == v for k, v in FLUX_CONFIG.items())


# ----------------------------------------------------------------------------- flow ODE solvers


def gaussian_velocity(s=0.5, mu=1.0):
    """The exact velocity of data N(μ, s²) (see tests/helpers.GaussianFlowModel) and its exact solution."""
    from helpers import GaussianFlowModel

    model, cond = GaussianFlowModel(s), GaussianFlowModel(s).cond(mu)
    return (lambda x, sigma: model.predict(x, sigma * 1000, cond)), (lambda x0, sigma: model.exact(x0, mu, sigma))


@pytest.mark.parametrize("solver", ["euler", "rf-solver", "fireflow"])
def test_flow_solvers_converge_to_the_exact_ode_solution_at_their_order(solver):
    from promptedit.samplers.flow import integrate

    velocity, exact = gaussian_velocity()
    x0 = latents(1, seed=20)
    errors = []
    for n in (8, 16, 32):
        sampler = FlowMatchEulerSampler(SD3_CONFIG)
        sampler.set_steps(n)
        up = integrate(velocity, x0, sampler.sigmas.flip(0), solver)  # (n + 1, 1, C, h, w): inversion
        assert up.shape == (n + 1, *x0.shape) and torch.equal(up[0], x0)
        errors.append(float((up[-1] - exact(x0, sampler.sigmas[0])).abs().max()))
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    # halving the step: Euler's global error halves, the second-order solvers' falls about four times
    assert all(1.6 < r < 2.6 for r in ratios) if solver == "euler" else all(r > 3.0 for r in ratios), (errors, ratios)


def test_second_order_flow_inversions_reconstruct_more_closely_than_euler_at_the_same_steps():
    from promptedit.samplers.flow import integrate

    velocity, _ = gaussian_velocity()
    x0 = latents(1, seed=21)
    sampler = FlowMatchEulerSampler(SD3_CONFIG)
    errors = {}
    for n in (10, 20):
        sampler.set_steps(n)
        for inverts, samples in (("euler", "euler"), ("rf-solver", "rf-solver"), ("fireflow", "fireflow"),
                                 ("uni-inv", "euler")):
            x1 = integrate(velocity, x0, sampler.sigmas.flip(0), inverts)[-1]
            errors[n, inverts] = float((integrate(velocity, x1, sampler.sigmas, samples)[-1] - x0).abs().max())
    for n in (10, 20):  # inversion then sampling with the same solver gives the image back, closer as steps grow
        assert errors[n, "rf-solver"] < errors[n, "fireflow"] < errors[n, "uni-inv"] < errors[n, "euler"] / 4, errors
    for solver in ("euler", "rf-solver", "fireflow", "uni-inv"):
        assert errors[20, solver] < errors[10, solver] / 1.5, errors


def test_flow_solver_steps_are_the_papers_and_count_their_evaluations():
    from promptedit.samplers.flow import euler_step, mid_sigma, rf_solver_step, solver_step

    velocity, _ = gaussian_velocity()
    calls = []

    def counted(x, sigma):
        calls.append(float(sigma))
        return velocity(x, sigma)

    x, s0, s1 = latents(1, seed=22), torch.tensor(0.7), torch.tensor(0.5)
    v = velocity(x, s0)
    v_mid = velocity(euler_step(v, x, s0, mid_sigma(s0, s1)), torch.tensor(0.6))
    # RF-Solver's Taylor step is the explicit mid-point method, x + h·v_mid
    assert torch.allclose(rf_solver_step(v, v_mid, x, s0, s1), euler_step(v_mid, x, s0, s1), atol=1e-6)
    out, reused = solver_step(counted, x, s0, s1, "rf-solver")
    assert reused is None and calls == pytest.approx([0.7, 0.6]) and torch.equal(out, rf_solver_step(v, v_mid, x, s0, s1))
    calls.clear()
    out, reused = solver_step(counted, x, s0, s1, "fireflow")
    assert calls == pytest.approx([0.7, 0.6]) and torch.equal(reused, v_mid) and torch.equal(out, euler_step(v_mid, x, s0, s1))
    calls.clear()
    solver_step(counted, out, s1, torch.tensor(0.3), "fireflow", reused)  # FireFlow reuses v_mid: one evaluation
    assert calls == pytest.approx([0.4])
    calls.clear()
    out, reused = solver_step(counted, x, s0, s1, "uni-inv", v)  # Uni-Inv: the velocity at the predicted next point
    v_next = velocity(euler_step(v, x, s0, s1), s1)
    assert calls == pytest.approx([0.5]) and torch.equal(reused, v_next) and torch.equal(out, euler_step(v_next, x, s0, s1))
    with pytest.raises(ParameterError, match="solver must be one of euler, rf-solver, fireflow, uni-inv") as e:
        solver_step(counted, x, s0, s1, "heun")
    one_line(e)
    assert DDIMSampler(SD_CONFIG).solvers == ("ddim",) and FlowMatchEulerSampler(SD3_CONFIG).solvers[0] == "euler"
