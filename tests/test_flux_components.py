"""Tiny random FLUX.1 and SD3.5 components built in code (groundwork for issue 31): diffusers' own pipelines run on
them, deterministically, and our flow-matching sampler gives the schedule and the steps those pipelines take."""

from __future__ import annotations

import pytest
import torch

from promptedit.samplers import FlowMatchEulerSampler

pytestmark = pytest.mark.integration

PROMPT = "a red circle on a white background"


def run_pipeline(pipe, seed: int = 0, **kwargs):
    """A 32 px, 2-step run with a T5 length of 32; returns the images (1, 3, 32, 32) and, per step, the latent it
    started from, the timestep, the transformer's output and the latent after the step."""
    steps: list[dict] = []
    forward = pipe.transformer.forward

    def recording_forward(hidden_states, *args, **kw):  # the latent each step starts from, and the velocity
        out = forward(hidden_states, *args, **kw)
        steps.append({"x": hidden_states.clone(), "v": out[0].clone()})
        return out

    def on_step_end(pipe, i, t, callback_kwargs):  # the timestep and the latent after the step
        steps[i].update(t=t.clone(), after=callback_kwargs["latents"].clone())
        return callback_kwargs

    pipe.transformer.forward = recording_forward
    try:
        images = pipe(PROMPT, height=32, width=32, num_inference_steps=2, max_sequence_length=32, output_type="pt",
                      generator=torch.Generator().manual_seed(seed), callback_on_step_end=on_step_end,
                      **kwargs).images
    finally:
        del pipe.transformer.forward
    return images, steps


def check_steps(sampler: FlowMatchEulerSampler, pipe, steps: list[dict]):
    """Our sampler's schedule is the one the pipeline stepped, and its step maps each step's latent and velocity
    to the pipeline's next latent bit for bit."""
    assert torch.equal(sampler.timesteps, pipe.scheduler.timesteps)
    assert torch.equal(sampler.sigmas, pipe.scheduler.sigmas)
    assert torch.equal(torch.stack([s["t"] for s in steps]), sampler.timesteps)
    for s in steps:
        assert torch.equal(sampler.step(s["v"], s["t"], s["x"]), s["after"])


def test_tiny_flux_generates_deterministically_and_our_sampler_takes_its_steps():
    from diffusers import FluxPipeline

    from promptedit.testing import tiny_flux_components

    pipe = FluxPipeline(**tiny_flux_components(0))
    assert pipe.vae_scale_factor == 2 and pipe.transformer.config.guidance_embeds
    assert pipe.tokenizer_2.model_max_length == 512 and pipe.tokenizer_2.bos_token_id is None
    images, steps = run_pipeline(pipe, guidance_scale=3.5)
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all() and images.std() > 0
    # the packed latents: (1, (32/2/2)², 16·2·2) = (1, 64 tokens, 64 channels)
    assert steps[0]["x"].shape == (1, 64, 64) and len(steps) == 2
    # the same seed gives the same image; other weights or another noise seed, another image
    assert torch.equal(run_pipeline(FluxPipeline(**tiny_flux_components(0)), guidance_scale=3.5)[0], images)
    assert not torch.equal(run_pipeline(FluxPipeline(**tiny_flux_components(1)), guidance_scale=3.5)[0], images)
    assert not torch.equal(run_pipeline(pipe, seed=1, guidance_scale=3.5)[0], images)
    # FLUX.1-dev's spacing and dynamic shift, μ from the 64 image tokens
    sampler = FlowMatchEulerSampler(pipe.scheduler.config, spacing="linspace")
    sampler.set_steps(2, image_seq_len=steps[0]["x"].shape[1])
    check_steps(sampler, pipe, steps)


def test_tiny_sd3_generates_deterministically_and_our_sampler_takes_its_steps():
    from diffusers import StableDiffusion3Pipeline

    from promptedit.testing import tiny_sd3_components

    pipe = StableDiffusion3Pipeline(**tiny_sd3_components(0))
    assert pipe.transformer.config.dual_attention_layers == (0,)
    # no classifier-free guidance: the latent and the velocity the sampler steps are the batch of one prompt
    images, steps = run_pipeline(pipe, guidance_scale=1.0)
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all() and images.std() > 0
    assert steps[0]["x"].shape == (1, 16, 16, 16) and len(steps) == 2
    assert torch.equal(run_pipeline(StableDiffusion3Pipeline(**tiny_sd3_components(0)), guidance_scale=1.0)[0],
                       images)
    assert not torch.equal(run_pipeline(StableDiffusion3Pipeline(**tiny_sd3_components(1)), guidance_scale=1.0)[0],
                           images)
    sampler = FlowMatchEulerSampler(pipe.scheduler.config)  # SD3's spacing: the scheduler's own, shift 3
    sampler.set_steps(2)
    check_steps(sampler, pipe, steps)
