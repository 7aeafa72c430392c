"""Data model of the shapes world: captions, objects, scenes and edits.

Follows ``docs/shapes-world.md``, sections "Captions" (grammar), "Geometry"
(boxes) and "What an edit means here" (:func:`edit_scene`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import spec


class CaptionError(ValueError):
    """A caption outside the grammar of "Captions"; the message names the problem."""


class EditError(ValueError):
    """An edit that "What an edit means here" does not define (or that cannot be drawn)."""


class Box(NamedTuple):
    """Axis-aligned square box: top-left corner (x, y) and side s, in pixels."""

    x: int
    y: int
    s: int

    def overlaps(self, other: Box) -> bool:
        """True when the pixel sets [x, x+s) x [y, y+s) intersect (touching is fine)."""
        return (
            self.x < other.x + other.s
            and other.x < self.x + self.s
            and self.y < other.y + other.s
            and other.y < self.y + self.s
        )

    def inside(self, canvas: int = spec.CANVAS_SIZE) -> bool:
        """True when the box lies fully inside the canvas."""
        return self.s >= 1 and self.x >= 0 and self.y >= 0 and self.x + self.s <= canvas and self.y + self.s <= canvas


def _check_word(word: str | None, allowed: tuple[str, ...], kind: str, optional: bool = False) -> None:
    if word is None and optional:
        return
    if word not in allowed:
        raise CaptionError(f"unknown {kind} word {word!r}; expected one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ObjectSpec:
    """The words of one object: ``a [SIZE] [TEXTURE] COLOUR SHAPE``."""

    colour: str
    shape: str
    size: str | None = None
    texture: str | None = None

    def __post_init__(self) -> None:
        _check_word(self.colour, spec.COLOURS, "colour")
        _check_word(self.shape, spec.SHAPES, "shape")
        _check_word(self.size, spec.SIZES, "size", optional=True)
        _check_word(self.texture, spec.TEXTURES, "texture", optional=True)

    @property
    def phrase(self) -> str:
        """The object's phrase, e.g. ``a big striped blue star``."""
        words = ["a", self.size, self.texture, self.colour, self.shape]
        return " ".join(w for w in words if w)


@dataclass(frozen=True)
class CaptionSpec:
    """Everything a caption says (no layout): objects' words, background and styles."""

    objects: tuple[ObjectSpec, ...]
    background: str
    prefix: str | None = None
    night: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if not 1 <= len(self.objects) <= spec.MAX_OBJECTS:
            raise CaptionError(f"a caption has 1 or {spec.MAX_OBJECTS} objects, got {len(self.objects)}")
        _check_word(self.background, spec.BACKGROUNDS, "background")
        if self.prefix is not None and self.prefix not in spec.PREFIXES:
            raise CaptionError(f"unknown style prefix {self.prefix!r}; expected one of {spec.PREFIXES}")

    @property
    def caption(self) -> str:
        """The caption string, exactly as the grammar of "Captions" writes it."""
        head = " and ".join(o.phrase for o in self.objects)
        if self.prefix:
            head = f"{self.prefix} {head}"
        tail = f" on a {self.background} background"
        if self.night:
            tail += f" {spec.NIGHT_SUFFIX}"
        return head + tail


@dataclass(frozen=True)
class WorldObject:
    """One drawn object: its words and its box (x, y, s) from the random draw."""

    colour: str
    shape: str
    size: str | None
    texture: str | None
    box: Box

    def __post_init__(self) -> None:
        ObjectSpec(self.colour, self.shape, self.size, self.texture)  # validates the words
        if len(self.box) != 3 or any(int(v) != v for v in self.box):
            raise ValueError(f"a box is three integers (x, y, s), got {tuple(self.box)}")
        box = Box(*(int(v) for v in self.box))
        if not box.inside():
            raise ValueError(f"box {tuple(box)} is not fully inside the {spec.CANVAS_SIZE}-pixel canvas")
        object.__setattr__(self, "box", box)

    @property
    def spec(self) -> ObjectSpec:
        return ObjectSpec(self.colour, self.shape, self.size, self.texture)

    @classmethod
    def from_spec(cls, obj: ObjectSpec, box: Box | tuple[int, int, int]) -> WorldObject:
        return cls(obj.colour, obj.shape, obj.size, obj.texture, Box(*box))


