"""Prompt-to-Prompt's edits (Hertz et al., ICLR 2023): the source's attention maps injected into each target's.

Prompt-to-Prompt edits an image by editing the cross-attention maps M_t while denoising the edited prompt:
word swap (:class:`AttentionReplace`), adding a phrase (:class:`AttentionRefine`), re-weighting
(:class:`AttentionReweight`), on the schedule :func:`cross_replace_alpha`.
"""

from __future__ import annotations

from collections.abc import Sequence

from typing import TYPE_CHECKING

import torch

from ..errors import ParameterError
from .base import AttentionControl, ValueEdit, step_window
from .blend import LocalBlend

if TYPE_CHECKING:
    from ..backbones.base import AttentionSite


def cross_replace_alpha(
    num_steps: int,
    n_targets: int,
    max_len: int,
    window: float | tuple[float, float],
    token_windows: Sequence[dict[int, float | tuple[float, float]]] | None = None,
) -> torch.Tensor:
    """Cross-attention injection schedule τ (Sec. 3.2): 1 where a target token takes the source's map.

    Returns alpha of shape (num_steps, n_targets, max_len). ``window`` applies to
    every token; ``token_windows[k]`` overrides it for some token positions of target k.
    """
    alpha = torch.zeros(num_steps, n_targets, max_len)
    start, end = step_window(window, num_steps)
    alpha[start:end] = 1.0
    for k, windows in enumerate(token_windows or []):
        for token, w in windows.items():
            s, e = step_window(w, num_steps)
            alpha[:, k, token] = 0.0
            alpha[s:e, k, token] = 1.0
    return alpha


