"""How the denoising loop guides a model: how many branches it batches per latent and how it combines them.

* :class:`ClassifierFree` (Ho & Salimans 2022): an unconditional branch batched before the conditional one,
  combined with Eq. 6; at scale 1 the combination is the conditional branch, so that branch is not batched.
* :class:`EmbeddedGuidance`: guidance-distilled models take the scale as an input: one branch, and the model's
  predict gets the scale.
* :class:`NoGuidance`: one branch, as it comes.

The model says which one its runs use (``model.make_guidance(scale)``). Null-text and negative-prompt inversion
replace the unconditional branch, so they need :class:`ClassifierFree` (:func:`require_classifier_free`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .conditioning import Conditioning
from .errors import ParameterError


def classifier_free(out_uncond: torch.Tensor, out_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): ε̃ = ε(∅) + w · (ε(c) − ε(∅))."""
    return out_uncond + scale * (out_cond - out_uncond)


def check_scale(scale) -> float:
    """A guidance scale: a finite number >= 0 (ParameterError otherwise)."""
    try:
        w = float(scale)
    except (TypeError, ValueError):
        raise ParameterError(f"guidance_scale must be a number, got {scale!r}") from None
    if not math.isfinite(w) or w < 0:
        raise ParameterError(f"guidance_scale must be a finite number >= 0, got {scale!r}")
    return w


@dataclass(frozen=True)
class Guidance:
    """One branch per latent, the model's output as it comes (the base of every guidance; see the subclasses).

    ``scale``: the guidance scale w, a finite number >= 0."""

    scale: float = 1.0
    #: what records and messages call it
    name: ClassVar[str] = "guidance"

    def __post_init__(self):
        object.__setattr__(self, "scale", check_scale(self.scale))

    @property
    def branches(self) -> int:
        """Model evaluations batched per latent."""
        return 1

    def conditioning(self, cond: Conditioning, uncond: Conditioning | None = None) -> Conditioning:
        """The batched call's conditioning: ``branches`` × n rows from ``cond`` (n rows) and, where there is an
        unconditional branch, ``uncond`` (n or 1 rows), unconditional rows first."""
        return cond

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """The batched call's latents, (branches · n, C, h, w) from x (n, C, h, w)."""
        return x

    def combine(self, out: torch.Tensor) -> torch.Tensor:
        """The guided output (n, C, h, w) from the batched call's (branches · n, C, h, w)."""
        return out

    def predict_kwargs(self) -> dict:
        """What the model's predict takes besides (x, t, conditioning): nothing here."""
        return {}


@dataclass(frozen=True)
class NoGuidance(Guidance):
    """No guidance: one branch; a scale other than 1 is refused (the model has nothing to guide with)."""

    name: ClassVar[str] = "none"

    def __post_init__(self):
        super().__post_init__()
        if self.scale != 1.0:
            raise ParameterError(f"this model takes no guidance: guidance_scale must be 1, got {self.scale:g}")


@dataclass(frozen=True)
class ClassifierFree(Guidance):
    """Classifier-free guidance (Ho & Salimans 2022): the unconditional branch batched first, combined with
    Eq. 6; at scale 1 that is the conditional branch alone, which runs alone."""

    name: ClassVar[str] = "classifier-free"

    @property
    def branches(self) -> int:
        return 1 if self.scale == 1.0 else 2

    def conditioning(self, cond: Conditioning, uncond: Conditioning | None = None) -> Conditioning:
        if self.branches == 1:
            return cond
        if uncond is None:
            raise ParameterError("classifier-free guidance needs the unconditional branch's conditioning")
        return Conditioning.cat([uncond.expand(len(cond)), cond])

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] * 2) if self.branches == 2 else x

    def combine(self, out: torch.Tensor) -> torch.Tensor:
        return self.guide(*out.chunk(2)) if self.branches == 2 else out

    def guide(self, out_uncond: torch.Tensor, out_cond: torch.Tensor) -> torch.Tensor:
        """The guided output from the two branches' outputs, each (n, C, h, w) (Eq. 6, :func:`classifier_free`)."""
        return classifier_free(out_uncond, out_cond, self.scale)


@dataclass(frozen=True)
class EmbeddedGuidance(Guidance):
    """Guidance-distilled models (FLUX.1-dev's kind) take the scale as an input: one branch, and the model's
    predict gets ``guidance=scale``."""

    name: ClassVar[str] = "embedded"

    def predict_kwargs(self) -> dict:
        return {"guidance": self.scale}


def require_classifier_free(guidance: Guidance, what: str) -> ClassifierFree:
    """``guidance`` when it is classifier-free; else a ParameterError saying that ``what`` needs it."""
    if not isinstance(guidance, ClassifierFree):
        raise ParameterError(f"{what} needs classifier-free guidance (an unconditional branch to replace), but "
                             f"this model's guidance is {guidance.name}")
    return guidance
