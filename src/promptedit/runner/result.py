"""The one result type every method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .loop import Sampling

@dataclass
class Result:
    """What every method returns: images of every branch, the settings used and how long each stage took.

    Attributes:
        method: ``generate``, ``p2p`` (an edit of a generated image), ``attention``, the inversion method of an
            edit of a real image (``null-text``, ``negative-prompt``, ``direct``, ``ddim``), or a mask-guided
            edit (``instdiffedit``, ``diffedit``, ``user-mask``; ``instant-mask``/``diffedit-mask`` for a mask alone).
        prompts: the branches' prompts, in batch order.
        images: (n, H, W, 3) uint8: the branches (source first); for mask-guided edits (input, edited).
        seed: the seed of x_T or of the noise (None for inversions).
        sampling: steps, guidance and size used.
        timings: seconds per stage (``total`` always).
        latents: the latents the run started from (x_T, z*_T, or the noised image), (1 or n, C, h, w).
        final_latents: the latents after the run (x_0 before decoding).
        spec, mode, notes: for edits: the spec as run, the mode used, and notes on what was chosen.
        attention, attention_downsample: the attention store and the resolution it recorded, when asked.
        blend_mask: local blend's last mask (n, 1, h, w), when blending.
        edit_null: for edits of an inversion, which branches took its null conditioning.
        inversion: the inversion an edit started from.
        mask, latent_mask, soft_mask: a mask-guided edit's mask (H, W) bool, at the latent's size (h, w), and the
            soft mask it came from (h, w).
        words: instant masks' word selection; settings: the method's own parameters.
    """

    method: str
    prompts: list[str]
    images: np.ndarray
    seed: int | None
    sampling: Sampling
    timings: dict[str, float]
    latents: torch.Tensor | None = None
    final_latents: torch.Tensor | None = None
    spec: object | None = None
    mode: str | None = None
    notes: list[str] = field(default_factory=list)
    attention: object | None = None
    attention_downsample: int | None = None
    blend_mask: torch.Tensor | None = None
    edit_null: str | None = None
    inversion: object | None = None
    mask: np.ndarray | None = None
    latent_mask: np.ndarray | None = None
    soft_mask: np.ndarray | None = None
    words: dict | None = None
    settings: dict = field(default_factory=dict)

    @property
    def edited(self) -> np.ndarray | None:
        """The (first) edited image (H, W, 3); None for a mask alone or a plain generation of one prompt."""
        return self.images[1] if len(self.images) > 1 else None

    @property
    def num_inference_steps(self) -> int:
        return self.sampling.num_inference_steps

    @property
    def guidance_scale(self) -> float:
        return self.sampling.guidance_scale

    @property
    def height(self) -> int:
        return self.sampling.height

    @property
    def width(self) -> int:
        return self.sampling.width