class AttentionEdit(AttentionControl):
    """Base of Prompt-to-Prompt edits: inject the source's maps into each target.

    Cross-attention: ``M*_t ← Edit(M_t, M*_t, t)`` where ``alpha`` is 1, blended per
    token: ``alpha · Edit + (1 − alpha) · M*_t``. Self-attention: targets take the
    source's maps during the self-replace window, at layers at most
    ``1/self_replace_min_downsample`` of the latent size (paper code: 16×16 of 64×64).

    Args:
        cross_alpha: (num_steps, n_targets, keys) injection schedule, see :func:`cross_replace_alpha`.
        self_replace_steps: [start, end) step indices of self-attention injection.
        self_replace_min_downsample: only layers at least this many times smaller than the latent.
        local_blend: optional :class:`LocalBlend`.
        fused: apply linear edits through the values (:class:`ValueEdit`) so the layer keeps its
            fused attention kernel; False computes explicit probabilities everywhere (same result).
    """

    def __init__(
        self,
        cross_alpha: torch.Tensor,
        *,
        self_replace_steps: tuple[int, int] = (0, 0),
        self_replace_min_downsample: int = 4,
        local_blend: LocalBlend | None = None,
        fused: bool = True,
    ):
        super().__init__()
        if cross_alpha.ndim != 3:
            raise ParameterError("cross_alpha must be (num_steps, n_targets, keys)")
        self.cross_alpha = cross_alpha.float()
        self.self_replace_steps = (int(self_replace_steps[0]), int(self_replace_steps[1]))
        self.self_replace_min_downsample = int(self_replace_min_downsample)
        self.local_blend = local_blend
        self.fused = bool(fused)
        self._cross_on = cross_alpha.flatten(1).any(1).tolist()  # per step, computed once
        self._step_edit: ValueEdit | None = None  # this step's cross-attention ValueEdit (see begin_step)

    def begin(self, **kwargs) -> None:
        super().begin(**kwargs)
        if self.cross_alpha.shape[0] != self.num_steps:
            raise ParameterError(
                f"the cross-attention schedule has {self.cross_alpha.shape[0]} steps, the run {self.num_steps}"
            )
        if self.n_prompts != self.cross_alpha.shape[1] + 1:
            raise ParameterError(
                f"the edit is for {self.cross_alpha.shape[1]} target(s); the run has {self.n_prompts - 1}"
            )
        if self.local_blend is not None:
            self.local_blend.reset()

    def begin_step(self, step: int) -> None:
        super().begin_step(step)
        self._step_edit = None
        if self.fused and 0 <= step < self.num_steps and self._cross_on[step]:
            linear = self.linear_cross_edit()
            if linear is not None:
                # α · Edit + (1 − α) · P_k with Edit = P_0 A + P_k diag(b): scale A's columns by α, b by α, add 1 − α
                mix, keep = linear
                alpha = self.cross_alpha[step]  # (n_t, keys)
                keep = keep * alpha + (1 - alpha)
                edit = ValueEdit(mix * alpha[:, None, :], keep if keep.any() else None)
                self._step_edit = edit.to(self.device, self.dtype)  # once per step, not per layer

    def linear_cross_edit(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Edit(M_t, M*_t) as ``P_0 · A_k + P_k · diag(b_k)``: (A (n_t, keys, keys), b (n_t, keys)),
        or None when the edit is not linear in the maps (then probabilities are computed explicitly)."""
        return None

    def _self_on(self, site: AttentionSite) -> bool:
        s, e = self.self_replace_steps
        return s <= self.cur_step < e and site.grid >= self.self_replace_min_downsample

    def _blend_wants(self, site: AttentionSite) -> bool:
        return self.local_blend is not None and self.local_blend.wants(site)

    def wants(self, site: AttentionSite) -> bool:
        if site.is_cross:
            return self._cross_on[self.cur_step] or self._blend_wants(site)
        return self._self_on(site) or self._blend_wants(site)

    def value_edit(self, site: AttentionSite) -> ValueEdit | None:
        if not self.fused or self._blend_wants(site):  # local blend needs this layer's maps
            return None
        if site.is_cross:
            return self._step_edit  # None outside the injection window (see begin_step)
        return ValueEdit() if self._self_on(site) else None  # targets take the source's maps

    def injects_source(self, site: AttentionSite) -> bool:
        return not site.is_cross and self._self_on(site)

    def replace_cross_attention(self, attn_base: torch.Tensor, attn_replace: torch.Tensor) -> torch.Tensor:
        """Edit(M_t, M*_t): source maps (heads, pixels, keys), target maps (n_t, heads, pixels, keys)
        → new target maps (n_t, heads, pixels, keys)."""
        raise NotImplementedError

    def forward(self, attn: torch.Tensor, site: AttentionSite) -> torch.Tensor:
        attn_base, attn_replace = attn[0], attn[1:]
        if site.is_cross:
            if self._cross_on[self.cur_step]:
                alpha = self.cross_alpha[self.cur_step].to(attn.device, attn.dtype)[:, None, None, :]
                edited = self.replace_cross_attention(attn_base, attn_replace)
                attn = torch.cat([attn_base[None], alpha * edited + (1 - alpha) * attn_replace])
        elif self._self_on(site):
            attn = attn_base[None].expand_as(attn)
        if self._blend_wants(site):
            self.local_blend.observe(attn, self.grid_shape(site), site.is_cross)
        return attn

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        if self.local_blend is not None:
            return self.local_blend(x_t, self.cur_step)
        return x_t


class AttentionReplace(AttentionEdit):
    """Word swap: M*_t ← M_t through the replacement mapper, ``target = source @ mapper``.

    Args:
        mapper: (n_targets, keys, keys) from :func:`promptedit.text.alignment.get_replacement_mapper`.
    """

    def __init__(self, mapper: torch.Tensor, cross_alpha: torch.Tensor, **kwargs):
        super().__init__(cross_alpha, **kwargs)
        self.mapper = mapper.float()

    def replace_cross_attention(self, attn_base, attn_replace):
        # (heads, pixels, keys) × (n_t, keys, keys') -> (n_t, heads, pixels, keys')
        return torch.einsum("hpw,bwn->bhpn", attn_base, self.mapper.to(attn_base.device, attn_base.dtype))

    def linear_cross_edit(self):
        return self.mapper, torch.zeros(self.mapper.shape[:2])


class AttentionRefine(AttentionEdit):
    """Adding a phrase: aligned target tokens take the source's maps; new tokens keep their own.

    Args:
        mapper: (n_targets, keys) int64 source position for each target position.
        alphas: (n_targets, keys) 1 for aligned tokens, 0 for added ones.
    """

    def __init__(self, mapper: torch.Tensor, alphas: torch.Tensor, cross_alpha: torch.Tensor, **kwargs):
        super().__init__(cross_alpha, **kwargs)
        self.mapper = mapper.long()
        self.alphas = alphas.float()

    def replace_cross_attention(self, attn_base, attn_replace):
        # attn_base[:, :, mapper]: (heads, pixels, n_t, keys) -> (n_t, heads, pixels, keys)
        mapped = attn_base[:, :, self.mapper.to(attn_base.device)].permute(2, 0, 1, 3)
        alphas = self.alphas.to(attn_base.device, attn_base.dtype)[:, None, None, :]
        return mapped * alphas + attn_replace * (1 - alphas)

    def linear_cross_edit(self):
        # A[k, mapper[k, j], j] = alphas[k, j]: aligned target token j reads the source's token mapper[k, j]
        n_t, keys = self.mapper.shape
        mix = torch.zeros(n_t, keys, keys)
        mix.scatter_(1, self.mapper.clamp_min(0)[:, None, :], self.alphas[:, None, :])
        return mix, 1 - self.alphas


class AttentionReweight(AttentionEdit):
    """Attention re-weighting: scale the chosen tokens' maps by c (negative c allowed).

    Composes on top of a replace or refine edit (``prev``), whose result is then scaled.

    Args:
        equalizer: (n_targets, keys), c at the chosen tokens and 1 elsewhere.
        prev: an optional :class:`AttentionEdit` applied first.
    """

    def __init__(self, equalizer: torch.Tensor, cross_alpha: torch.Tensor, *, prev: AttentionEdit | None = None, **kwargs):
        super().__init__(cross_alpha, **kwargs)
        self.equalizer = equalizer.float()
        self.prev = prev

    def replace_cross_attention(self, attn_base, attn_replace):
        if self.prev is not None:
            base = self.prev.replace_cross_attention(attn_base, attn_replace)  # (n_t, heads, pixels, keys)
        else:
            base = attn_base[None].expand_as(attn_replace)
        return base * self.equalizer.to(attn_base.device, attn_base.dtype)[:, None, None, :]

    def linear_cross_edit(self):
        if self.prev is not None:
            prev = self.prev.linear_cross_edit()
            if prev is None:
                return None
            mix, keep = prev
        else:
            n_t, keys = self.equalizer.shape
            mix, keep = torch.eye(keys).expand(n_t, keys, keys), torch.zeros(n_t, keys)
        return mix * self.equalizer[:, None, :], keep * self.equalizer
