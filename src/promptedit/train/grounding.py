"""Token grounding for the embedded model's training: a loss that ties each word's cross-attention to the
pixels the word names, from the renderer's exact masks (after TokenCompose, Wang et al., "TokenCompose:
Text-to-Image Diffusion with Token-level Supervision", CVPR 2024, the grounding term L_token).

Why: every method of this project reads or injects cross-attention maps, and they work on Stable Diffusion
because its maps localise words. A small model trained for a few CPU hours on the denoising loss alone
learns near-uniform cross-attention (every word's map ≈ every other's, cosine ≥ 0.98), so attention
carries no layout to inject and no mask to read. The shapes world knows, for every caption word, which
pixels it describes; this loss asks each grounded word's attention mass to fall inside them:

    L_token = mean over grounded (sample, word) and cross-attention layers of (1 − Σ_u A_u·M_u / Σ_u A_u)²

where A is the word's map (mean over heads) and M its region's mask pooled to the layer's resolution.
Each sample's terms are weighted by √ᾱ_t, the signal amplitude of its x_t (our choice, not TokenCompose's):
where x_t is nearly pure noise the layout cannot be known, so the loss asks little there.
Grounded words: an object's size, texture, colour and shape words → that object's mask; the background's
colour word and ``background`` → the pixels no object covers. Articles, ``and``, ``on``, styles and
``at night`` are left free. Nothing here imports diffusers: maps come from the project's own attention
hooks (:class:`GroundingRecorder` is an :class:`~promptedit.control.AttentionControl`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.base import AttentionSite
from ..control import AttentionControl
from ..world import spec

_OBJECT_WORDS = frozenset(spec.SIZES) | frozenset(spec.TEXTURES) | frozenset(spec.COLOURS) | frozenset(spec.SHAPES)
BACKGROUND = -1  # region index of the background (pixels no object covers)


def word_regions(caption: str) -> list[int | None]:
    """For each word of a world caption: the index of the object it describes, :data:`BACKGROUND`, or None.

    Objects are numbered in caption order (``and`` starts the second); after ``on`` the colour word and
    ``background`` name the background; ``at night`` and style prefixes are not grounded.
    """
    regions: list[int | None] = []
    obj, state = 0, "objects"  # objects → background (after "on") → free (after "at")
    for word in caption.split():
        if word == "and" and state == "objects":
            obj += 1
        elif word == "on":
            state = "background"
        elif word == "at":
            state = "free"
        if state == "objects" and word in _OBJECT_WORDS:
            regions.append(obj)
        elif state == "background" and (word in spec.BACKGROUNDS or word == "background"):
            regions.append(BACKGROUND)
        else:
            regions.append(None)
    return regions


def grounding_targets(captions: Sequence[str], masks: Sequence[np.ndarray], num_keys: int, first: int = 1
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token region masks for a batch. Word i of a caption is token i + ``first`` (1: after CLIP's start
    token; 0: T5, which has none); every world word is one token of the recipe's tokenizers (checked by their
    builders).

    captions: B strings ("" for a dropped caption: nothing grounded); masks: B arrays bool (n_objects, H, W).
    Returns regions (B, num_keys, H, W) float and grounded (B, num_keys) bool.
    """
    h, w = masks[0].shape[-2:]
    regions = torch.zeros(len(captions), num_keys, h, w)
    grounded = torch.zeros(len(captions), num_keys, dtype=torch.bool)
    for b, (caption, m) in enumerate(zip(captions, masks)):
        if not caption:
            continue
        objects = torch.from_numpy(np.asarray(m, dtype=bool))  # (n_objects, H, W)
        background = ~objects.any(0)
        for i, r in enumerate(word_regions(caption)):
            k = i + first
            if r is None or k >= num_keys - 1:  # the last key is the end token at the longest
                continue
            area = background if r == BACKGROUND else objects[r]
            if area.any():
                regions[b, k] = area.float()
                grounded[b, k] = True
    return regions, grounded


