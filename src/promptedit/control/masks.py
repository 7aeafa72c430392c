"""Instant attention masks (Zou et al., "Towards Efficient Diffusion-Based Image Editing with Instant
Attention Masks", AAAI 2024), as pure torch: the mask maths and the controller that applies it.

While the edit text denoises the noised source, the cross-attention maps the UNet computes anyway
give the edited region: at the first step the (inverted) start-token map is the reference, the word most
similar to it (cosine) the anchor, and each word's similarity to the anchor sorts it into object
(≥ 0.9), background (≤ 0.6) or neither; at every step the mask is the min–max-normalised mean of
the object maps minus that of the background maps, clamped at 0, Gaussian-smoothed (5×5, twice),
normalised and binarised at φ (0.2); x_t is blended with the noised source outside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.base import AttentionSite
from . import AttentionControl, blend_latents
from .base import MAP_PLACES
from ..errors import ParameterError


def minmax(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Min–max normalisation over the last two dims (h, w)."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(eps)


def word_maps(maps: torch.Tensor, word_tokens: Sequence[Sequence[int]]) -> torch.Tensor:
    """Per-word maps: the mean over each word's tokens. maps (n, h, w, keys) → (n, words, h, w)."""
    return torch.stack([maps[..., list(toks)].mean(-1) for toks in word_tokens], dim=1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of maps over (h, w): a (..., h, w), b (..., h, w) → (...)."""
    return F.cosine_similarity(a.flatten(-2), b.flatten(-2), dim=-1)


@dataclass(frozen=True)
class WordSelection:
    """Mask refinement's choice of words (InstDiffEdit, Sec. 3.2): indices into the word list."""

    anchor: int
    objects: tuple[int, ...]
    background: tuple[int, ...]
    similarity: tuple[float, ...]  # each word's similarity to the anchor


def select_words(start_map: torch.Tensor, maps: torch.Tensor, *, object_threshold: float = 0.9,
                 background_threshold: float = 0.6, anchor_candidates: Sequence[int] | None = None) -> WordSelection:
    """Mask refinement's word selection (InstDiffEdit, Sec. 3.2, as the authors' code computes it): every map
    min–max normalised and the start-token map inverted (it is low where the objects are); the anchor is
    the word (among ``anchor_candidates``, default all) most similar to that reference; words ≥
    ``object_threshold`` similar to the anchor are the object, ≤ ``background_threshold`` the background.
    start_map (h, w), maps (W, h, w)."""
    reference = 1 - minmax(start_map)
    norm = minmax(maps)
    candidates = list(range(maps.shape[0])) if not anchor_candidates else [int(i) for i in anchor_candidates]
    anchor = candidates[int(cosine(norm[candidates], reference[None]).argmax())]
    sim = cosine(norm, norm[anchor][None])
    objects = tuple(int(i) for i in torch.nonzero(sim >= object_threshold).flatten())
    background = tuple(int(i) for i in torch.nonzero(sim <= background_threshold).flatten())
    return WordSelection(anchor, objects, background, tuple(float(v) for v in sim))


def edited_words(source_words: Sequence[str], target_words: Sequence[str]) -> list[int]:
    """Indices of the target's words that the edit inserted or replaced (word-level diff of the two texts)."""
    from difflib import SequenceMatcher

    ops = SequenceMatcher(a=list(source_words), b=list(target_words), autojunk=False).get_opcodes()
    return [j for tag, _, _, j0, j1 in ops if tag in ("replace", "insert") for j in range(j0, j1)]


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """A normalised (size, size) Gaussian kernel."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def smooth(x: torch.Tensor, *, size: int = 5, sigma: float = 1.0, times: int = 2) -> torch.Tensor:
    """Gaussian smoothing of maps (..., h, w), ``times`` times, reflect padding."""
    k = gaussian_kernel(size, sigma).to(x)[None, None]
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    for _ in range(times):
        y = F.conv2d(F.pad(y, (size // 2,) * 4, mode="reflect" if min(shape[-2:]) > size // 2 else "replicate"), k)
    return y.reshape(shape)


def instant_mask(maps: torch.Tensor, selection: WordSelection, *, threshold: float = 0.2, smooth_size: int = 5,
                 smooth_sigma: float = 1.0, smooth_times: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask of one step (InstDiffEdit, Eq. 4–5): maps (n, W, h, w) → (soft (n, h, w), binary (n, h, w))."""
    obj = minmax(maps[:, list(selection.objects)].mean(1))
    if selection.background:
        obj = obj - minmax(maps[:, list(selection.background)].mean(1))
    m = minmax(smooth(obj.clamp_min(0), size=smooth_size, sigma=smooth_sigma, times=smooth_times))
    return m, m > threshold


def upsample_soft(soft: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A soft mask (h, w) at ``size`` (H, W), bilinear."""
    return F.interpolate(soft[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def upsample_mask(soft: torch.Tensor, size: tuple[int, int], threshold: float) -> torch.Tensor:
    """The binary mask at ``size`` (e.g. the image's) from a soft mask (h, w): bilinear upsampling, then φ.
    Its edges fall inside the map's cells instead of on their borders (ours; the paper upsamples the binary
    mask)."""
    return upsample_soft(soft, size) > threshold


def refine_mask(soft: torch.Tensor, guide: torch.Tensor, *, radius: float, eps: float = 1e-4) -> torch.Tensor:
    """Edge-aware upsampling of a soft mask (h, w) to its guide image (3, H, W) in [0, 1]: bilinear, then the
    guided filter with the image as guide (He et al., "Guided Image Filtering", ECCV 2010, Sec. 4: feathering a
    coarse mask), so that the mask's edges move onto the image's. ``radius`` is in cells of the soft mask (one
    cell = H / h pixels); large windows run on a subsampled grid (He & Sun, "Fast Guided Filter", 2015).
    Returns the refined soft mask (H, W)."""
    from kornia.filters import guided_blur

    if radius <= 0:
        raise ParameterError(f"the refinement radius must be > 0 cells, got {radius}")
    if eps <= 0:
        raise ParameterError(f"the guided filter's eps must be > 0, got {eps}")
    size = tuple(guide.shape[-2:])
    up = upsample_soft(soft, size)[None, None]  # (1, 1, H, W)
    r = max(1, round(float(radius) * size[0] / soft.shape[-2]))  # pixels
    subsample = max(1, r // 8)  # keeps the box window at most ~17 pixels of the subsampled grid
    out = guided_blur(guide[None].float().to(up.device), up, 2 * r + 1, float(eps), subsample=subsample)
    return out[0, 0]


def image_soft_mask(soft: torch.Tensor, image: np.ndarray, *, guided_filter_radius: float = 0.0,
                    eps: float = 1e-4) -> torch.Tensor:
    """A soft mask (h, w) at the size of ``image`` (H, W, 3) uint8: bilinear, then (``guided_filter_radius`` > 0,
    in cells) the guided filter with the image as guide (:func:`refine_mask`). Returns (H, W)."""
    if guided_filter_radius <= 0:
        return upsample_soft(soft, image.shape[:2])
    guide = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1) / 255.0  # (3, H, W)
    return refine_mask(soft, guide, radius=guided_filter_radius, eps=eps)


def strongest_regions(soft: torch.Tensor, threshold: float, min_peak: float) -> torch.Tensor:
    """The binary mask ``soft > threshold`` (H, W), keeping only its connected regions (8-connected) whose peak
    reaches ``min_peak`` × the highest region's peak (ours; 0 keeps every region). After the guided filter the
    regions are the image's objects, and where the words attend to several of them, the one they attend to
    most is the one meant."""
    from scipy import ndimage

    if not 0.0 <= min_peak <= 1.0:
        raise ParameterError(f"the region peak fraction must be in [0, 1], got {min_peak}")
    mask = soft > threshold
    if min_peak <= 0 or not bool(mask.any()):
        return mask
    labels, n = ndimage.label(mask.cpu().numpy(), structure=np.ones((3, 3), bool))
    peaks = ndimage.maximum(soft.detach().float().cpu().numpy(), labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(np.asarray(peaks) >= min_peak * np.max(peaks)) + 1
    return torch.from_numpy(np.isin(labels, keep)).to(mask.device)


def cells_touched(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A fine binary mask (H, W) at a coarser ``size`` (h, w): a cell is in when any of its pixels is."""
    return F.adaptive_max_pool2d(mask[None, None].float(), size)[0, 0] > 0.5


class InstantMask(AttentionControl):
    """Controller of InstDiffEdit's denoising pass: records the edit text's cross-attention maps, makes the
    mask after each step and blends x_t with the noised source outside it.

    Args:
        word_tokens: token positions of each word of the edit text (see ``maskedit.edit_words``).
        sources: (steps, [n,] C, h, w) noised source latents after each step of the pass (x_{t-1} level).
        downsample: resolution of the maps, relative to the latent (paper: 16×16 of 64×64 → 4).
        places: UNet parts whose maps are used (paper: down and up).
        object_threshold, background_threshold: word selection thresholds (0.9, 0.6).
        threshold: φ, the binarisation threshold (0.2).
        blend: blend x_t with the source (False only records masks).
        anchor_candidates: words the anchor may be (indices into ``word_tokens``; default all). With one
            object in the text, as in the paper's benchmarks, the start token finds it; with several, the
            edited words say which one is meant (:func:`edited_words`).
        rows: the conditional rows whose maps make the mask (default all; e.g. the source text's rows when
            they denoise beside the edit's). The blend applies to every row.
    """

    def __init__(self, word_tokens: Sequence[Sequence[int]], sources: torch.Tensor | None, *, downsample: int = 4,
                 places: Iterable[str] = MAP_PLACES, object_threshold: float = 0.9,
                 background_threshold: float = 0.6, threshold: float = 0.2, smooth_size: int = 5,
                 smooth_sigma: float = 1.0, smooth_times: int = 2, blend: bool = True,
                 anchor_candidates: Sequence[int] | None = None, rows: slice | None = None):
        super().__init__()
        if not word_tokens:
            raise ParameterError("instant masks need at least one word in the edit text")
        if not 0.0 <= threshold < 1.0:
            raise ParameterError(f"mask threshold must be in [0, 1), got {threshold}")
        if background_threshold >= object_threshold:
            raise ParameterError("the background threshold must be below the object threshold")
        self.word_tokens = [list(t) for t in word_tokens]
        self.sources = sources
        self.downsample_factor = int(downsample)
        self.places = frozenset(places)
        self.object_threshold, self.background_threshold = float(object_threshold), float(background_threshold)
        self.threshold = float(threshold)
        self.smooth = dict(smooth_size=smooth_size, smooth_sigma=smooth_sigma, smooth_times=smooth_times)
        self.blend = blend
        self.anchor_candidates = list(anchor_candidates) if anchor_candidates else None
        if self.anchor_candidates and not all(0 <= i < len(self.word_tokens) for i in self.anchor_candidates):
            raise ParameterError("anchor candidates must index the edit text's words")
        self.rows = slice(None) if rows is None else rows
        self.selection: WordSelection | None = None
        self.soft_masks: list[torch.Tensor] = []  # per step, (h, w) mean over the batch (seeds)
        self.masks: list[torch.Tensor] = []  # per step, (h, w) bool
        self._sum: torch.Tensor | None = None
        self._count = 0

    def begin(self, **kwargs) -> None:
        super().begin(**kwargs)
        self.selection, self.soft_masks, self.masks = None, [], []
        self._sum, self._count = None, 0

    def wants(self, site: AttentionSite) -> bool:
        return site.is_cross and site.place in self.places and site.grid == self.downsample_factor

    def forward(self, attn: torch.Tensor, site: AttentionSite) -> torch.Tensor:
        mean = attn[self.rows].detach().float().mean(1)  # (rows, pixels, keys)
        self._sum = mean if self._sum is None else self._sum + mean
        self._count += 1
        return attn

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        if self._sum is None:
            raise ParameterError(
                f"instant masks saw no cross-attention maps at 1/{self.downsample_factor} of the latent size; "
                "choose a resolution this UNet has"
            )
        h, w = self.latent_size[0] // self.downsample_factor, self.latent_size[1] // self.downsample_factor
        maps = (self._sum / self._count).reshape(self._sum.shape[0], h, w, -1)  # (rows, h, w, keys)
        self._sum, self._count = None, 0
        words = word_maps(maps, self.word_tokens)  # (rows, W, h, w)
        if self.selection is None:  # mask refinement: first step only, on the mean over seeds
            self.selection = select_words(maps[..., 0].mean(0), words.mean(0),
                                          object_threshold=self.object_threshold,
                                          background_threshold=self.background_threshold,
                                          anchor_candidates=self.anchor_candidates)
        soft, _ = instant_mask(words, self.selection, threshold=self.threshold, **self.smooth)
        soft = soft.mean(0)  # average over seeds
        mask = soft > self.threshold
        self.soft_masks.append(soft)
        self.masks.append(mask)
        if not self.blend or self.sources is None:
            return x_t
        m = F.interpolate(mask[None, None].float(), size=x_t.shape[-2:], mode="nearest")
        src = self.sources[self.cur_step].to(x_t.device, x_t.dtype)  # ([n,] C, h, w)
        src = src[None] if src.dim() == 3 else src
        return blend_latents(x_t, m, src)  # x_t = noised source + M_t ⊙ (x_t − noised source)
