"""DDIM mathematics (Song et al., "Denoising Diffusion Implicit Models", ICLR 2021), as small pure functions.

``alpha`` is ᾱ_t, the cumulative product of (1 − β); a deterministic DDIM step (σ = 0) moves x_t to
x_{t−Δ} through the predicted x_0. The denoising loop steps with diffusers' ``DDIMScheduler`` (so it matches
diffusers' pipelines bit for bit); inversion, null-text optimisation and noising use these.
"""

from __future__ import annotations

import torch

from .errors import ParameterError


def step_alphas(scheduler, t: int) -> tuple[float, float]:
    """ᾱ_t and ᾱ_{t−Δ} of a DDIM step from t with the scheduler's spacing Δ (past t = 0: its
    ``final_alpha_cumprod``, ᾱ at the end of sampling)."""
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    a_t = scheduler.alphas_cumprod[t]
    a_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
    return float(a_t), float(a_prev)


def eps_from_output(output: torch.Tensor, x_t: torch.Tensor, alpha_t: float, prediction_type: str) -> torch.Tensor:
    """ε from the UNet's output: ε itself, or from v (Salimans & Ho 2022, Eq. 9 rearranged): ε = √ᾱ·v + √(1−ᾱ)·x_t."""
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return alpha_t**0.5 * output + (1 - alpha_t) ** 0.5 * x_t
    raise ParameterError(f"unsupported prediction type {prediction_type!r}")


def ddim_step(eps: torch.Tensor, x_t: torch.Tensor, alpha_t: float, alpha_prev: float) -> torch.Tensor:
    """One deterministic DDIM step x_t → x_{t−Δ} (Song et al. 2021, Eq. 12 with σ = 0)."""
    x0 = (x_t - (1 - alpha_t) ** 0.5 * eps) / alpha_t**0.5
    return alpha_prev**0.5 * x0 + (1 - alpha_prev) ** 0.5 * eps


def ddim_inverse_step(eps: torch.Tensor, x_prev: torch.Tensor, alpha_t: float, alpha_prev: float) -> torch.Tensor:
    """DDIM inversion step x_{t−Δ} → x_t, with ε taken at the current latent (Mokady et al. 2023, Eq. 2)."""
    x0 = (x_prev - (1 - alpha_prev) ** 0.5 * eps) / alpha_prev**0.5
    return alpha_t**0.5 * x0 + (1 - alpha_t) ** 0.5 * eps


def q_sample(x0: torch.Tensor, noise: torch.Tensor, alpha: float) -> torch.Tensor:
    """x_t ~ q(x_t | x_0) with fixed noise (Ho et al. 2020, Eq. 4): √ᾱ·x_0 + √(1−ᾱ)·ε."""
    return alpha**0.5 * x0 + (1 - alpha) ** 0.5 * noise


def guided_noise(noise_uncond: torch.Tensor, noise_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): ε̃ = ε(∅) + w · (ε(c) − ε(∅))."""
    return noise_uncond + guidance_scale * (noise_cond - noise_uncond)
