"""Renderer of the shapes world: ``docs/shapes-world.md`` "Geometry", "Textures", "Styles".

Rasterisation rule (the specification leaves it open): pixel (px, py) belongs to a
shape in box (x, y, s) when its centre, mapped to box-normalised coordinates
``u = (px + 0.5 - x) / s``, ``v = (py + 0.5 - y) / s``, lies in the closed shape.
A square therefore fills exactly the pixels [x, x+s) x [y, y+s).

Every image here is ``uint8`` of shape (H, W, 3) = (64, 64, 3); masks are ``bool`` (64, 64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import spec
from .scene import Scene


@dataclass(frozen=True)
class RenderResult:
    """A rendered sample and its ground truth ("Ground truth kept with every rendered sample").

    Attributes:
        image: uint8 (64, 64, 3), after every style.
        masks: bool (n_objects, 64, 64), each object's filled shape before styles
            (caption order).
        drawn: bool (n_objects, 64, 64), the pixels actually painted for each object
            (the 2 px outline for ``a sketch of``, else equal to ``masks``).
        scene: the scene that was rendered.
    """

    image: np.ndarray
    masks: np.ndarray
    drawn: np.ndarray
    scene: Scene

    @property
    def caption(self) -> str:
        return self.scene.caption


# --- Geometry ---------------------------------------------------------------------


def star_vertices() -> np.ndarray:
    """The star's ten-point polygon in (u, v), shape (10, 2).

    First point straight up (v decreasing) at radius 0.5 around (0.5, 0.5), then
    alternating inner radius 0.2 and outer radius 0.5 every 36 degrees.
    """
    cu, cv = spec.STAR_CENTRE
    pts = []
    for k in range(spec.STAR_POINTS):
        r = spec.STAR_OUTER_RADIUS if k % 2 == 0 else spec.STAR_INNER_RADIUS
        a = math.radians(90.0 + spec.STAR_STEP_DEGREES * k)  # angle from +u, counter-clockwise on screen
        pts.append((cu + r * math.cos(a), cv - r * math.sin(a)))
    return np.array(pts)


# Exactness: shape constants are hundredths (star aside). With an integer box, pixel
# centres and vertices are expressed in units of s / 200 of the box as integers, so
# pixels exactly on a boundary (e.g. the heart's circles at s = 50) are decided exactly
# (closed shapes: boundary pixels are inside). Non-integer boxes use floats.
_SCALE = 200


def _scaled_centres(box: tuple[float, float, float], canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres relative to the box corner in units of 1/200 px, times s:
    ``U = 200 (px + 0.5 - x) = 200 s u``; returns U (1, canvas) and V (canvas, 1)."""
    x, y, _ = box
    p = np.arange(canvas, dtype=np.int64)
    if float(x).is_integer() and float(y).is_integer():
        x, y = int(x), int(y)
    uu = (2 * p + 1 - 2 * x) * (_SCALE // 2)
    vv = (2 * p + 1 - 2 * y) * (_SCALE // 2)
    return uu[None, :], vv[:, None]


def _scaled(c: float, s: float) -> float | int:
    """A box-normalised coordinate c in the units of :func:`_scaled_centres` (200 s c)."""
    hundredths = c * 100
    if float(s).is_integer() and abs(hundredths - round(hundredths)) < 1e-9:
        return 2 * int(s) * int(round(hundredths))
    return _SCALE * s * c


def _convex_polygon(uu: np.ndarray, vv: np.ndarray, poly, s: float) -> np.ndarray:
    """Closed convex polygon (vertices in (u, v), any orientation): every edge's cross
    product has the same sign (zero counts as inside)."""
    pts = [(_scaled(u, s), _scaled(v, s)) for u, v in poly]
    pos = np.ones(np.broadcast_shapes(uu.shape, vv.shape), dtype=bool)
    neg = pos.copy()
    for (u0, v0), (u1, v1) in zip(pts, pts[1:] + pts[:1]):
        cross = (u1 - u0) * (vv - v0) - (v1 - v0) * (uu - u0)
        pos &= cross >= 0
        neg &= cross <= 0
    return pos | neg


def _disc(uu: np.ndarray, vv: np.ndarray, centre: tuple[float, float], radius: float, s: float) -> np.ndarray:
    """Closed disc with centre and radius in (u, v) units."""
    du = uu - _scaled(centre[0], s)
    dv = vv - _scaled(centre[1], s)
    r = _scaled(radius, s)
    return du * du + dv * dv <= r * r


def shape_mask(shape: str, box: tuple[float, float, float], canvas: int = spec.CANVAS_SIZE) -> np.ndarray:
    """Filled shape in box (x, y, s) by the pixel-centre rule; bool (canvas, canvas).

    Circle: inscribed disc. Square: the box. Triangle: (0.5, 0), (1, 1), (0, 1).
    Star: union of the ten fan triangles (centre, p_k, p_k+1) of :func:`star_vertices`,
    which is exactly the star polygon because it is star-shaped about its centre.
    Heart: union of two discs and a triangle ("Geometry").
    """
    s = box[2]
    if s <= 0:
        raise ValueError(f"box side must be positive, got {s}")
    uu, vv = _scaled_centres(box, canvas)  # (1, W), (H, 1)
    full = (canvas, canvas)
    if shape == "circle":
        out = _disc(uu, vv, (0.5, 0.5), 0.5, s)
    elif shape == "square":
        side = _scaled(1.0, s)
        out = (uu >= 0) & (uu <= side) & (vv >= 0) & (vv <= side)
    elif shape == "triangle":
        out = _convex_polygon(uu, vv, spec.TRIANGLE_POLYGON, s)
    elif shape == "star":
        pts = [tuple(p) for p in star_vertices()]
        out = np.zeros(full, dtype=bool)
        for k in range(len(pts)):
            out |= _convex_polygon(uu, vv, (spec.STAR_CENTRE, pts[k], pts[(k + 1) % len(pts)]), s)
    elif shape == "heart":
        out = _convex_polygon(uu, vv, spec.HEART_POLYGON, s)
        for centre, radius in spec.HEART_CIRCLES:
            out = out | _disc(uu, vv, centre, radius, s)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {spec.SHAPES}")
    return np.broadcast_to(out, full).copy()


# 13 offsets (dy, dx) of the closed Euclidean disc of radius 2 (the sketch width).
_DISC = tuple(
    (dy, dx)
    for dy in range(-spec.SKETCH_WIDTH, spec.SKETCH_WIDTH + 1)
    for dx in range(-spec.SKETCH_WIDTH, spec.SKETCH_WIDTH + 1)
    if dx * dx + dy * dy <= spec.SKETCH_WIDTH**2
)


def outline(mask: np.ndarray, width: int = spec.SKETCH_WIDTH) -> np.ndarray:
    """The ``width`` px outline of a filled mask (``a sketch of``).

    A mask pixel is on the outline when some pixel outside the mask lies within
    Euclidean distance ``width`` of it (centre to centre); pixels beyond the canvas
    count as outside. Equivalently ``mask & ~erode(mask, disc of radius width)``.
    Straight edges get exactly ``width`` px. ``mask``: bool (H, W).
    """
    if width == spec.SKETCH_WIDTH:
        offsets = _DISC
    else:
        offsets = tuple(
            (dy, dx) for dy in range(-width, width + 1) for dx in range(-width, width + 1) if dx * dx + dy * dy <= width**2
        )
    h, w = mask.shape
    padded = np.pad(mask, width, constant_values=False)
    eroded = np.ones_like(mask)
    for dy, dx in offsets:
        eroded &= padded[width + dy : width + dy + h, width + dx : width + dx + w]
    return mask & ~eroded


# --- Textures ----------------------------------------------------------------------


def texture_pattern(texture: str, canvas: int = spec.CANVAS_SIZE) -> np.ndarray:
    """Pixels that take the shaded colour (x 0.45) for a texture; bool (canvas, canvas).

    Canvas pixel indices (px, py) are used, as "x + y = 0" names pixel (0, 0).
    striped: band k = (px + py) // 3; even bands (k = 0 first) keep the object colour,
    odd bands are shaded. dotted: pixels within 1.5 of a grid centre (3 + 6i, 3 + 6j),
    i.e. 3 x 3 blocks, are shaded.
    """
    p = np.arange(canvas)
    if texture == "striped":
        band = (p[None, :] + p[:, None]) // spec.STRIPE_WIDTH
        return band % 2 == 1
    if texture == "dotted":
        ox, oy = spec.DOT_ORIGIN
        # signed offset to the nearest grid centre, in [-3, 2]
        dx = (p - ox + spec.DOT_SPACING // 2) % spec.DOT_SPACING - spec.DOT_SPACING // 2
        dy = (p - oy + spec.DOT_SPACING // 2) % spec.DOT_SPACING - spec.DOT_SPACING // 2
        return dx[None, :] ** 2 + dy[:, None] ** 2 <= spec.DOT_RADIUS**2
    raise ValueError(f"unknown texture {texture!r}; expected one of {spec.TEXTURES}")


# --- Styles -------------------------------------------------------------------------


def _round_u8(values: np.ndarray) -> np.ndarray:
    """Round half up and clip to uint8."""
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def apply_pixel_art(image: np.ndarray, grid: int = spec.PIXEL_ART_GRID) -> np.ndarray:
    """``a pixel art of``: box-downsample to grid x grid (block means, rounded half up,
    exact in integers) and nearest-upsample back. (H, W, 3) uint8 -> same."""
    h, w, c = image.shape
    bh, bw = h // grid, w // grid
    blocks = image.astype(np.int64).reshape(grid, bh, grid, bw, c)  # (gy, by, gx, bx, 3)
    n = bh * bw
    small = (blocks.sum(axis=(1, 3)) + n // 2) // n  # (grid, grid, 3)
    return np.repeat(np.repeat(small, bh, axis=0), bw, axis=1).astype(np.uint8)


def gaussian_kernel(sigma: float = spec.BLUR_SIGMA, radius: int = spec.BLUR_RADIUS) -> np.ndarray:
    """Sampled, normalised Gaussian, shape (2 radius + 1,)."""
    i = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(i * i) / (2.0 * sigma * sigma))
    return k / k.sum()


def apply_blur(image: np.ndarray, sigma: float = spec.BLUR_SIGMA, radius: int = spec.BLUR_RADIUS) -> np.ndarray:
    """``a blurry photo of``: separable Gaussian blur over the whole image.

    Borders: half-sample symmetric reflection (``d c b a | a b c d``), under which the
    blur preserves each channel's sum exactly before rounding. Matches
    ``scipy.ndimage.gaussian_filter(mode="reflect", truncate=4)`` then round half up.
    (H, W, 3) uint8 -> same.
    """
    k = gaussian_kernel(sigma, radius)
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for j, wj in enumerate(k):
            acc += wj * np.take(padded, np.arange(j, j + n), axis=axis)
        out = acc
    return _round_u8(out)


def apply_night(image: np.ndarray) -> np.ndarray:
    """``at night``: every channel x 0.45 (half up), then blue + 20, clipped. uint8 -> uint8."""
    return spec.night(image).astype(np.uint8)


# --- Rendering ----------------------------------------------------------------------


def render(scene: Scene) -> RenderResult:
    """Render a scene following the specification.

    Background fill, then objects in caption order (a later object paints over an
    earlier one if they ever overlap). Unstyled objects are filled with their colour
    and their texture inside the shape only; ``a sketch of`` paints the 2 px
    :func:`outline` in the plain colour (no fill, no texture). Then pixel art, blur
    and night, in this order ("Styles"), each producing an 8-bit image.
    """
    n = spec.CANVAS_SIZE
    image = np.empty((n, n, 3), dtype=np.int64)  # (H, W, RGB)
    image[:] = spec.BACKGROUND_PALETTE[scene.background]
    sketch = scene.prefix == spec.SKETCH
    masks, drawn = [], []
    for obj in scene.objects:
        mask = shape_mask(obj.shape, obj.box, n)  # (H, W)
        colour = np.array(spec.OBJECT_PALETTE[obj.colour])
        if sketch:
            paint = outline(mask)
            image[paint] = colour
        else:
            paint = mask
            image[mask] = colour
            if obj.texture is not None:
                image[mask & texture_pattern(obj.texture, n)] = spec.shade(colour)
        masks.append(mask)
        drawn.append(paint)
    out = image.astype(np.uint8)
    if scene.prefix == spec.PIXEL_ART:
        out = apply_pixel_art(out)
    if scene.prefix == spec.BLURRY:
        out = apply_blur(out)
    if scene.night:
        out = apply_night(out)
    return RenderResult(out, np.array(masks, dtype=bool), np.array(drawn, dtype=bool), scene)
