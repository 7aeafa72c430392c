"""Attention control: controllers decide what happens to attention probabilities.

Prompt-to-Prompt (Hertz et al., ICLR 2023) edits an image by editing the
cross-attention maps M_t of the UNet while denoising the edited prompt. This
module holds the controllers, as pure torch with no diffusers import: the
attention processors of :mod:`promptedit.hooks` compute probabilities and hand
them here; a controller returns the tensor the processor must use.

Conventions:
    * ``attn``: attention probabilities of the conditional branch,
      ``(n_prompts, heads, pixels, keys)``; prompt 0 is the source, 1.. the targets.
    * ``pixels``: spatial positions of the layer; ``downsample`` is how many times
      smaller the layer's side is than the latent's (1, 2, 4, 8 …), so limits
      are relative to the latent size and work for any image size and SD 2.x.
    * steps are indices ``0 .. num_steps-1`` of the denoising loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ParameterError

PLACES = ("down", "mid", "up")


@dataclass(frozen=True)
class AttentionLayer:
    """Where an attention layer sits in the UNet.

    Attributes:
        name: diffusers' module path, e.g. ``up_blocks.1.attentions.0.transformer_blocks.0.attn2``.
        place: ``"down"``, ``"mid"`` or ``"up"``.
        is_cross: True for cross-attention (``attn2``: pixels attend to prompt tokens).
    """

    name: str
    place: str
    is_cross: bool


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


# ----------------------------------------------------------------------------- schedules


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


# ----------------------------------------------------------------------------- base


class AttentionControl:
    """Base controller: the identity. Subclasses override :meth:`wants` and :meth:`forward`.

    The denoising loop calls :meth:`begin` once, :meth:`begin_step` before each
    UNet evaluation and :meth:`step_callback` on x_t after each scheduler step;
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
    def downsample(self, pixels: int) -> int:
        """How many times smaller a layer of ``pixels`` positions is than the latent, per side."""
        h, w = self.latent_size
        if h * w == 0:
            raise RuntimeError("controller used before begin()")
        return max(1, round(math.sqrt(h * w / pixels)))

    def layer_shape(self, pixels: int) -> tuple[int, int]:
        f = self.downsample(pixels)
        return self.latent_size[0] // f, self.latent_size[1] // f

    def wants(self, layer: AttentionLayer, pixels: int) -> bool:
        """Whether this layer needs explicit attention probabilities at the current step."""
        return False

    def value_edit(self, layer: AttentionLayer, pixels: int) -> ValueEdit | None:
        """For a layer this controller :meth:`wants`: its edit as a :class:`ValueEdit` when it is linear
        and needs no probabilities otherwise, so the processor can keep the fused kernel; None means
        the processor computes explicit probabilities and calls :meth:`__call__`."""
        return None

    def forward(self, attn: torch.Tensor, layer: AttentionLayer, pixels: int) -> torch.Tensor:
        """Edit the conditional branch's probabilities (n_prompts, heads, pixels, keys); return the result."""
        return attn

    def __call__(self, attn: torch.Tensor, layer: AttentionLayer, pixels: int) -> torch.Tensor:
        """``attn``: (batch, heads, pixels, keys) where batch is n_prompts, or 2·n_prompts with the
        unconditional branch first (classifier-free guidance). Only the conditional part is controlled."""
        n = self.n_prompts
        if attn.shape[0] == n:
            return self.forward(attn, layer, pixels)
        if attn.shape[0] == 2 * n:
            return torch.cat([attn[:n], self.forward(attn[n:], layer, pixels)])
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

    def wants(self, layer: AttentionLayer, pixels: int) -> bool:
        return any(c.wants(layer, pixels) for c in self.controllers)

    def value_edit(self, layer: AttentionLayer, pixels: int) -> ValueEdit | None:
        wanting = [c for c in self.controllers if c.wants(layer, pixels)]
        return wanting[0].value_edit(layer, pixels) if len(wanting) == 1 else None

    def forward(self, attn: torch.Tensor, layer: AttentionLayer, pixels: int) -> torch.Tensor:
        for c in self.controllers:
            if c.wants(layer, pixels):
                attn = c.forward(attn, layer, pixels)
        return attn


