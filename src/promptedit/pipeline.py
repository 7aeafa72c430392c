"""The denoising loop, written out: prompts → embeddings → DDIM steps with guidance → images.

Argument names follow diffusers (``num_inference_steps``, ``guidance_scale``,
``generator``, ``latents``). Attention control and feature injection are
installed around the loop through :mod:`promptedit.hooks`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .control import AttentionControl
from .errors import ParameterError, PromptError
from .hooks import FeatureInjection, attention_control, feature_injection
from .models import DiffusionModel
from .tokens import tokenize

StepCallback = Callable[[dict], None]


def check_sampling(num_inference_steps, guidance_scale) -> None:
    """Validate the loop's numeric parameters (ParameterError otherwise)."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
        raise ParameterError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
    if num_inference_steps > 1000:
        raise ParameterError(f"num_inference_steps must be at most 1000, got {num_inference_steps}")
    try:
        w = float(guidance_scale)
    except (TypeError, ValueError):
        raise ParameterError(f"guidance_scale must be a number, got {guidance_scale!r}") from None
    if not math.isfinite(w) or w < 0:
        raise ParameterError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")


def check_size(model: DiffusionModel, height: int, width: int) -> None:
    f = model.vae_scale_factor * 2 ** (len(model.unet.config.block_out_channels) - 1)
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or v <= 0 or v % f:
            raise ParameterError(f"{name} must be a positive multiple of {f} for this model, got {v!r}")


