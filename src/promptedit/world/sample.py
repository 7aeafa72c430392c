"""Sampling of the training distribution ("Captions") and of layouts ("Geometry").

Every function takes a :class:`numpy.random.Generator`; the same seed gives the
same draw. The order of the draws is part of the contract (it fixes datasets).
"""

from __future__ import annotations

import numpy as np

from . import spec
from .scene import Box, CaptionSpec, ObjectSpec, Scene


def _choice(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _sample_object(rng: np.random.Generator) -> ObjectSpec:
    """One object: colour and shape uniform, size word 30 %, texture word 25 %."""
    colour = _choice(rng, spec.COLOURS)
    shape = _choice(rng, spec.SHAPES)
    size = _choice(rng, spec.SIZES) if rng.random() < spec.P_SIZE_WORD else None
    texture = _choice(rng, spec.TEXTURES) if rng.random() < spec.P_TEXTURE else None
    return ObjectSpec(colour, shape, size, texture)


def sample_caption_spec(rng: np.random.Generator, p_two_objects: float = spec.P_TWO_OBJECTS) -> CaptionSpec:
    """Draw a caption's words from the training distribution ("Captions").

    One object 60 %, two 40 % (``p_two_objects``: the specification's unless a training recipe reweights it;
    the draws stay in the same order). The second object's (colour, shape) pair is redrawn
    until it differs from the first's (its size and texture words are kept), so the
    two objects differ in colour or shape. Then a prefix (25 %, the three equally),
    ``at night`` (15 %) and a uniform background.
    """
    n = 2 if rng.random() < p_two_objects else 1
    objects = [_sample_object(rng) for _ in range(n)]
    if n == 2:
        first, second = objects
        while (second.colour, second.shape) == (first.colour, first.shape):
            second = ObjectSpec(_choice(rng, spec.COLOURS), _choice(rng, spec.SHAPES), second.size, second.texture)
        objects[1] = second
    prefix = _choice(rng, spec.PREFIXES) if rng.random() < spec.P_PREFIX else None
    is_night = bool(rng.random() < spec.P_NIGHT)
    background = _choice(rng, spec.BACKGROUNDS)
    return CaptionSpec(tuple(objects), background, prefix, is_night)


def _sample_box(rng: np.random.Generator, size: str | None, n_objects: int) -> Box:
    lo, hi = spec.size_range(size, n_objects)
    s = int(rng.integers(lo, hi + 1))
    x = int(rng.integers(0, spec.CANVAS_SIZE - s + 1))
    y = int(rng.integers(0, spec.CANVAS_SIZE - s + 1))
    return Box(x, y, s)


def sample_layout(caption_spec: CaptionSpec, rng: np.random.Generator) -> tuple[Box, ...]:
    """Draw one box per object ("Geometry").

    Side s uniform in the size word's inclusive range, corner uniform over the
    positions that keep the box inside the canvas. With two objects both boxes
    (sizes and positions) are drawn again until they do not overlap, and ``big``
    uses [26, 30].
    """
    n = len(caption_spec.objects)
    while True:
        boxes = tuple(_sample_box(rng, o.size, n) for o in caption_spec.objects)
        if n == 1 or not boxes[0].overlaps(boxes[1]):
            return boxes


def layout_scene(caption_spec: CaptionSpec, rng: np.random.Generator) -> Scene:
    """The caption's words with a random layout (:func:`sample_layout`)."""
    return Scene.from_spec(caption_spec, sample_layout(caption_spec, rng))


def sample_scene(rng: np.random.Generator, p_two_objects: float = spec.P_TWO_OBJECTS) -> Scene:
    """A caption from the training distribution with its random layout."""
    return layout_scene(sample_caption_spec(rng, p_two_objects), rng)
