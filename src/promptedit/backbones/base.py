"""The backbone interface: a denoiser as the runner sees it, and where its attention layers sit.

A :class:`Backbone` predicts from (x_t, t, conditioning), lists its :class:`AttentionSite` s, attaches an
attention controller and a feature injection (context managers that restore the model on exit), packs and
unpacks latents (a transformer packs 2×2 patches into tokens; a UNet takes them as they are) and says how
much memory a run needs. Controllers select attention sites by kind, grid and depth, never by a model's
module names, so a new architecture plugs in as a new backbone.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ParameterError

#: what an attention layer's keys are: cross (the text's tokens), self (the image's), joint (text then image)
KINDS = ("cross", "self", "joint")
#: where a site sits along the network: a UNet's encoder, middle and decoder; a transformer's blocks; other
PLACES = ("down", "mid", "up", "blocks", "other")
#: which keys of each kind are the text's and which the image's
KEYS_OF_KIND = {"cross": "text", "self": "image", "joint": "text+image"}


@dataclass(frozen=True)
class AttentionSite:
    """Where an attention layer sits, in terms every backbone has.

    Attributes:
        name: the layer's module path in its backbone (for messages; controllers never read it).
        kind: ``"cross"`` (image queries, text keys), ``"self"`` (image queries and keys) or ``"joint"`` (text
            and image tokens in one sequence, MM-DiT).
        grid: how many times smaller than the latent, per side, the layer's image tokens are (1, 2, 4 …);
            None for a layer that is not on the latent's grid (never controlled).
        place: ``"down"``, ``"mid"``, ``"up"`` (a UNet), ``"blocks"`` (a transformer) or ``"other"``.
        index: the block's index within its place (a UNet level, a transformer block).
    """

    name: str
    kind: str
    grid: int | None
    place: str
    index: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ParameterError(f"attention site {self.name!r}: kind must be one of {', '.join(KINDS)}, "
                                 f"got {self.kind!r}")
        if self.grid is not None and (isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 1
                                      or self.grid & (self.grid - 1)):
            raise ParameterError(f"attention site {self.name!r}: grid must be a power of two (1, 2, 4, …) or "
                                 f"None, got {self.grid!r}")
        if self.place not in PLACES:
            raise ParameterError(f"attention site {self.name!r}: place must be one of {', '.join(PLACES)}, "
                                 f"got {self.place!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ParameterError(f"attention site {self.name!r}: index must be a whole number >= 0, "
                                 f"got {self.index!r}")

    @property
    def keys(self) -> str:
        """Which keys are text and which image: ``"text"``, ``"image"`` or ``"text+image"`` (text first)."""
        return KEYS_OF_KIND[self.kind]

    @property
    def is_cross(self) -> bool:
        return self.kind == "cross"

    @property
    def reads_text(self) -> bool:
        """Whether image queries attend to text keys here (cross-attention, or a joint layer's cross view)."""
        return self.kind in ("cross", "joint")

    @property
    def on_grid(self) -> bool:
        """Whether the layer's image tokens lie on the latent's grid (only such sites are controlled)."""
        return self.grid is not None


@dataclass(frozen=True)
class AttachReport:
    """What :meth:`Backbone.attach` installed: controlled sites by kind."""

    cross_layers: int
    self_layers: int


class Backbone:
    """What the runner needs of a denoiser. Subclasses wrap one architecture (:class:`~promptedit.backbones.unet.
    UNetBackbone`).

    Attributes:
        module: the torch module (for moving, freezing, training and saving).
    """

    module: torch.nn.Module

    # ----------------------------------------------------------------- prediction
    def predict(self, x: torch.Tensor, t, conditioning, *, compiled: bool = False,
                guidance: float | None = None) -> torch.Tensor:
        """The model output (ε, v or x₀, per the scheduler's prediction type) for x (n, C, h, w) at timestep t;
        ``guidance``: the scale, for a guidance-distilled backbone that takes it as an input
        (:class:`~promptedit.guidance.EmbeddedGuidance`); others refuse it."""
        raise NotImplementedError

    def compile(self, **options) -> None:
        """Compile the module with ``torch.compile(**options)`` for the runs without attention control."""
        raise NotImplementedError

    # ----------------------------------------------------------------- attention
    def sites(self) -> list[AttentionSite]:
        """Every attention layer's site, in module order."""
        raise NotImplementedError

    def attach(self, controller) -> AbstractContextManager[AttachReport]:
        """Hand every on-grid site's attention to ``controller`` (a context manager restoring the model)."""
        raise NotImplementedError

    def inject_features(self, injector) -> AbstractContextManager[list[str]]:
        """Plug-and-Play feature injection (a context manager yielding the injected layers' names)."""
        raise NotImplementedError

    def block_depths(self) -> list[int]:
        """The depths (ascending) of the transformer blocks whose attention value injection can reach (the on-grid
        sites of place ``"blocks"``); empty for a UNet."""
        return sorted({s.index for s in self.sites() if s.place == "blocks" and s.on_grid})

    def default_value_blocks(self) -> list[int]:
        """Value injection's default block depths (:class:`~promptedit.control.ValueInjection`); a backbone without
        transformer blocks refuses value injection in one line."""
        raise ParameterError(f"value injection (--inject-values) replaces values in a transformer's blocks (FLUX.1, "
                             f"SD3); this model's {type(self).__name__} has none: on a UNet the source's "
                             "self-attention is injected with --self-replace, its features with --inject-features")

    #: whether the backbone runs a subset of an image's tokens against the others' cached keys and values
    #: (:meth:`kv_attention`, KV-Edit): a transformer over image tokens; a UNet's convolutions need every pixel
    token_subsets: bool = False

    def kv_attention(self, cache) -> AbstractContextManager[int]:
        """Run every attention layer under KV-Edit's ``cache`` (:class:`~promptedit.backbones.mmdit.KVCache`: record
        the background tokens' keys and values, or run the foreground against them; a context manager yielding
        the number of layers). Only where :attr:`token_subsets`."""
        raise ParameterError(f"KV-Edit runs a subset of the image's tokens in a transformer's joint attention "
                             f"(FLUX.1); this model's {type(self).__name__} cannot")

    def grids(self, *, kind: str = "cross", places=("down", "up", "blocks")) -> list[int]:
        """The grids (ascending) at which sites of ``kind`` in ``places`` sit (a joint site has both a cross and a
        self view)."""
        return sorted({s.grid for s in self.sites() if s.kind in (kind, "joint") and s.place in places and s.on_grid})

    # ----------------------------------------------------------------- latents
    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (n, C, h, w) as the module takes them (the identity for a convolutional backbone)."""
        return latents

    def unpack(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The module's output back to latents (n, C, h, w) of ``size`` (h, w)."""
        return x

    def image_seq_len(self, h: int, w: int) -> int:
        """Image tokens (positions) of a latent of h × w (a flow sampler's dynamic shift is read from it)."""
        return h * w

    @property
    def size_factor(self) -> int:
        """Latent sides must be multiples of this."""
        raise NotImplementedError

    @property
    def latent_channels(self) -> int:
        """Channels of x_t: what the backbone predicts (a diffusers model's ``out_channels``)."""
        return int(self.module.config.out_channels)

    @property
    def in_channels(self) -> int:
        """Channels the backbone takes (an inpainting UNet: latent, mask and masked image's latents)."""
        return int(self.module.config.in_channels)

    @property
    def native_size(self) -> int:
        """The latent side the model was trained at (a diffusers model's ``sample_size``)."""
        return int(self.module.config.sample_size)

    def estimate_memory(self, height: int, width: int, batch: int) -> int:
        """Rough peak bytes of the activations for ``batch`` branches with classifier-free guidance, on latents
        of ``height`` × ``width``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- placement
    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype


def nearest_grid(available, wanted: int) -> int:
    """The grid among ``available`` closest to ``wanted`` on a log scale (ties: the larger maps)."""
    return min(available, key=lambda f: (abs(math.log2(f) - math.log2(wanted)), f))


def value_edited_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, edit, n_prompts: int,
                           scale: float | None = None) -> torch.Tensor:
    """Attention (B, H, S, d) of q (B, H, N, d) over k, v (B, H, S, d) with a linear edit of the targets' maps
    applied through the values (:class:`~promptedit.control.ValueEdit`): target k's output is
    ``P_0 · (A_k V_k) + P_k · (b_k ⊙ V_k)`` from fused kernels. B is ``n_prompts``, or twice that with the
    unconditional rows first; the conditional rows are the source, then the targets."""
    batch = q.shape[0]
    n = n_prompts
    if batch not in (n, 2 * n):
        raise RuntimeError(f"attention batch {batch} does not match {n} prompts")
    src = batch - n  # the source's row in the conditional half; the targets follow it
    edit = edit.to(v.device, v.dtype)  # a no-op when the controller built it for this device
    v_t = v[src + 1:]  # (n_t, heads, keys, head_dim)
    v_mixed = v_t if edit.mix is None else torch.einsum("tij,thjd->thid", edit.mix, v_t)

    def with_source_rows(x):  # the targets read the source's queries and keys: P_0 in every target row
        return torch.cat([x[: src + 1], x[src: src + 1].expand(n - 1, *x.shape[1:])])

    out = F.scaled_dot_product_attention(with_source_rows(q), with_source_rows(k),
                                         torch.cat([v[: src + 1], v_mixed]), scale=scale)
    if edit.keep is not None:  # the targets' own maps, weighted per key
        own = F.scaled_dot_product_attention(q[src + 1:], k[src + 1:], edit.keep[:, None, :, None] * v_t, scale=scale)
        out = torch.cat([out[: src + 1], out[src + 1:] + own])
    return out
