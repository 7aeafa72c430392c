"""Constants of the shapes world, named after ``docs/shapes-world.md`` (v1).

Every number of the specification lives here once; the renderer, the sampler and
the reader import them from this module and nowhere else.  The few places where
the specification leaves a detail open are resolved here and documented next to
the constant (see also :data:`RESOLUTIONS`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import numpy as np

RGB = tuple[int, int, int]

#: benchmarks and evaluation sets draw scenes from this seed; training never does
HELD_OUT_SEED = 1_000_003

# --- Canvas ---------------------------------------------------------------
#: Side of the square canvas in pixels ("Canvas": 64 x 64, RGB, 8 bits).
CANVAS_SIZE: int = 64

# --- Vocabulary (exact words) ---------------------------------------------
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "cyan")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart")
BACKGROUNDS: tuple[str, ...] = ("white", "black", "gray")
SIZES: tuple[str, ...] = ("small", "big")
TEXTURES: tuple[str, ...] = ("striped", "dotted")

BLURRY: str = "a blurry photo of"
SKETCH: str = "a sketch of"
PIXEL_ART: str = "a pixel art of"
#: Style prefixes, in the order of the specification's vocabulary table.
PREFIXES: tuple[str, ...] = (BLURRY, SKETCH, PIXEL_ART)
#: The only style suffix.
NIGHT_SUFFIX: str = "at night"

#: Every word a caption can hold, the grammar's own included (``a``, ``and``, ``on``, ``background``): the
#: shapes-world models know no other.
VOCABULARY: frozenset[str] = frozenset(
    (*COLOURS, *SHAPES, *BACKGROUNDS, *SIZES, *TEXTURES, *" ".join((*PREFIXES, NIGHT_SUFFIX)).split(),
     "a", "and", "on", "background"))

#: At most two objects per caption ("Captions" grammar).
MAX_OBJECTS: int = 2

# --- Palette (RGB) ----------------------------------------------------------
OBJECT_PALETTE: Mapping[str, RGB] = MappingProxyType(
    {
        "red": (220, 40, 40),
        "green": (40, 170, 60),
        "blue": (40, 80, 220),
        "yellow": (240, 210, 40),
        "purple": (140, 60, 200),
        "orange": (245, 140, 30),
        "pink": (250, 140, 200),
        "cyan": (40, 200, 210),
    }
)
BACKGROUND_PALETTE: Mapping[str, RGB] = MappingProxyType(
    {"white": (240, 240, 240), "black": (25, 25, 25), "gray": (128, 128, 128)}
)
#: All palette entries (object colours and backgrounds; the words never collide).
PALETTE: Mapping[str, RGB] = MappingProxyType({**OBJECT_PALETTE, **BACKGROUND_PALETTE})

# --- Sampling of the training distribution ("Captions") ----------------------
P_TWO_OBJECTS: float = 0.40
P_SIZE_WORD: float = 0.30  # small / big equally
P_TEXTURE: float = 0.25  # striped / dotted equally
P_PREFIX: float = 0.25  # the three prefixes equally
P_NIGHT: float = 0.15

# --- Geometry -----------------------------------------------------------------
#: Inclusive integer ranges of the box side s per size word (None: no size word).
SIZE_RANGES: Mapping[str | None, tuple[int, int]] = MappingProxyType(
    {"small": (12, 20), "big": (36, 48), None: (16, 44)}
)
#: With two objects, ``big`` is drawn from this range instead (two boxes must fit).
BIG_RANGE_TWO_OBJECTS: tuple[int, int] = (26, 30)

#: Triangle polygon in box-normalised (u, v) coordinates.
TRIANGLE_POLYGON: tuple[tuple[float, float], ...] = ((0.5, 0.0), (1.0, 1.0), (0.0, 1.0))
STAR_CENTRE: tuple[float, float] = (0.5, 0.5)
STAR_OUTER_RADIUS: float = 0.5
STAR_INNER_RADIUS: float = 0.2
STAR_STEP_DEGREES: float = 36.0
STAR_POINTS: int = 10
#: Heart = union of these two circles ((u, v) centre, radius) and the polygon below.
HEART_CIRCLES: tuple[tuple[tuple[float, float], float], ...] = (
    ((0.27, 0.32), 0.25),
    ((0.73, 0.32), 0.25),
)
HEART_POLYGON: tuple[tuple[float, float], ...] = ((0.03, 0.42), (0.97, 0.42), (0.5, 1.0))

# --- Textures -----------------------------------------------------------------
#: Darkening factor of the texture colour ("object colour x 0.45 (rounded)").
SHADE_FACTOR: float = 0.45
STRIPE_WIDTH: int = 3  # along x + y
DOT_RADIUS: float = 1.5
DOT_SPACING: int = 6
DOT_ORIGIN: tuple[int, int] = (3, 3)

# --- Styles -------------------------------------------------------------------
SKETCH_WIDTH: int = 2  # outline width in pixels
PIXEL_ART_GRID: int = 16  # box-downsample to 16 x 16, nearest-upsample back
BLUR_SIGMA: float = 1.5
#: Gaussian kernel radius: ceil(4 sigma) = 6 taps each side (13 taps), as scipy's default.
BLUR_RADIUS: int = 6
NIGHT_FACTOR: float = 0.45
NIGHT_BLUE_OFFSET: int = 20

#: How this module resolves details the specification leaves open.
RESOLUTIONS: tuple[str, ...] = (
    "Rounding of 'x 0.45' is round-half-up computed exactly in integers: (45 v + 50) // 100.",
    "Shapes are rasterised by pixel centres: pixel (px, py) is inside when "
    "((px + 0.5 - x) / s, (py + 0.5 - y) / s) lies in the closed shape.",
    "Textures use integer pixel indices in canvas coordinates: stripe k = (px + py) // 3, "
    "object colour for even k; a pixel is in a dot when its index is within 1.5 of a grid "
    "centre (3 + 6i, 3 + 6j), i.e. dots are 3 x 3 pixel blocks.",
    "Each style maps an 8-bit image to an 8-bit image (round half up, clip to [0, 255]).",
    "Blur: sampled Gaussian, 13 taps (radius 6), normalised, separable; borders use "
    "half-sample symmetric reflection (numpy 'symmetric' = scipy 'reflect').",
    "Sketch outline: mask pixels with a pixel outside the shape within Euclidean distance 2 "
    "(erosion by the radius-2 disk of 13 offsets); the canvas exterior counts as outside.",
    "Boxes overlap when their pixel sets [x, x+s) x [y, y+s) intersect; touching is allowed.",
)


def shade(rgb: RGB | np.ndarray) -> np.ndarray:
    """Texture colour of ``rgb``: each channel x 0.45, rounded half up ("Textures").

    Works on any integer array whose last axis is RGB; returns int64 of the same shape.
    """
    v = np.asarray(rgb, dtype=np.int64)
    return (45 * v + 50) // 100


def night(rgb: RGB | np.ndarray) -> np.ndarray:
    """``at night`` on 8-bit values: every channel x 0.45 (half up), blue + 20, clip.

    ``rgb``: (..., 3) integers in [0, 255]; returns int64 (..., 3).
    """
    v = shade(rgb)
    v[..., 2] += NIGHT_BLUE_OFFSET
    return np.clip(v, 0, 255)


def size_range(size: str | None, n_objects: int) -> tuple[int, int]:
    """Inclusive side range for a size word ("Geometry"); ``big`` shrinks with two objects."""
    if size not in SIZE_RANGES:
        raise ValueError(f"unknown size word {size!r}; expected one of {SIZES} or None")
    if size == "big" and n_objects == 2:
        return BIG_RANGE_TWO_OBJECTS
    return SIZE_RANGES[size]
