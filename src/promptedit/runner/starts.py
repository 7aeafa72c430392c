"""Where denoising starts: a seed's x_T (:class:`SeedStart`) or an image noised to a strength (:class:`NoisedImage`);
inversions are starts too (:mod:`promptedit.methods.inversion`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..conditioning import Conditioning
from ..control import AttentionControl
from ..errors import ParameterError
from .checks import check_seed, make_generator
from .latents import encode_images

@dataclass
class Prepared:
    """A start made ready for one run.

    Attributes:
        x: the latents the loop starts from, (1 or n, C, h, w).
        start_step: index of the schedule step ``x`` is at (0: x_T).
        uncond: the unconditional conditioning: n rows, or one such per step (null-text); None: the model's.
        controller: a controller the start needs (direct inversion's pivot), run before the caller's.
        extras: what the start computed that callers use (e.g. a noised image's per-step sources).
        solver: the sampler's ODE solver the run steps with (an RF-Solver or FireFlow inversion's own); None: the
            sampler's step.
    """

    x: torch.Tensor
    start_step: int = 0
    uncond: Conditioning | list[Conditioning] | None = None
    controller: AttentionControl | None = None
    extras: dict = field(default_factory=dict)
    solver: str | None = None


class Start:
    """Where denoising starts. A start may fix the sampling settings (an inversion fixes its steps, guidance and
    size); None leaves them to the caller and the model's defaults."""

    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    size: tuple[int, int] | None = None
    seed: int | None = None
    method: str = "seed"
    inverted: bool = False  # a real image's inversion (its edits reconstruct it in the source branch)

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Refuse prompts this start cannot serve (an inversion's source must be its prompt)."""

    def prepare(self, model, *, prompts: Sequence[str], num_inference_steps: int, size: tuple[int, int],
                edit_null: str | None = None) -> Prepared:
        raise NotImplementedError


@dataclass
class SeedStart(Start):
    """x_T ~ N(0, I) drawn on the CPU from ``seed`` (None: a random seed), shared by every branch."""

    seed: int | None = None

    def __post_init__(self):
        if self.seed is not None:
            check_seed(self.seed)

    def prepare(self, model, *, prompts, num_inference_steps, size, edit_null=None) -> Prepared:
        h, w = size
        shape = (1, model.latent_channels, h // model.vae_scale_factor, w // model.vae_scale_factor)
        x_T = torch.randn(shape, generator=make_generator(self.seed), dtype=torch.float32)
        return Prepared(x_T.to(model.device, model.dtype))


@dataclass
class NoisedImage(Start):
    """An image (H, W, 3) uint8 encoded and noised to ``strength`` with noise from ``seed`` (``num_seeds`` draws,
    branch rows cycling through them). ``extras``: ``z0`` (1, C, h, w), ``noise`` (num_seeds, C, h, w) and
    ``sources`` (steps − start, num_seeds, C, h, w): z0 noised with that noise to the level after each step of the
    pass (the sampler's :meth:`~promptedit.samplers.base.Sampler.noise_to`), the last one z0 itself — what
    mask-guided edits keep outside their mask."""

    image: np.ndarray = None
    strength: float = 0.5
    seed: int | None = 0
    num_seeds: int = 1
    method: str = "noised-image"

    def __post_init__(self):
        if self.image is None or self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ParameterError("the image must be (H, W, 3) uint8")
        if not 0.0 < float(self.strength) <= 1.0:
            raise ParameterError(f"strength must be in (0, 1], got {self.strength}")
        if self.num_seeds < 1:
            raise ParameterError(f"num_seeds must be >= 1, got {self.num_seeds}")
        self.size = tuple(self.image.shape[:2])

    def prepare(self, model, *, prompts, num_inference_steps, size, edit_null=None) -> Prepared:
        z0 = encode_images(model, self.image[None].astype(np.float32) / 255.0)
        noise = torch.randn((self.num_seeds, *z0.shape[1:]), generator=make_generator(self.seed)).to(z0)
        sampler = model.make_sampler(z0.shape[-2:])
        sampler.set_steps(num_inference_steps)
        start = sampler.start_index(self.strength)
        x_start = sampler.noise_to(z0, noise, start)  # (num_seeds, C, h, w)
        after = [sampler.noise_to(z0, noise, i, after=True) for i in range(start, num_inference_steps - 1)]
        after.append(z0.expand_as(noise))  # the known region ends exactly as the source
        n = len(prompts)
        if n % self.num_seeds:
            raise ParameterError(f"{n} branches do not split over {self.num_seeds} noise draws")
        return Prepared(x_start.repeat(n // self.num_seeds, 1, 1, 1), start,
                        extras={"z0": z0, "noise": noise, "sources": torch.stack(after)})