@torch.no_grad()
def encode_prompts(model: DiffusionModel, prompts: Sequence[str]) -> torch.Tensor:
    """Text embeddings (n, max_length, dim); over-long prompts are truncated with a warning."""
    for p in prompts:
        if not isinstance(p, str):
            raise PromptError(f"a prompt must be text, got {type(p).__name__}")
        tokenize(model.tokenizer, p)  # warns when truncated
    ids = model.tokenizer(
        list(prompts), padding="max_length", max_length=model.max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(model.device)
    return model.text_encoder(ids)[0].to(model.dtype)


def initial_latents(
    model: DiffusionModel, height: int, width: int, generator: torch.Generator | None
) -> torch.Tensor:
    """x_T ~ N(0, I) of shape (1, C, height/f, width/f), drawn on the CPU so seeds reproduce across devices."""
    shape = (1, model.latent_channels, height // model.vae_scale_factor, width // model.vae_scale_factor)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(model.device, model.dtype)


def guided_noise(noise_uncond: torch.Tensor, noise_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ε̃ = ε(∅) + w · (ε(c) − ε(∅))."""
    return noise_uncond + guidance_scale * (noise_cond - noise_uncond)


@torch.no_grad()
def denoise(
    model: DiffusionModel,
    cond_embeddings: torch.Tensor,
    latents: torch.Tensor,
    *,
    num_inference_steps: int,
    guidance_scale: float,
    uncond_embeddings: torch.Tensor | Sequence[torch.Tensor] | None = None,
    controller: AttentionControl | None = None,
    features: FeatureInjection | None = None,
    callback: StepCallback | None = None,
    progress: bool = True,
    scheduler=None,
    start_step: int = 0,
    end_step: int | None = None,
) -> torch.Tensor:
    """Run the DDIM loop from x_T to x_0 for a batch of prompts sharing one layout.

    Args:
        cond_embeddings: (n, L, D) text embeddings of the prompts.
        latents: x_T, (n, C, h, w) or (1, C, h, w) broadcast to the n prompts.
        uncond_embeddings: (n, L, D), or one such tensor per step (null-text inversion); None means
            the empty prompt's embedding.
        controller: attention controller; None runs the plain loop.
        features: optional Plug-and-Play feature injection.
        callback: called after each step with a dict: ``step``, ``t``, ``x_t``, ``noise_pred``.
        start_step: skip the first steps of the schedule (SDEdit-style partial denoising: ``latents``
            is then x at ``timesteps[start_step]``); controllers count steps from there.
        end_step: stop before this step (returns the partly denoised latents).

    Returns x_0 latents (n, C, h, w).
    """
    # 1. Check inputs
    check_sampling(num_inference_steps, guidance_scale)
    n = cond_embeddings.shape[0]
    if latents.shape[0] not in (1, n):
        raise ParameterError(f"latents batch {latents.shape[0]} does not match {n} prompts")
    latents = latents.expand(n, *latents.shape[1:]).clone()
    do_cfg = guidance_scale != 1.0
    if do_cfg and uncond_embeddings is None:
        uncond_embeddings = encode_prompts(model, [""] * n)
    per_step_uncond = isinstance(uncond_embeddings, (list, tuple))
    if per_step_uncond and len(uncond_embeddings) != num_inference_steps:
        raise ParameterError(f"{len(uncond_embeddings)} null embeddings for {num_inference_steps} steps")
    if not 0 <= start_step < num_inference_steps:
        raise ParameterError(f"start_step must be in [0, {num_inference_steps}), got {start_step}")

    # 2. Set timesteps
    scheduler = scheduler or model.make_scheduler()
    scheduler.set_timesteps(num_inference_steps, device=model.device)
    timesteps = scheduler.timesteps[start_step:end_step]
    if start_step == 0:
        latents = latents * scheduler.init_noise_sigma
    if per_step_uncond:
        uncond_embeddings = list(uncond_embeddings)[start_step:end_step]

    # 3. Install hooks
    h, w = latents.shape[-2:]
    with contextlib.ExitStack() as stack:
        if controller is not None:
            controller.begin(num_steps=len(timesteps), latent_size=(h, w), n_prompts=n,
                             device=latents.device, dtype=model.unet.dtype)
            stack.enter_context(attention_control(model.unet, controller))
        if features is not None:
            features.begin(num_steps=len(timesteps), n_prompts=n)
            stack.enter_context(feature_injection(model.unet, features))

        # 4. Denoising loop
        for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress, leave=False)):
            if controller is not None:
                controller.begin_step(i)
            if features is not None:
                features.begin_step(i)
            # 4a. UNet with classifier-free guidance (unconditional half first)
            if do_cfg:
                uncond = uncond_embeddings[i] if per_step_uncond else uncond_embeddings
                uncond = uncond.expand(n, *uncond.shape[1:]) if uncond.shape[0] == 1 else uncond
                context = torch.cat([uncond, cond_embeddings])
                model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            else:
                context, model_input = cond_embeddings, scheduler.scale_model_input(latents, t)
            out = model.unet(model_input, t, encoder_hidden_states=context).sample
            noise_pred = guided_noise(*out.chunk(2), guidance_scale) if do_cfg else out
            # 4b. Scheduler step x_t -> x_{t-1}
            latents = scheduler.step(noise_pred, t, latents, eta=0.0).prev_sample
            # 4c. Controller's step callback (local blend)
            if controller is not None:
                latents = controller.step_callback(latents)
            if callback is not None:
                callback({"step": i, "t": t, "x_t": latents, "noise_pred": noise_pred})
    return latents


@torch.no_grad()
def decode_latents(model: DiffusionModel, latents: torch.Tensor) -> np.ndarray:
    """VAE decode x_0 → images (n, H, W, 3) float32 in [0, 1].

    A decode that gives NaN or Inf (fp16 overflow) is redone in fp32.
    """
    scale = getattr(model.vae.config, "scaling_factor", 1.0)
    images = model.vae.decode(latents / scale).sample
    if not torch.isfinite(images).all():
        if model.dtype == torch.float32:
            raise RuntimeError("the VAE decoded NaN/Inf values in fp32")
        warnings.warn("decoded image had NaN/Inf in reduced precision; decoding again in fp32", RuntimeWarning, stacklevel=2)
        model.vae.to(torch.float32)
        try:
            images = model.vae.decode(latents.float() / scale).sample
        finally:
            model.vae.to(model.dtype)
    images = (images.float() / 2 + 0.5).clamp(0, 1)
    return images.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode_images(model: DiffusionModel, images: np.ndarray) -> torch.Tensor:
    """VAE encode images (n, H, W, 3) in [0, 1] → latents z_0 (n, C, h, w) (the posterior mean, scaled)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(model.device, model.dtype)
    posterior = model.vae.encode(x * 2 - 1).latent_dist
    return posterior.mean * getattr(model.vae.config, "scaling_factor", 1.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] → uint8."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (a random seed when None)."""
    g = torch.Generator("cpu")
    if seed is None:
        g.seed()
    else:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
        g.manual_seed(seed)
    return g
