"""The base controller, its composition, step windows and the value-edit form of a linear edit.

Conventions:
    * ``attn``: attention probabilities of the conditional branch,
      ``(n_prompts, heads, pixels, keys)``; prompt 0 is the source, 1.. the targets.
    * a controller is handed each layer's :class:`~promptedit.backbones.base.AttentionSite`; it selects layers
      by the site's kind, grid (how many times smaller the layer's side is than the latent's: 1, 2, 4, 8 …, so
      limits are relative to the latent size and work for any image size and SD 2.x) and place, never by
      module names.
    * steps are indices ``0 .. num_steps-1`` of the denoising loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from typing import TYPE_CHECKING

import torch

from ..errors import ParameterError

#: where maps may be recorded from: a UNet's encoder, middle and decoder, a transformer's blocks
PLACES = ("down", "mid", "up", "blocks")
#: whose maps are averaged into word maps (Prompt-to-Prompt: a UNet's encoder and decoder; a transformer's blocks)
MAP_PLACES = ("down", "up", "blocks")

if TYPE_CHECKING:
    from ..backbones.base import AttentionSite


@dataclass(frozen=True)
class ValueEdit:
    """A linear edit of the targets' probabilities, applied through the values so a fused kernel still runs.

    For each target k the edited probabilities are ``P*_k = P_0 · A_k + P_k · diag(b_k)``
    (P_0 the source's, P_k the target's own, rows are pixels, columns keys), so its
    attention output is ``P_0 · (A_k V_k) + P_k · (b_k ⊙ V_k)``: two softmax-attention
    calls with modified values, no explicit probabilities.

    Attributes:
        mix: A, (n_targets, keys, keys); None means the identity (self-attention injection).
        keep: b, (n_targets, keys); None means zero (the target's own maps are not used).
    """

    mix: torch.Tensor | None = None
    keep: torch.Tensor | None = None

    def to(self, device, dtype) -> "ValueEdit":
        return ValueEdit(
            None if self.mix is None else self.mix.to(device, dtype),
            None if self.keep is None else self.keep.to(device, dtype),
        )


@dataclass(frozen=True)
class SourceValues:
    """What the targets take from the source at a layer under value injection (:class:`~promptedit.control.values.
    ValueInjection`): its values, and its keys too with ``keys`` (Stable Flow); of the image tokens, and of the text
    tokens too with ``text`` (RF-Solver-Edit's and FireFlow's code replaces a single-stream block's whole V)."""

    keys: bool = False
    text: bool = False


def step_window(window: float | tuple[float, float], num_steps: int) -> tuple[int, int]:
    """Turn a window given as a fraction ``f`` (meaning ``(0, f)``) or a pair into step indices [start, end)."""
    if isinstance(window, (int, float)) and not isinstance(window, bool):
        start, end = 0.0, float(window)
    else:
        try:
            start, end = (float(v) for v in window)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ParameterError(f"a step window must be a fraction or a (start, end) pair, got {window!r}") from None
    if not (0.0 <= start <= end <= 1.0) or math.isnan(start) or math.isnan(end):
        raise ParameterError(f"a step window must satisfy 0 <= start <= end <= 1, got ({start}, {end})")
    # the fraction's steps, floored; the epsilon keeps float error from losing one (0.58 · 50 = 28.999…)
    return int(start * num_steps + 1e-9), int(end * num_steps + 1e-9)


class AttentionControl:
    """Base controller: the identity. Subclasses override :meth:`wants` and :meth:`forward`.

    The denoising loop calls :meth:`begin` once, :meth:`begin_step` before each
    backbone evaluation and :meth:`step_callback` on x_t after each scheduler step;
    processors call :meth:`wants` to learn whether a layer needs explicit
    probabilities at this step (if not, the fast fused kernel runs) and then
    :meth:`__call__`, whose returned tensor they use.
    """

    def __init__(self) -> None:
        self.num_steps = 0
        self.cur_step = 0
        self.latent_size: tuple[int, int] = (0, 0)
        self.n_prompts = 0
        self.device, self.dtype = torch.device("cpu"), torch.float32

    # lifecycle -----------------------------------------------------------
    def begin(
        self,
        *,
        num_steps: int,
        latent_size: tuple[int, int],
        n_prompts: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Start a run of ``num_steps`` steps on latents of ``latent_size`` (h, w) for ``n_prompts`` prompts,
        with the UNet's activations on ``device`` in ``dtype``."""
        self.device, self.dtype = torch.device(device), dtype
        self.num_steps = int(num_steps)
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.n_prompts = int(n_prompts)
        self.cur_step = 0

    def begin_step(self, step: int) -> None:
        self.cur_step = int(step)

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        """Called with x_t (n_prompts, C, h, w) after each scheduler step; returns the x_t to continue from."""
        return x_t

    # per layer -------------------------------------------------------------
    def grid_shape(self, site: AttentionSite) -> tuple[int, int]:
        """The (h, w) of a site's image tokens: the latent's sides divided by the site's grid."""
        h, w = self.latent_size
        if h * w == 0:
            raise RuntimeError("controller used before begin()")
        return h // site.grid, w // site.grid

    def wants(self, site: AttentionSite) -> bool:
        """Whether this layer needs explicit attention probabilities at the current step."""
        return False

    def value_edit(self, site: AttentionSite) -> ValueEdit | None:
        """For a layer this controller :meth:`wants`: its edit as a :class:`ValueEdit` when it is linear
        and needs no probabilities otherwise, so the processor can keep the fused kernel; None means
        the processor computes explicit probabilities and calls :meth:`__call__`."""
        return None

    def injects_source(self, site: AttentionSite) -> bool:
        """Whether, at this self-attention site and step, the targets take the source's maps (self-attention
        injection); a joint layer's image block is injected this way only, never read."""
        return False

    def source_values(self, site: AttentionSite) -> SourceValues | None:
        """Whether, at this site and step, each target's keys and values are replaced by its source's before the
        attention is computed (value injection, applied by the processor to both guidance halves), and which;
        None: not here. Independent of :meth:`wants`: a layer can take the source's values and be edited too."""
        return None

    def forward(self, attn: torch.Tensor, site: AttentionSite) -> torch.Tensor:
        """Edit the conditional branch's probabilities (n_prompts, heads, pixels, keys); return the result."""
        return attn

    def __call__(self, attn: torch.Tensor, site: AttentionSite) -> torch.Tensor:
        """``attn``: (batch, heads, pixels, keys) where batch is n_prompts, or 2·n_prompts with the
        unconditional branch first (classifier-free guidance). Only the conditional part is controlled."""
        n = self.n_prompts
        if attn.shape[0] == n:
            return self.forward(attn, site)
        if attn.shape[0] == 2 * n:
            return torch.cat([attn[:n], self.forward(attn[n:], site)])
        raise RuntimeError(f"attention batch {attn.shape[0]} does not match {n} prompts")


class Compose(AttentionControl):
    """Apply controllers in order (e.g. an edit, then a store that records the edited maps)."""

    def __init__(self, controllers: Iterable[AttentionControl]):
        super().__init__()
        self.controllers = [c for c in controllers if c is not None]

    def begin(self, **kwargs) -> None:
        super().begin(**kwargs)
        for c in self.controllers:
            c.begin(**kwargs)

    def begin_step(self, step: int) -> None:
        super().begin_step(step)
        for c in self.controllers:
            c.begin_step(step)

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        for c in self.controllers:
            x_t = c.step_callback(x_t)
        return x_t

    def wants(self, site: AttentionSite) -> bool:
        return any(c.wants(site) for c in self.controllers)

    def value_edit(self, site: AttentionSite) -> ValueEdit | None:
        wanting = [c for c in self.controllers if c.wants(site)]
        return wanting[0].value_edit(site) if len(wanting) == 1 else None

    def injects_source(self, site: AttentionSite) -> bool:
        return any(c.wants(site) and c.injects_source(site) for c in self.controllers)

    def source_values(self, site: AttentionSite) -> SourceValues | None:
        return next((v for v in (c.source_values(site) for c in self.controllers) if v is not None), None)

    def forward(self, attn: torch.Tensor, site: AttentionSite) -> torch.Tensor:
        for c in self.controllers:
            if c.wants(site):
                attn = c.forward(attn, site)
        return attn
