"""What the methods return: a base :class:`Result` (what every method fills) and one type per kind of method,
with exactly the fields that method fills (the runner returns its own :class:`~promptedit.runner.RunOutput`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..runner import Sampling

__all__ = ["AttentionResult", "EditResult", "GenerationResult", "MaskEditResult", "ReconstructionResult", "Result",
           "VelocityEditResult"]


@dataclass
class Result:
    """What every method fills: images of every branch, the settings used and how long each stage took.

    Attributes:
        method: ``generate``, ``p2p`` (an edit of a generated image), ``attention``, the inversion method of an
            edit or reconstruction of a real image (``null-text``, ``negative-prompt``, ``direct``, ``ddim``), or a
            mask-guided edit (``instdiffedit``, ``diffedit``, ``user-mask``, ``kv-edit``; ``instant-mask``/``diffedit-mask`` for
            a mask alone).
        prompts: the branches' prompts, in batch order.
        images: (n, H, W, 3) uint8: the branches (source first); for mask-guided edits (input, edited).
        seed: the seed of x_T or of the noise (None for inversions).
        sampling: steps, guidance and size used.
        timings: seconds per stage (``total`` always).
        latents: the latents the run started from (x_T, z*_T, or the noised image), (1 or n, C, h, w); None where
            diffusers' DiffEdit pipeline ran.
        final_latents: the latents after the run (x_0 before decoding); None for a mask alone and for DiffEdit.
    """

    method: str
    prompts: list[str]
    images: np.ndarray
    seed: int | None
    sampling: Sampling
    timings: dict[str, float]
    latents: torch.Tensor | None = None
    final_latents: torch.Tensor | None = None

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


@dataclass
class GenerationResult(Result):
    """:func:`promptedit.methods.editing.generate`'s: one prompt or a batch sharing x_T, no attention control."""


@dataclass(kw_only=True)
class AttentionResult(Result):
    """:func:`promptedit.methods.editing.attention`'s: a generation with its attention maps.

    Attributes:
        attention, attention_downsample: the attention store and the resolution it recorded.
        notes: notes on what was chosen (the resolution used instead of the one asked for).
    """

    attention: object
    attention_downsample: int
    notes: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class EditResult(Result):
    """:func:`promptedit.methods.editing.edit`'s: a Prompt-to-Prompt edit of a generated image or of an inversion.

    Attributes:
        spec, mode, notes: the spec as run, the mode used, and notes on what was chosen.
        attention, attention_downsample: the attention store and the resolution it recorded, when asked (else None).
        blend_mask: local blend's last mask (n, 1, h, w), when blending (else None).
        edit_null: for edits of an inversion, which branches took its null conditioning (else None).
        inversion: the inversion the edit started from (None for a generated image).
    """

    spec: object
    mode: str
    notes: list[str] = field(default_factory=list)
    attention: object | None = None
    attention_downsample: int | None = None
    blend_mask: torch.Tensor | None = None
    edit_null: str | None = None
    inversion: object | None = None


@dataclass(kw_only=True)
class ReconstructionResult(Result):
    """:func:`promptedit.methods.inversion.reconstruct`'s: the image an inversion gives back under its own prompt.

    Attributes:
        inversion: the inversion reconstructed; edit_null: which branches took its null conditioning (``all``).
    """

    inversion: object
    edit_null: str


@dataclass(kw_only=True)
class MaskEditResult(Result):
    """A mask-guided edit's (InstDiffEdit, DiffEdit, a user's mask) or a mask alone's (``images``: the input only).

    Attributes:
        mask, latent_mask: the mask (H, W) bool and at the latent's size (h, w).
        settings: the method's own parameters.
        soft_mask: the soft mask the instant mask came from (h, w); None for DiffEdit and a user's mask.
        words: instant masks' word selection; None for DiffEdit and a user's mask.
        notes: notes on what was chosen (instant masks').
    """

    mask: np.ndarray
    latent_mask: np.ndarray
    settings: dict
    soft_mask: np.ndarray | None = None
    words: dict | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class VelocityEditResult(Result):
    """A velocity edit's of a flow model (:mod:`promptedit.methods.velocityedit`: FlowEdit, UniEdit-Flow):
    ``images`` (the input, the edit), ``prompts`` (source, target).

    Attributes:
        settings: the method's own parameters; velocity_mask: UniEdit-Flow's last mask (h, w) in [0, 1], else None.
    """

    settings: dict
    velocity_mask: np.ndarray | None = None