# ----------------------------------------------------------------------------- store


class AttentionStore(AttentionControl):
    """Records attention maps, averaged over heads, summed over steps and the layers of a resolution.

    Args:
        cross: record cross-attention maps.
        self_attention: record self-attention maps (pixels × pixels: costly at high resolution).
        downsamples: the layer resolutions to record, as downsample factors; None records all.
        places: the UNet parts to record from.
        steps: optional (start, end) step indices to record; None records every step.
    """

    def __init__(
        self,
        *,
        cross: bool = True,
        self_attention: bool = False,
        downsamples: Iterable[int] | None = None,
        places: Iterable[str] = PLACES,
        steps: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.cross = cross
        self.self_attention = self_attention
        self.downsamples = None if downsamples is None else frozenset(int(f) for f in downsamples)
        self.places = frozenset(places)
        self.steps = steps
        self.sums: dict[tuple[bool, str, int], torch.Tensor] = {}  # (is_cross, place, f) -> (n, pixels, keys)
        self.counts: dict[tuple[bool, str, int], int] = {}

    def begin(self, **kwargs) -> None:
        super().begin(**kwargs)
        self.sums, self.counts = {}, {}

    def wants(self, layer: AttentionLayer, pixels: int) -> bool:
        if not (self.cross if layer.is_cross else self.self_attention) or layer.place not in self.places:
            return False
        if self.steps is not None and not (self.steps[0] <= self.cur_step < self.steps[1]):
            return False
        return self.downsamples is None or self.downsample(pixels) in self.downsamples

    def forward(self, attn: torch.Tensor, layer: AttentionLayer, pixels: int) -> torch.Tensor:
        key = (layer.is_cross, layer.place, self.downsample(pixels))
        mean = attn.detach().float().mean(1)  # (n, pixels, keys)
        if key in self.sums:
            self.sums[key] += mean
            self.counts[key] += 1
        else:
            self.sums[key] = mean.clone()
            self.counts[key] = 1
        return attn

    def available(self, *, is_cross: bool = True) -> list[tuple[str, int]]:
        """The (place, downsample) pairs recorded so far."""
        return sorted((p, f) for (c, p, f) in self.sums if c == is_cross)

    def maps(
        self, *, is_cross: bool = True, downsample: int, places: Iterable[str] = ("down", "up")
    ) -> torch.Tensor:
        """Average map over steps, layers and heads: (n_prompts, h, w, keys).

        Raises ValueError naming the recorded resolutions when none matches.
        """
        keys = [k for k in self.sums if k[0] == is_cross and k[1] in set(places) and k[2] == downsample]
        if not keys:
            have = sorted({f for (c, _, f) in self.sums if c == is_cross})
            kind = "cross" if is_cross else "self"
            raise ParameterError(
                f"no {kind}-attention maps recorded at 1/{downsample} of the latent size; recorded: "
                + (", ".join(f"1/{f}" for f in have) or "none")
            )
        total = sum(self.sums[k] for k in keys)
        count = sum(self.counts[k] for k in keys)
        avg = total / count  # (n, pixels, keys)
        h, w = self.latent_size[0] // downsample, self.latent_size[1] // downsample
        return avg.reshape(avg.shape[0], h, w, avg.shape[-1])


# ----------------------------------------------------------------------------- local blend


class LocalBlend:
    """Local blending (Sec. 3.2): keep x_t of the source outside the edited words' attention.

    At each step from ``start_step`` on, the cross-attention maps of the chosen
    words (at layers of ``downsample``) give a mask per prompt; x_t of each
    target becomes ``x_t[0] + mask · (x_t - x_t[0])``. The maps are summed over every
    step so far, from step 0 (the running sum of the paper code's attention store):
    the maps of the current step alone change the edit (measured on the embedded
    model's local-blend benchmark: PSNR over the other object 77.1 dB with the current
    step's maps, 79.9 dB with the running sum).

    Args:
        word_alphas: (n_prompts, keys), 1 at the tokens of the blend words of each prompt.
        subtract_alphas: optional (n_prompts, keys) for words whose region is removed from the mask.
        threshold: mask threshold on the max-normalised map (paper code: 0.3).
        subtract_threshold: threshold for the subtracted words' mask.
        start_step: first step at which blending happens.
        downsample: layer resolution used, relative to the latent (paper: 16×16 of 64×64 → 4).
        places: UNet parts whose maps are used (paper: down and up).
        pool_size: max-pool window applied to the map before thresholding (paper: 3).
        propagation: how many times the words' map is carried along the self-attention of the same layers
            (``m ← S m``, S the head-averaged self-attention summed like the maps; 0 in the paper). A word's
            map can light only part of a large object (a colour word on the edge of a big square); each
            pixel then takes the words' attention of the pixels it attends to, which are its object's
            (self-attention exponentiation, Nguyen et al., "Dataset Diffusion", NeurIPS 2023).
    """

    def __init__(
        self,
        word_alphas: torch.Tensor,
        *,
        subtract_alphas: torch.Tensor | None = None,
        threshold: float = 0.3,
        subtract_threshold: float = 0.3,
        start_step: int = 0,
        downsample: int = 4,
        places: Iterable[str] = ("down", "up"),
        pool_size: int = 3,
        propagation: int = 0,
    ):
        if word_alphas.ndim != 2:
            raise ParameterError("local blend word alphas must be (n_prompts, keys)")
        if pool_size < 1 or pool_size % 2 == 0:
            raise ParameterError(f"local blend pool size must be odd and positive, got {pool_size}")
        self.word_alphas = word_alphas.float()
        self.subtract_alphas = None if subtract_alphas is None else subtract_alphas.float()
        self.threshold = float(threshold)
        self.subtract_threshold = float(subtract_threshold)
        self.start_step = int(start_step)
        self.downsample = int(downsample)
        self.places = frozenset(places)
        self.pool_size = int(pool_size)
        if isinstance(propagation, bool) or not isinstance(propagation, int) or not 0 <= propagation <= 10:
            raise ParameterError(f"local blend propagation must be a whole number in [0, 10], got {propagation!r}")
        self.propagation = propagation
        self._sum: torch.Tensor | None = None  # (n, pixels, keys): summed over every layer and step so far
        self._count = 0
        self._self_sum: torch.Tensor | None = None  # (n, pixels, pixels): self-attention, likewise (propagation)
        self._shape: tuple[int, int] = (0, 0)
        self.last_mask: torch.Tensor | None = None  # (n, 1, H, W) of the last blend

    def reset(self) -> None:
        self._sum, self._count, self._self_sum, self.last_mask = None, 0, None, None

    def wants(self, layer: AttentionLayer, downsample: int, step: int) -> bool:
        # every step, from 0: the running sum counts the steps before blending starts too
        if layer.place not in self.places or downsample != self.downsample:
            return False
        return layer.is_cross or self.propagation > 0

    def observe(self, attn: torch.Tensor, shape: tuple[int, int], is_cross: bool = True) -> None:
        """Add one layer's maps (n, heads, pixels, keys) of the current step to the sum (self-attention's, with
        keys = pixels, to its own sum)."""
        mean = attn.detach().float().mean(1)
        if not is_cross:
            self._self_sum = mean if self._self_sum is None else self._self_sum + mean
            return
        self._sum = mean if self._sum is None else self._sum + mean
        self._count += 1
        self._shape = shape

    def _mask(self, maps: torch.Tensor, alphas: torch.Tensor, threshold: float, pool: bool, size) -> torch.Tensor:
        # maps: (n, h, w, keys) -> (n, 1, H, W) bool
        m = (maps * alphas.to(maps.device)[:, None, None, :]).sum(-1)[:, None]
        if self.propagation and self._self_sum is not None:
            n, _, h, w = m.shape
            flat = m.reshape(n, h * w, 1)  # (n, pixels, 1)
            for _ in range(self.propagation):  # m ← S m; S's rows sum to the layers' count: the max-norm removes it
                flat = self._self_sum @ flat
            m = flat.reshape(n, 1, h, w)
        if pool:
            k = self.pool_size
            m = F.max_pool2d(m, k, stride=1, padding=k // 2)
        m = F.interpolate(m, size=size)
        m = m / m.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        return m > threshold

    def mask(self, size: tuple[int, int]) -> torch.Tensor | None:
        """The blend mask (n, 1, H, W), union with the source's, from the maps summed so far; None before any."""
        if self._sum is None:
            return None
        maps = (self._sum / self._count).reshape(self._sum.shape[0], *self._shape, self._sum.shape[-1])
        mask = self._mask(maps, self.word_alphas, self.threshold, True, size)
        mask = mask[:1] | mask
        if self.subtract_alphas is not None:
            mask = mask & ~self._mask(maps, self.subtract_alphas, self.subtract_threshold, False, size)
        return mask

    def __call__(self, x_t: torch.Tensor, step: int) -> torch.Tensor:
        """Blend x_t (n, C, H, W) with the source's x_t[0] outside the mask."""
        if step < self.start_step:
            return x_t
        if self._sum is None:
            raise ParameterError(
                f"local blend saw no cross-attention maps at 1/{self.downsample} of the latent size "
                f"in {', '.join(sorted(self.places))} blocks; choose a resolution this UNet has"
            )
        mask = self.mask(tuple(x_t.shape[2:]))
        self.last_mask = mask
        return blend_latents(x_t, mask)


def blend_latents(x_t: torch.Tensor, mask: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """x_t ← base + mask · (x_t − base) for a binary mask broadcast over x_t (n, C, H, W): exactly x_t inside the
    mask and ``base`` outside. Prompt-to-Prompt's local blending takes the source's x_t[0] as the base (the
    default); mask-guided edits the noised source."""
    return torch.where(mask.bool(), x_t, x_t[:1] if base is None else base)


# ----------------------------------------------------------------------------- edits


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

    def _self_on(self, pixels: int) -> bool:
        s, e = self.self_replace_steps
        return s <= self.cur_step < e and self.downsample(pixels) >= self.self_replace_min_downsample

    def _blend_wants(self, layer: AttentionLayer, pixels: int) -> bool:
        return self.local_blend is not None and self.local_blend.wants(layer, self.downsample(pixels), self.cur_step)

    def wants(self, layer: AttentionLayer, pixels: int) -> bool:
        if layer.is_cross:
            return self._cross_on[self.cur_step] or self._blend_wants(layer, pixels)
        return self._self_on(pixels) or self._blend_wants(layer, pixels)

    def value_edit(self, layer: AttentionLayer, pixels: int) -> ValueEdit | None:
        if not self.fused or self._blend_wants(layer, pixels):  # local blend needs this layer's maps
            return None
        if layer.is_cross:
            return self._step_edit  # None outside the injection window (see begin_step)
        return ValueEdit() if self._self_on(pixels) else None  # targets take the source's maps

    def replace_cross_attention(self, attn_base: torch.Tensor, attn_replace: torch.Tensor) -> torch.Tensor:
        """Edit(M_t, M*_t): source maps (heads, pixels, keys), target maps (n_t, heads, pixels, keys)
        → new target maps (n_t, heads, pixels, keys)."""
        raise NotImplementedError

    def forward(self, attn: torch.Tensor, layer: AttentionLayer, pixels: int) -> torch.Tensor:
        attn_base, attn_replace = attn[0], attn[1:]
        if layer.is_cross:
            if self._cross_on[self.cur_step]:
                alpha = self.cross_alpha[self.cur_step].to(attn.device, attn.dtype)[:, None, None, :]
                edited = self.replace_cross_attention(attn_base, attn_replace)
                attn = torch.cat([attn_base[None], alpha * edited + (1 - alpha) * attn_replace])
        elif self._self_on(pixels):
            attn = attn_base[None].expand_as(attn)
        if self._blend_wants(layer, pixels):
            self.local_blend.observe(attn, self.layer_shape(pixels), layer.is_cross)
        return attn

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        if self.local_blend is not None:
            return self.local_blend(x_t, self.cur_step)
        return x_t


class AttentionReplace(AttentionEdit):
    """Word swap: M*_t ← M_t through the replacement mapper, ``target = source @ mapper``.

    Args:
        mapper: (n_targets, keys, keys) from :func:`promptedit.seq_aligner.get_replacement_mapper`.
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