def pooled_regions(maps: Sequence[torch.Tensor], regions: torch.Tensor) -> list[torch.Tensor]:
    """``regions`` (B, keys, H, W) pooled to each map's square layer resolution: (B, keys, pixels) per map,
    pooled once per resolution."""
    by_side: dict[int, torch.Tensor] = {}
    out = []
    for a in maps:  # (B, pixels, keys)
        side = int(round(a.shape[1] ** 0.5))
        if side not in by_side:
            by_side[side] = F.adaptive_avg_pool2d(regions.to(a), side).flatten(2)
        out.append(by_side[side])
    return out


def token_grounding_loss(maps: Sequence[torch.Tensor], regions: torch.Tensor, grounded: torch.Tensor,
                         sample_weight: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """L_token (TokenCompose, Eq. 3), averaged over layers: maps are (B, pixels, keys) cross-attention
    probabilities (mean over heads) of square layers; regions (B, keys, H, W); grounded (B, keys);
    sample_weight (B,) scales each sample's terms (the mean is over grounded words, unweighted)."""
    if not maps:
        raise ValueError("no cross-attention maps were recorded")
    weight = grounded.to(maps[0].dtype)
    total = weight.sum().clamp_min(1.0)
    if sample_weight is not None:
        weight = weight * sample_weight.to(weight)[:, None]
    losses = []
    for a, m in zip(maps, pooled_regions(maps, regions)):  # m: (B, keys, pixels)
        a = a.transpose(1, 2)  # (B, keys, pixels)
        inside = (a * m).sum(-1) / a.sum(-1).clamp_min(eps)  # (B, keys): fraction of the word's mass inside
        losses.append(((1 - inside) ** 2 * weight).sum() / total)
    return torch.stack(losses).mean()


def word_mass_loss(maps: Sequence[torch.Tensor], regions: torch.Tensor, grounded: torch.Tensor,
                   sample_weight: torch.Tensor | None = None, floor: float = 0.5) -> torch.Tensor:
    """Word-mass term (ours): at every pixel, the attention mass on the words that describe that pixel should be
    at least ``floor``, averaged over layers: mean over captioned pixels of max(0, floor − Σ_k A_uk·M_ku)².

    L_token is blind to how much mass a word gets (it normalises each map), and a small model satisfies it
    while reading the caption from the padding tokens, which a causal text encoder fills with the whole
    caption (measured on the first grounded model: 60–80 % of every object pixel's mass on padding, 0.1 % on
    the object's words). Attention edits act on the words' maps, so the words must carry the mass.
    Shapes as :func:`token_grounding_loss`; the floor leaves room for the start, end and padding tokens.
    """
    if not maps:
        raise ValueError("no cross-attention maps were recorded")
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"the word-mass floor must be in (0, 1], got {floor}")
    keep = grounded.to(maps[0].dtype)[:, :, None]  # (B, keys, 1)
    losses = []
    for a, m in zip(maps, pooled_regions(maps, regions)):  # a: (B, pixels, keys); m: (B, keys, pixels)
        m = m * keep  # the grounded words' regions only
        cover = m.amax(1)  # (B, pixels): each pixel's coverage by grounded words
        own = torch.einsum("bpk,bkp->bp", a, m)  # (B, pixels): mass on the words that describe the pixel
        short = F.relu(floor * cover - own) ** 2
        if sample_weight is not None:
            short = short * sample_weight.to(short)[:, None]
        losses.append(short.sum() / cover.sum().clamp_min(1.0))
    return torch.stack(losses).mean()


class GroundingRecorder(AttentionControl):
    """Keeps every cross-attention map of a forward pass (mean over heads, gradients intact) for the loss;
    the probabilities themselves are used unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.maps: list[torch.Tensor] = []  # each (B, pixels, keys)

    def begin_step(self, step: int) -> None:
        super().begin_step(step)
        self.maps = []

    def wants(self, site: AttentionSite) -> bool:
        return site.is_cross

    def forward(self, attn: torch.Tensor, site: AttentionSite) -> torch.Tensor:
        self.maps.append(attn.mean(1))  # (B, pixels, keys)
        return attn
