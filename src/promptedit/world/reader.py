"""An independent checker: read a shapes-world image back from the specification alone.

It imports only the constants of :mod:`.spec` (vocabulary, palette, geometry numbers),
never the renderer, so that a bug in one shows as a disagreement with the other.
Ideal shapes are rasterised here by analytic tests (polar test for the star, slope
tests for the triangles) with the same pixel-centre rule as the renderer.

Pipeline of :func:`read_image` (images are uint8 (H, W, 3) = (64, 64, 3)):

1. Day or night: the palette of each condition (night = colour x 0.45, blue + 20)
   is fitted to all pixels; the condition with the smaller mean (capped) distance wins.
2. Colour families: an object colour c covers the RGB segment from its texture
   shade 0.45 c to c (both mapped through night at night), so stripes, dots and
   their blurred mixtures belong to c. Each pixel gets its nearest family.
3. Background: the background word most pixels are nearest to ("dominant colour").
4. Objects: pixels nearer a family than the background, and within ``threshold`` of
   it; holes are filled (non-object pixels not 4-connected to the border), which
   also turns a sketch's outline into its filled shape; 8-connected components of
   fewer than ``min_pixels`` pixels are noise. Touching objects are split (by
   colour, else by erosion) when ``n_objects`` says more objects are expected.
5. Each component: colour = family nearest the median colour of its core (away from
   edges mixed with the background). Shape: a coverage map (1 inside, the pixel's
   projection on the background -> colour line near the edge) is compared by soft
   IoU with each ideal shape, whose box starts at the map's area and centroid and is
   improved by a local search; under ``a pixel art of`` / ``a blurry photo of`` the
   ideal is first put through the style's linear effect (block means, Gaussian), so
   like is compared with like. For sketches, raw outline pixels are also compared
   with ideal outlines. The best score is the shape; confidence = score x colour
   agreement of the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import spec

# --- Palettes -------------------------------------------------------------------------

_WORDS = spec.COLOURS
_LIGHT = np.array([spec.OBJECT_PALETTE[w] for w in _WORDS], dtype=np.float64)  # (8, 3)
_BG_WORDS = spec.BACKGROUNDS
_BG = np.array([spec.BACKGROUND_PALETTE[w] for w in _BG_WORDS], dtype=np.float64)  # (3, 3)


def _night_f(rgb: np.ndarray) -> np.ndarray:
    """Night as a continuous map (no rounding): x 0.45 then blue + 20."""
    out = rgb * spec.NIGHT_FACTOR
    out[..., 2] += spec.NIGHT_BLUE_OFFSET
    return np.clip(out, 0, 255)


def _families(is_night: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(light (8, 3), dark (8, 3), backgrounds (3, 3)) for a condition."""
    dark = _LIGHT * spec.SHADE_FACTOR
    if is_night:
        return _night_f(_LIGHT.copy()), _night_f(dark), _night_f(_BG.copy())
    return _LIGHT, dark, _BG


