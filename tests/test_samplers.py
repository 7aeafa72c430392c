"""The Sampler and Guidance seam: DDIM as a Sampler (bit for bit diffusers' DDIMScheduler where the loop steps),
its equations, and the guidance kinds the loop batches and combines; each type's construction checks."""

import numpy as np
import pytest
import torch

from promptedit.errors import ParameterError
from promptedit.guidance import (ClassifierFree, EmbeddedGuidance, Guidance, NoGuidance, classifier_free,
                                 require_classifier_free)
from promptedit.samplers import DDIMSampler, Sampler, strength_start
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

    def make_sampler():
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