@dataclass(frozen=True)
class Scene:
    """A caption plus the layout drawn for it: all ground truth except pixels.

    Objects are listed (and painted) in caption order. Boxes are not checked against
    the size words: "layout ... comes from the random draw alone".
    """

    objects: tuple[WorldObject, ...]
    background: str
    prefix: str | None = None
    night: bool = False
    _spec: CaptionSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        caption_spec = CaptionSpec(tuple(o.spec for o in self.objects), self.background, self.prefix, self.night)
        object.__setattr__(self, "_spec", caption_spec)

    @property
    def spec(self) -> CaptionSpec:
        """The caption's words without the layout."""
        return self._spec

    @property
    def caption(self) -> str:
        return self._spec.caption

    @property
    def boxes(self) -> tuple[Box, ...]:
        return tuple(o.box for o in self.objects)

    @classmethod
    def from_spec(cls, caption_spec: CaptionSpec, boxes: Any) -> Scene:
        """Attach boxes (one per object, caption order) to a caption's words."""
        boxes = list(boxes)
        if len(boxes) != len(caption_spec.objects):
            raise ValueError(f"{len(caption_spec.objects)} objects but {len(boxes)} boxes")
        objects = tuple(WorldObject.from_spec(o, b) for o, b in zip(caption_spec.objects, boxes))
        return cls(objects, caption_spec.background, caption_spec.prefix, caption_spec.night)

    def with_caption(self, caption: str | CaptionSpec, seed: int = 0) -> Scene:
        """The same draw with an edited caption; see :func:`edit_scene`."""
        return edit_scene(self, caption, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ground truth (caption, words, boxes, styles)."""
        return {
            "caption": self.caption,
            "background": self.background,
            "prefix": self.prefix,
            "night": self.night,
            "objects": [
                {"colour": o.colour, "shape": o.shape, "size": o.size, "texture": o.texture, "box": list(o.box)}
                for o in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        objects = tuple(
            WorldObject(o["colour"], o["shape"], o.get("size"), o.get("texture"), Box(*o["box"]))
            for o in data["objects"]
        )
        scene = cls(objects, data["background"], data.get("prefix"), bool(data.get("night", False)))
        if "caption" in data and data["caption"] != scene.caption:
            raise ValueError(f"caption {data['caption']!r} does not match the words ({scene.caption!r})")
        return scene


# --- Parsing -------------------------------------------------------------------

_PREFIX_TOKENS = tuple((p, tuple(p.split(" "))) for p in spec.PREFIXES)


def parse_caption(text: str) -> CaptionSpec:
    """Parse a caption of the grammar in "Captions" into a :class:`CaptionSpec`.

    ``caption := [PREFIX " "] object [" and " object] " on a " BG " background" [" at night"]``
    ``object  := "a " [SIZE " "] [TEXTURE " "] COLOUR " " SHAPE``

    Raises:
        CaptionError: (a ``ValueError``) naming the first problem found: case,
            spacing, punctuation, ``an``, an unknown or misplaced word, a missing part.
    """
    if not isinstance(text, str):
        raise CaptionError(f"a caption is a string, got {type(text).__name__}")
    if text != text.lower():
        raise CaptionError(f"captions are lower case: {text!r}")
    if text != text.strip() or "  " in text or any(c in text for c in "\t\n\r"):
        raise CaptionError(f"words are separated by exactly one space: {text!r}")
    bad = sorted({c for c in text if not (c.isalpha() or c == " ")})
    if bad:
        raise CaptionError(f"captions have no punctuation or digits, found {''.join(bad)!r}")
    if not text:
        raise CaptionError("empty caption")
    tokens = text.split(" ")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def expect(word: str, where: str) -> None:
        nonlocal pos
        got = peek()
        if got != word:
            if word == "a" and got == "an":
                raise CaptionError(f"always 'a', never 'an' ({where})")
            raise CaptionError(f"expected {word!r} {where}, got {got!r}" if got else f"caption ends before {word!r} {where}")
        pos += 1

    prefix = None
    for p, ptoks in _PREFIX_TOKENS:
        if tuple(tokens[: len(ptoks)]) == ptoks:
            prefix, pos = p, len(ptoks)
            break

    objects = []
    while True:
        expect("a", "at the start of an object")
        words: dict[str, str | None] = {"size": None, "texture": None}
        if peek() in spec.SIZES:
            words["size"] = tokens[pos]
            pos += 1
        if peek() in spec.TEXTURES:
            words["texture"] = tokens[pos]
            pos += 1
        colour = peek()
        if colour not in spec.COLOURS:
            if colour in spec.SIZES or colour in spec.TEXTURES:
                raise CaptionError(f"word order is [size] [texture] colour shape; {colour!r} is misplaced")
            raise CaptionError(f"expected a colour ({', '.join(spec.COLOURS)}), got {colour!r}")
        pos += 1
        shape = peek()
        if shape not in spec.SHAPES:
            raise CaptionError(f"expected a shape ({', '.join(spec.SHAPES)}) after {colour!r}, got {shape!r}")
        pos += 1
        objects.append(ObjectSpec(colour, shape, words["size"], words["texture"]))
        if peek() == "and":
            if len(objects) == spec.MAX_OBJECTS:
                raise CaptionError(f"at most {spec.MAX_OBJECTS} objects")
            pos += 1
            continue
        break

    expect("on", "after the objects")
    expect("a", "after 'on'")
    background = peek()
    if background not in spec.BACKGROUNDS:
        raise CaptionError(f"expected a background ({', '.join(spec.BACKGROUNDS)}), got {background!r}")
    pos += 1
    expect("background", f"after {background!r}")
    is_night = False
    if peek() is not None:
        expect("at", "after 'background' (only 'at night' may follow)")
        expect("night", "after 'at'")
        is_night = True
    if peek() is not None:
        raise CaptionError(f"unexpected words after the caption's end: {' '.join(tokens[pos:])!r}")
    return CaptionSpec(tuple(objects), background, prefix, is_night)


# --- Edits -----------------------------------------------------------------------


def _redraw_box(old: Box, size: str | None, n_objects: int, others: list[Box], rng: np.random.Generator) -> Box:
    """New box for an object whose size word changed (see :func:`edit_scene`)."""
    n = spec.CANVAS_SIZE
    lo, hi = spec.size_range(size, n_objects)
    fitting = []  # sizes with at least one valid position
    valid_by_size = {}
    for s in range(lo, hi + 1):
        coords = np.arange(n - s + 1)
        ok = np.ones((coords.size, coords.size), dtype=bool)  # (y, x) of the top-left corner
        for b in others:
            x_clear = (coords + s <= b.x) | (coords >= b.x + b.s)  # (x,)
            y_clear = (coords + s <= b.y) | (coords >= b.y + b.s)  # (y,)
            ok &= y_clear[:, None] | x_clear[None, :]
        if ok.any():
            fitting.append(s)
            valid_by_size[s] = ok
    if not fitting:
        raise EditError(f"no box of size word {size!r} fits beside the other object's box")
    s = fitting[int(rng.integers(len(fitting)))]
    ok = valid_by_size[s]
    ys, xs = np.nonzero(ok)  # row-major: ties resolve to the smallest (y, x)
    cx, cy = old.x + old.s / 2, old.y + old.s / 2
    d2 = (xs + s / 2 - cx) ** 2 + (ys + s / 2 - cy) ** 2
    k = int(np.argmin(d2))
    return Box(int(xs[k]), int(ys[k]), s)


def edit_scene(scene: Scene, new_caption: str | CaptionSpec, seed: int = 0) -> Scene:
    """The ideal result of a text edit: the same draw with the edited caption.

    Implements "What an edit means here": every box is kept and only words change,
    except for an object whose size word changes (added, removed or swapped). Its
    new side is drawn uniformly from the new word's range ("Geometry"; ``big`` is
    [26, 30] with two objects), restricted to sides that fit beside the other
    object's box; the new box is then the valid position whose centre is nearest
    the old centre (ties: smallest y, then x). Objects are visited in caption
    order and each redraw sees the other object's current box. The draw uses
    ``numpy.random.default_rng(seed)``, so the result is a pure function of
    (scene, new_caption, seed).

    Raises:
        CaptionError: if ``new_caption`` is outside the grammar.
        EditError: if the number of objects changes, or no box of the new size fits.
    """
    new_spec = new_caption if isinstance(new_caption, CaptionSpec) else parse_caption(new_caption)
    n = len(scene.objects)
    if len(new_spec.objects) != n:
        raise EditError(
            f"an edit keeps the objects: the scene has {n}, the edited caption {len(new_spec.objects)}"
        )
    rng = np.random.default_rng(seed)
    boxes = [o.box for o in scene.objects]
    for i, (old, new) in enumerate(zip(scene.objects, new_spec.objects)):
        if old.size != new.size:
            others = [boxes[j] for j in range(n) if j != i]
            boxes[i] = _redraw_box(old.box, new.size, n, others, rng)
    return Scene.from_spec(new_spec, boxes)