def _family_distance(pixels: np.ndarray, light: np.ndarray, dark: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each pixel to each family segment [dark, light] and the position on it.

    pixels: (N, 3) float. Returns dist (N, F) and t (N, F), t = 0 at dark, 1 at light.
    """
    d = light - dark  # (F, 3)
    dd = (d * d).sum(-1)  # (F,)
    rel_d = pixels @ d.T - (dark * d).sum(-1)[None]  # (N, F): (p - dark) . d
    rel2 = (pixels * pixels).sum(-1)[:, None] - 2 * pixels @ dark.T + (dark * dark).sum(-1)[None]  # |p - dark|^2
    t = np.clip(rel_d / dd[None], 0.0, 1.0)
    dist2 = rel2 - 2 * t * rel_d + t * t * dd[None]
    return np.sqrt(np.maximum(dist2, 0.0)), t


def _point_distance(pixels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3), (P, 3) -> (N, P) Euclidean distances."""
    d2 = (pixels * pixels).sum(-1)[:, None] - 2 * pixels @ points.T + (points * points).sum(-1)[None]
    return np.sqrt(np.maximum(d2, 0.0))


def _condition_fit(pixels: np.ndarray, is_night: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel (family distances (N, 8), background distances (N, 3), t (N, 8))."""
    light, dark, bg = _families(is_night)
    fam, t = _family_distance(pixels, light, dark)
    return fam, _point_distance(pixels, bg), t


def _night_score(fam: np.ndarray, bgd: np.ndarray, cap: float = 60.0) -> float:
    """Mean capped distance of the pixels to a condition's palette (lower fits better)."""
    return float(np.minimum(np.minimum(fam.min(1), bgd.min(1)), cap).mean())


def colour_of(image: np.ndarray, mask: np.ndarray, night: bool | None = None) -> str:
    """Colour word of the median colour inside ``mask``.

    The median (per channel) is matched to the nearest colour family (the segment
    from the colour's 0.45 shade to the colour, so textured objects read right);
    ``night=None`` tries both day and night families.
    image: uint8 (H, W, 3); mask: bool (H, W), non-empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("colour_of needs a non-empty mask")
    median = np.median(image[mask].astype(np.float64), axis=0)[None]  # (1, 3)
    best = (math.inf, "")
    for is_night in (False, True) if night is None else (bool(night),):
        light, dark, _ = _families(is_night)
        dist, _ = _family_distance(median, light, dark)
        k = int(np.argmin(dist[0]))
        if dist[0, k] < best[0]:
            best = (float(dist[0, k]), _WORDS[k])
    return best[1]


def _disc_shifts(mask: np.ndarray, radius: int):
    """``mask`` shifted by every offset of the closed Euclidean disc of ``radius`` (False beyond the edge)."""
    h, w = mask.shape
    padded = np.pad(mask, radius, constant_values=False)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx * dx + dy * dy <= radius * radius:
                yield padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by the closed Euclidean disc of ``radius``; outside counts as False."""
    out = np.ones_like(mask)
    for shifted in _disc_shifts(mask, radius):
        out &= shifted
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the closed Euclidean disc of ``radius`` (nothing beyond the edge)."""
    out = np.zeros_like(mask)
    for shifted in _disc_shifts(mask, radius):
        out |= shifted
    return out


def texture_strength(image: np.ndarray, mask: np.ndarray, colour: str, night: bool | None = None) -> float:
    """How strongly a texture shows inside ``mask``: mean darkness in [0, 1].

    Each pixel is projected on the colour's family segment: darkness 0 at the colour,
    1 at its 0.45 shade (clipped). The mean over the mask (eroded by 1 px when enough
    remains, to skip edges mixed with the background) is 0 for a plain object, about
    0.5 for ``striped`` (half the bands) and 0.25 for ``dotted`` (3 x 3 of every 6 x 6).
    ``night=None`` picks the condition whose segment fits the pixels better.
    """
    mask = np.asarray(mask, dtype=bool)
    inner = _erode(mask, 1)
    if inner.sum() >= 10:
        mask = inner
    if not mask.any():
        raise ValueError("texture_strength needs a non-empty mask")
    k = _WORDS.index(colour)
    pixels = image[mask].astype(np.float64)  # (N, 3)
    best = (math.inf, 0.0)
    for is_night in (False, True) if night is None else (bool(night),):
        light, dark, _ = _families(is_night)
        dist, t = _family_distance(pixels, light[k : k + 1], dark[k : k + 1])
        fit = float(dist.mean())
        if fit < best[0]:
            best = (fit, float((1.0 - t[:, 0]).mean()))
    return best[1]


# --- Connected components ------------------------------------------------------------

_N8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_N4 = ((-1, 0), (0, -1), (0, 1), (1, 0))


def label_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Connected components of a bool (H, W) mask; returns (labels int (H, W), count).

    Background pixels get -1; components are numbered 0.. in raster order of their
    first pixel. Min-label propagation with pointer jumping (numpy only).
    """
    h, w = mask.shape
    big = h * w
    index = np.arange(big).reshape(h, w)
    lab = np.where(mask, index, big)
    nbrs = _N8 if connectivity == 8 else _N4
    while True:
        padded = np.pad(lab, 1, constant_values=big)
        new = lab.copy()
        for dy, dx in nbrs:
            np.minimum(new, padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], out=new)
        new = np.where(mask, new, big)
        flat = new.ravel()
        fg = flat < big
        for _ in range(4):  # pointer jumping: follow labels to their own labels
            flat[fg] = flat[flat[fg]]
        if np.array_equal(new, lab):
            break
        lab = new
    roots = np.unique(lab[mask])
    out = np.full((h, w), -1, dtype=np.int64)
    out[mask] = np.searchsorted(roots, lab[mask])
    return out, len(roots)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Mask plus every non-mask pixel not 4-connected to the border; bool (H, W)."""
    labels, n = label_components(~mask, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, border[border >= 0])
    return mask | (~outside & (labels >= 0))


# --- Ideal shapes (independent of the renderer) --------------------------------------

# Normalised extent (u_min, u_max, v_min, v_max) of each shape, used to guess its box.
_S72, _C36 = math.sin(math.radians(72)), math.cos(math.radians(36))
_EXTENTS = {
    "circle": (0.0, 1.0, 0.0, 1.0),
    "square": (0.0, 1.0, 0.0, 1.0),
    "triangle": (0.0, 1.0, 0.0, 1.0),
    "star": (0.5 - 0.5 * _S72, 0.5 + 0.5 * _S72, 0.0, 0.5 + 0.5 * _C36),
    "heart": (
        min(c[0] for c, _ in spec.HEART_CIRCLES) - spec.HEART_CIRCLES[0][1],
        max(c[0] for c, _ in spec.HEART_CIRCLES) + spec.HEART_CIRCLES[0][1],
        min(c[1] for c, _ in spec.HEART_CIRCLES) - spec.HEART_CIRCLES[0][1],
        1.0,
    ),
}


_EPS = 1e-9


def _star_inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Polar test: fold the angle into the half-sector [0, 36] deg between an outer
    point (radius 0.5) and an inner point (radius 0.2), then test against that edge."""
    cu, cv = spec.STAR_CENTRE
    dx, dy = u - cu, cv - v  # dy up
    r = np.hypot(dx, dy)
    phi = np.degrees(np.arctan2(dx, dy)) % (2 * spec.STAR_STEP_DEGREES)  # from straight up
    phi = np.radians(np.minimum(phi, 2 * spec.STAR_STEP_DEGREES - phi))
    ro, ri, a = spec.STAR_OUTER_RADIUS, spec.STAR_INNER_RADIUS, math.radians(spec.STAR_STEP_DEGREES)
    ox, oy = ro, 0.0  # outer point along the sector's axis
    ix, iy = ri * math.cos(a), ri * math.sin(a)
    px, py = r * np.cos(phi), r * np.sin(phi)
    # point on the centre's side of the edge outer -> inner (centre has cross > 0)
    cross = (ix - ox) * (py - oy) - (iy - oy) * (px - ox)
    centre_side = (ix - ox) * (0 - oy) - (iy - oy) * (0 - ox)
    return cross * np.sign(centre_side) >= -_EPS


def ideal_shape(shape: str, box: tuple[float, float, float], window: tuple[int, int, int, int]) -> np.ndarray:
    """Ideal filled shape in box (x, y, s) on the pixel window (r0, r1, c0, c1); bool (r1-r0, c1-c0).

    Pixel-centre rule: pixel (px, py) is in when ((px+0.5-x)/s, (py+0.5-y)/s) is in the shape.
    """
    x, y, s = box
    r0, r1, c0, c1 = window
    u = ((np.arange(c0, c1) + 0.5 - x) / s)[None, :]
    v = ((np.arange(r0, r1) + 0.5 - y) / s)[:, None]
    e = _EPS  # closed shapes: a point on the boundary (up to rounding) is inside
    if shape == "square":
        out = (u >= -e) & (u <= 1 + e) & (v >= -e) & (v <= 1 + e)
    elif shape == "circle":
        out = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25 + e
    elif shape == "triangle":
        out = (v <= 1 + e) & (np.abs(u - 0.5) <= v / 2 + e)
    elif shape == "star":
        out = _star_inside(u, v)
    elif shape == "heart":
        (pl, pr, pb) = spec.HEART_POLYGON
        half = (pr[0] - pl[0]) / 2
        out = (v >= pl[1] - e) & (v <= pb[1] + e) & (np.abs(u - pb[0]) <= half * (pb[1] - v) / (pb[1] - pl[1]) + e)
        for (cu, cv), rad in spec.HEART_CIRCLES:
            out = out | ((u - cu) ** 2 + (v - cv) ** 2 <= rad * rad + e)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.broadcast_to(out, (r1 - r0, c1 - c0))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    return _iou(np.asarray(a, bool), np.asarray(b, bool))


def _shape_moments(shape: str, s: int = 240) -> tuple[float, float, float]:
    """(area / s^2, centroid u, centroid v) of a shape, from a fine rasterisation."""
    m = ideal_shape(shape, (0.0, 0.0, float(s)), (0, s, 0, s))
    ys, xs = np.nonzero(m)
    return len(xs) / (s * s), (xs.mean() + 0.5) / s, (ys.mean() + 0.5) / s


_MOMENTS = {shape: _shape_moments(shape) for shape in spec.SHAPES}


def _initial_box(shape: str, alpha: np.ndarray, window: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """Box (x, y, s) with the coverage map's area and centroid (robust to stray pixels)."""
    r0, _, c0, _ = window
    total = float(alpha.sum())
    if total <= 0:
        raise ValueError("empty coverage map")
    ys, xs = np.indices(alpha.shape)
    cx = c0 + 0.5 + float((alpha * xs).sum()) / total
    cy = r0 + 0.5 + float((alpha * ys).sum()) / total
    area, cu, cv = _MOMENTS[shape]
    s = max(2.0, math.sqrt(total / area))
    return (float(cx - cu * s), float(cy - cv * s), float(s))


def _block_coverage(mask: np.ndarray, window: tuple[int, int, int, int], grid: int) -> np.ndarray:
    """What ``a pixel art of`` makes of a mask on ``window``: each canvas-aligned
    ``grid`` x ``grid`` block takes its mean coverage. float, same shape as ``mask``."""
    r0, r1, c0, c1 = window
    R0, C0 = r0 - r0 % grid, c0 - c0 % grid
    R1, C1 = -(-r1 // grid) * grid, -(-c1 // grid) * grid
    full = np.zeros((R1 - R0, C1 - C0), dtype=np.float64)
    full[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0] = mask
    cover = full.reshape((R1 - R0) // grid, grid, (C1 - C0) // grid, grid).mean(axis=(1, 3))
    up = np.repeat(np.repeat(cover, grid, 0), grid, 1)
    return up[r0 - R0 : r1 - R0, c0 - C0 : c1 - C0]


def _blur_matrix(n: int, sigma: float = spec.BLUR_SIGMA) -> np.ndarray:
    """(n, n) matrix of a 1-D sampled Gaussian (radius ceil(4 sigma)), zero outside."""
    radius = int(math.ceil(4 * sigma))
    i = np.arange(n)
    d = i[:, None] - i[None, :]
    k = np.exp(-(d * d) / (2 * sigma * sigma)) * (np.abs(d) <= radius)
    z = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma * sigma)).sum()
    return k / z


class _ShapeFit:
    """How well an ideal shape explains one component, as a function of its box.

    Parameters are the box (x, y, s) in pixels. The score is the soft IoU
    sum(min(a, b)) / sum(max(a, b)) between the component's coverage map ``alpha``
    (float on ``window``) and the ideal shape's coverage after the style's linear
    effect (block means for pixel art, Gaussian for blur; binary otherwise). For a
    sketch the larger of that and the IoU of the raw pixels with the ideal outline
    is used.
    """

    def __init__(self, shape, alpha, raw, window, sketch: bool, style: str | None):
        self.shape, self.alpha, self.raw, self.window = shape, alpha, raw, window
        self.sketch, self.style = sketch, style
        self._cache: dict[tuple[float, float, float], float] = {}
        if style == spec.BLURRY:
            self.kr, self.kc = _blur_matrix(window[1] - window[0]), _blur_matrix(window[3] - window[2])

    def score(self, box: tuple[float, float, float]) -> float:
        key = (round(float(box[0]), 6), round(float(box[1]), 6), round(float(box[2]), 6))
        if key not in self._cache:
            self._cache[key] = self._score(box)
        return self._cache[key]

    def _score(self, box: tuple[float, float, float]) -> float:
        ideal = ideal_shape(self.shape, box, self.window)
        if self.style == spec.PIXEL_ART:
            soft = _block_coverage(ideal, self.window, spec.CANVAS_SIZE // spec.PIXEL_ART_GRID)
        elif self.style == spec.BLURRY:
            soft = self.kr @ ideal.astype(np.float64) @ self.kc.T
        else:
            soft = ideal
        den = np.maximum(self.alpha, soft).sum()
        val = float(np.minimum(self.alpha, soft).sum() / den) if den > 0 else 0.0
        if self.sketch:
            val = max(val, _iou(self.raw, ideal & ~_erode(ideal, spec.SKETCH_WIDTH)))
        return val

    # moves of (x, y, s): shift, grow/shrink from the top-left, grow/shrink from the bottom-right
    _MOVES = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1), (-1, -1, 1), (1, 1, -1))

    def refine(self, p, best: float, step: float, max_rounds: int):
        """Coordinate ascent on the box (x, y, s) by moves of ``step`` px; returns (score, box)."""
        for _ in range(max_rounds):
            improved = False
            for dx, dy, ds in self._MOVES:
                q = (p[0] + dx * step, p[1] + dy * step, p[2] + ds * step)
                if q[2] < 2:
                    continue
                val = self.score(q)
                if val > best + 1e-12:
                    best, p, improved = val, q, True
            if not improved:
                break
        return best, p


def _classify_shape(filled, alpha, raw, window, sketch: bool, style: str | None):
    """Best shape for a component: every shape's box (from the coverage moments) gets one
    round of 1 px moves; the two best are refined further with 1 and 0.5 px moves. Returns (shape, {shape: score}, box (x, y, s))."""
    fits, results = {}, {}
    for shape in spec.SHAPES:
        fit = _ShapeFit(shape, alpha, raw, window, sketch, style)
        p = _initial_box(shape, alpha, window)
        fits[shape] = fit
        results[shape] = fit.refine(p, fit.score(p), 1.0, 1)
    for shape in sorted(results, key=lambda k: -results[k][0])[:2]:
        for step in (1.0, 0.5):
            results[shape] = fits[shape].refine(results[shape][1], results[shape][0], step, 4)
    scores = {k: float(v[0]) for k, v in results.items()}
    best = max(scores, key=scores.get)
    return best, scores, tuple(float(v) for v in results[best][1])


def _coverage(pixels: np.ndarray, bg: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Fraction of ``colour`` over ``bg`` that explains each pixel (projection on the
    bg -> colour line, clipped to [0, 1]). pixels (..., 3) -> (...)."""
    d = colour - bg
    return np.clip(((pixels - bg) * d).sum(-1) / float((d * d).sum()), 0.0, 1.0)


# --- Reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadObject:
    """One object found in an image.

    Attributes:
        colour, shape: the words read.
        mask: bool (H, W), the pixels found (holes filled; a sketch's interior included).
        box: fitted box (x, y, s) in pixels (floats) of the best ideal shape.
        fit_mask: bool (H, W), the ideal ``shape`` in ``box``: an estimate of the
            object's mask before styles (better than ``mask`` under blur or pixel art).
        confidence: in [0, 1]: shape IoU of the best fit x fraction of the
            component's pixels whose nearest family is ``colour``.
        shape_scores: IoU of each of the five shapes' best fit.
    """

    colour: str
    shape: str
    mask: np.ndarray
    box: tuple[float, float, float]
    fit_mask: np.ndarray
    confidence: float
    shape_scores: dict[str, float] = field(default_factory=dict)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Reading:
    """What :func:`read_image` saw: background, condition and objects (largest first)."""

    background: str
    night: bool
    objects: tuple[ReadObject, ...]
    background_confidence: float
    sketch: bool

    @property
    def colours(self) -> tuple[str, ...]:
        return tuple(o.colour for o in self.objects)

    @property
    def shapes(self) -> tuple[str, ...]:
        return tuple(o.shape for o in self.objects)


def _split_by_colour(comp: np.ndarray, word_map: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """Split one component into per-colour components (used when objects seem merged)."""
    parts = []
    for k in np.unique(word_map[comp]):
        sub = comp & (word_map == k)
        labels, n = label_components(fill_holes(sub))
        for j in range(n):
            part = labels == j
            if part.sum() >= min_pixels:
                parts.append(part)
    return parts or [comp]


def _split_by_erosion(comp: np.ndarray, min_pixels: int, max_radius: int = 6) -> list[np.ndarray]:
    """Split a component made of touching objects: erode until it falls apart into
    cores of at least 4 px, then grow the cores back inside the component (3 x 3 steps,
    ties to the lower core index)."""
    for radius in range(1, max_radius + 1):
        labels, n = label_components(_erode(comp, radius))
        cores = [labels == j for j in range(n) if (labels == j).sum() >= 4]
        if len(cores) >= 2:
            break
    else:
        return [comp]
    owner = np.full(comp.shape, -1, dtype=np.int64)
    for j, core in enumerate(cores):
        owner[core] = j
    h, w = comp.shape
    while True:
        free = comp & (owner < 0)
        if not free.any():
            break
        padded = np.pad(owner, 1, constant_values=-1)
        grown = owner.copy()
        for dy, dx in _N8[::-1]:
            nb = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            take = free & (nb >= 0) & ((grown < 0) | (nb < grown))
            grown[take] = nb[take]
        if np.array_equal(grown, owner):
            break
        owner = grown
    parts = [owner == j for j in range(len(cores))]
    parts = [part for part in parts if part.sum() >= min_pixels]
    return parts if len(parts) >= 2 else [comp]


def read_image(
    image: np.ndarray,
    n_objects: int | None = None,
    *,
    night: bool | None = None,
    style: str | None = None,
    threshold: float = 50.0,
    min_pixels: int = 20,
) -> Reading:
    """Read background, objects' colours, shapes, masks and boxes from an image.

    Args:
        image: uint8 (H, W, 3).
        n_objects: if known (from the caption), at most that many objects are
            returned (largest by area x confidence); if fewer components are found,
            the largest component is split by colour, else by erosion (touching
            objects), when that yields more.
        night: condition hint; ``None`` detects it from the palette fit.
        style: the caption's style prefix, if known (e.g. ``"a sketch of"``). With
            ``None``, sketches are detected per component (its pixels cover < 75 %
            of the filled component) and pixel art by flat 4 x 4 blocks; blur is
            not detected (shapes still read, less exactly).
        threshold: max RGB distance of an object pixel to its colour family.
        min_pixels: components smaller than this are noise.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    h, w, _ = img.shape
    pixels = img.reshape(-1, 3).astype(np.float64)  # (N, 3)

    # 1. condition: the palette (day or night) that fits the pixels better
    if night is None:
        fits = {c: _condition_fit(pixels, c) for c in (False, True)}
        is_night = _night_score(*fits[True][:2]) < _night_score(*fits[False][:2])
        fam_dist, bg_dist, _ = fits[is_night]
    else:
        is_night = bool(night)
        fam_dist, bg_dist, _ = _condition_fit(pixels, is_night)  # (N, 8), (N, 3)

    # 2. per-pixel nearest family
    word_idx = fam_dist.argmin(1)  # (N,)
    word_d = fam_dist.min(1)  # (N,)

    # 3. background: plurality among pixels nearest to a background colour
    bg_near = bg_dist.min(1) < word_d
    votes = np.bincount(bg_dist.argmin(1)[bg_near], minlength=len(_BG_WORDS))
    b = int(np.argmax(votes))
    background = _BG_WORDS[b]
    bg_conf = float(votes[b] / max(1, int(bg_near.sum())))

    # 4. object pixels and components
    fg = ((word_d < bg_dist[:, b]) & (word_d < threshold)).reshape(h, w)  # (H, W)
    word_map = word_idx.reshape(h, w)
    labels, n = label_components(fill_holes(fg))
    comps = [labels == j for j in range(n)]
    comps = [c for c in comps if c.sum() >= min_pixels]
    comps.sort(key=lambda c: -int(c.sum()))
    substantial = sum(int(c.sum()) >= 2 * min_pixels for c in comps)
    if n_objects is not None and 0 < substantial < n_objects:
        parts = _split_by_colour(comps[0], np.where(fg, word_map, -1), min_pixels)
        if len(parts) == 1:
            parts = _split_by_erosion(comps[0], min_pixels)
        if len(parts) > 1:
            comps = parts + comps[1:]

    # 5. colour and shape of each component
    sketch_hint = None if style is None else style == spec.SKETCH
    if style is None and looks_pixelated(img):
        style = spec.PIXEL_ART
    grow = {spec.PIXEL_ART: h // spec.PIXEL_ART_GRID, spec.BLURRY: 3}.get(style, 1)
    light, _, bg_rgb = _families(is_night)
    objects, sketched = [], []
    for k, comp in enumerate(comps):
        raw = comp & fg
        rows = np.nonzero(comp.any(1))[0]
        cols = np.nonzero(comp.any(0))[0]
        pad = grow + 3
        window = (max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad), max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad))
        r0, r1, c0, c1 = window
        sub_filled, sub_raw = comp[r0:r1, c0:c1], raw[r0:r1, c0:c1]
        if sketch_hint is None:
            sketch = bool(sub_raw.sum() < 0.75 * sub_filled.sum())
        else:
            sketch = sketch_hint
        sketched.append(sketch)
        core = raw & _erode(comp, grow)  # away from edges mixed with the background
        colour = colour_of(img, core if core.sum() >= 5 else (raw if raw.any() else comp), night=is_night)
        # coverage map: 1 well inside the component, colour projection near its edge,
        # 0 far from it and on the other components
        others = np.zeros((h, w), dtype=bool)
        for j, c in enumerate(comps):
            if j != k:
                others |= c
        near = _dilate(comp, grow + 1) & ~others
        alpha = np.where(near, _coverage(img.astype(np.float64), bg_rgb[b], light[_WORDS.index(colour)]), 0.0)
        alpha = np.maximum(alpha, _erode(comp, grow))
        if alpha[r0:r1, c0:c1].sum() < 1:
            alpha = comp.astype(np.float64)
        shape, scores, box = _classify_shape(sub_filled, alpha[r0:r1, c0:c1], sub_raw, window, sketch, style)
        agree = float(np.mean(word_map[raw] == _WORDS.index(colour))) if raw.any() else 0.0
        fit_mask = ideal_shape(shape, box, (0, h, 0, w)).copy()
        objects.append(ReadObject(colour, shape, comp, box, fit_mask, scores[shape] * agree, scores))

    objects.sort(key=lambda o: -o.area * max(o.confidence, 1e-3))
    if n_objects is not None:
        objects = objects[:n_objects]
    return Reading(background, is_night, tuple(objects), bg_conf, any(sketched))


def looks_pixelated(image: np.ndarray, grid: int = spec.PIXEL_ART_GRID) -> bool:
    """True when (almost) every canvas-aligned block is one flat colour, as after
    ``a pixel art of``."""
    h, w, c = image.shape
    if h % grid or w % grid:
        return False
    blocks = image.astype(np.int16).reshape(grid, h // grid, grid, w // grid, c)
    spread = blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))  # (grid, grid, 3)
    return bool(np.mean(spread.max(-1) <= 2) > 0.98)


def match_objects(objects: tuple[ReadObject, ...] | list[ReadObject], masks: np.ndarray, min_iou: float = 0.1) -> list[int | None]:
    """Greedy IoU matching of read objects to ground-truth masks (n, H, W).

    Returns, for each ground-truth mask, the index of its read object (or None).
    """
    pairs = sorted(
        ((mask_iou(o.mask, m), i, j) for i, o in enumerate(objects) for j, m in enumerate(masks)), reverse=True
    )
    out: list[int | None] = [None] * len(masks)
    used = set()
    for iou, i, j in pairs:
        if iou < min_iou or i in used or out[j] is not None:
            continue
        out[j] = i
        used.add(i)
    return out
