"""DDIM (Song et al., "Denoising Diffusion Implicit Models", ICLR 2021) as a :class:`~.base.Sampler`, its equations
as small pure functions.

``alpha`` is ᾱ_t, the cumulative product of (1 − β); a deterministic DDIM step (σ = 0) moves x_t to x_{t−Δ}
through the predicted x₀. Sampling steps with diffusers' ``DDIMScheduler`` (so the loop matches diffusers'
pipelines bit for bit); inversion, null-text optimisation and noising use the functions here.
"""

from __future__ import annotations

import torch

from ..errors import ParameterError
from .base import Sampler


def eps_from_output(output: torch.Tensor, x_t: torch.Tensor, alpha_t: float, prediction_type: str) -> torch.Tensor:
    """ε from the model's output: ε itself, or from v (Salimans & Ho 2022, Eq. 9 rearranged): ε = √ᾱ·v + √(1−ᾱ)·x_t."""
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return alpha_t**0.5 * output + (1 - alpha_t) ** 0.5 * x_t
    raise ParameterError(f"unsupported prediction type {prediction_type!r}")


def x0_from_output(output: torch.Tensor, x_t: torch.Tensor, alpha_t: float, prediction_type: str) -> torch.Tensor:
    """x₀ from the model's output: from ε (Ho et al. 2020, Eq. 15): (x_t − √(1−ᾱ)·ε) / √ᾱ, or from v (Salimans &
    Ho 2022, Sec. 4): √ᾱ·x_t − √(1−ᾱ)·v."""
    if prediction_type == "epsilon":
        return (x_t - (1 - alpha_t) ** 0.5 * output) / alpha_t**0.5
    if prediction_type == "v_prediction":
        return alpha_t**0.5 * x_t - (1 - alpha_t) ** 0.5 * output
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


class DDIMSampler(Sampler):
    """Deterministic DDIM (η = 0) over a checkpoint's noise schedule, as the papers run it: no clipping,
    ``set_alpha_to_one=False``. ``config``: the checkpoint's scheduler configuration; a ParameterError when it
    gives no usable schedule (fewer than 2 timesteps, noise levels outside (0, 1])."""

    name = "DDIM"
    solvers = ("ddim",)

    def __init__(self, config: dict):
        from diffusers import DDIMScheduler

        super().__init__()
        total = config.get("num_train_timesteps", 1000)
        if isinstance(total, bool) or not isinstance(total, int) or total < 2:
            raise ParameterError(f"num_train_timesteps is {total!r}")
        self.config = dict(config)  # as the checkpoint has it (what diffusers' own pipelines are given)
        self.scheduler = DDIMScheduler.from_config({**config, "clip_sample": False, "set_alpha_to_one": False})
        alphas = self.scheduler.alphas_cumprod  # (num_train_timesteps,) ᾱ_t
        if len(alphas) < 2 or not bool(torch.isfinite(alphas).all()) or not bool(((alphas > 0) & (alphas <= 1)).all()):
            raise ParameterError(f"num_train_timesteps {total!r}, or its betas give noise levels outside (0, 1]")
        self.prediction_type = self.scheduler.config.prediction_type

    @property
    def init_noise_sigma(self) -> float:
        return self.scheduler.init_noise_sigma

    def set_steps(self, num_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Every step must be one of the schedule's noise levels (``leading`` spacing with ``steps_offset`` 1,
        SD's, takes at most 999 of 1000 steps)."""
        total = self.scheduler.config.num_train_timesteps
        if num_steps > total:
            raise ParameterError(f"num_inference_steps must be at most {total} on this model (its scheduler has "
                                 f"{total} timesteps), got {num_steps}")
        self.scheduler.set_timesteps(num_steps, device=device)
        if int(self.scheduler.timesteps.max()) >= total:
            raise ParameterError(f"num_inference_steps must be below {num_steps} on this model (its scheduler's "
                                 f"{self.scheduler.config.timestep_spacing} spacing with steps_offset "
                                 f"{self.scheduler.config.steps_offset} would step past its {total} timesteps)")
        self.timesteps = self.scheduler.timesteps
        return self.timesteps

    def alphas(self, t) -> tuple[float, float]:
        """ᾱ_t and ᾱ_{t−Δ} of a DDIM step from t with the schedule's spacing Δ (past t = 0: its
        ``final_alpha_cumprod``, ᾱ at the end of sampling)."""
        t = int(t)
        prev = t - self.scheduler.config.num_train_timesteps // self.scheduler.num_inference_steps
        a_t = self.scheduler.alphas_cumprod[t]
        a_prev = self.scheduler.alphas_cumprod[prev] if prev >= 0 else self.scheduler.final_alpha_cumprod
        return float(a_t), float(a_prev)

    def scale_model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.scheduler.scale_model_input(x, t)

    def step(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """diffusers' ``DDIMScheduler.step`` with η = 0 (Song et al. 2021, Eq. 12 with σ = 0)."""
        return self.scheduler.step(model_output, t, x, eta=0.0).prev_sample

    def inverse_step(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        a_t, a_prev = self.alphas(t)
        return ddim_inverse_step(eps_from_output(model_output, x, a_t, self.prediction_type), x, a_t, a_prev)

    def eps_step(self, eps: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        return ddim_step(eps, x, *self.alphas(t))

    def noise_to(self, x0: torch.Tensor, noise: torch.Tensor, step: int, *, after: bool = False) -> torch.Tensor:
        t = int(self.timesteps[step])
        return q_sample(x0, noise, self.alphas(t)[1] if after else float(self.scheduler.alphas_cumprod[t]))

    def to_eps(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        return eps_from_output(model_output, x, self.alphas(t)[0], self.prediction_type)

    def to_x0(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        return x0_from_output(model_output, x, self.alphas(t)[0], self.prediction_type)

    def checkpoint_scheduler(self):
        """diffusers' ``DDIMScheduler`` with the checkpoint's configuration as it is (for saving a checkpoint)."""
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(self.config)

    def inverse_scheduler(self):
        """diffusers' ``DDIMInverseScheduler`` with the checkpoint's configuration (diffusers' DiffEdit pipeline)."""
        from diffusers import DDIMInverseScheduler

        return DDIMInverseScheduler.from_config(self.config)
