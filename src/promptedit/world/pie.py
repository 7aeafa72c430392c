"""A PIE-Bench-format editing set from the shapes world, with the exact target of every edit.

:func:`make_pie_set` (pure) draws ``n`` edits; ``promptedit world pie`` (the CLI) lays them out as
PIE-Bench does, plus the exact targets::

    out_dir/mapping_file.json
    out_dir/annotation_images/<type folder>/<id>.png     source images, 64 x 64
    out_dir/target_images/<type folder>/<id>.png         exact edit results

Editing types the world can express (PIE-Bench ids), drawn in turn (item ``i`` has
type ``WORLD_TYPES[i % 7]``, so ``n >= 7`` covers every type, ``n = 70`` gives 10 each):

- 1 change object: one object's shape word;
- 2 add object: a second object (source = the first object of a two-object draw);
- 3 delete object: the second object of a two-object draw;
- 6 change attribute color: one object's colour word;
- 7 change attribute material: one object's texture word (none / striped / dotted;
  never under ``a sketch of``, which draws no texture);
- 8 change background: the background word;
- 9 change style: the style prefix (none / blurry / sketch / pixel art) or ``at night``.

Every entry has PIE-Bench's fields (``image_path``, ``original_prompt`` and
``editing_prompt`` with the differing words in ``[ ]``, ``editing_instruction``,
``editing_type_id``, ``blended_word``, ``mask`` as PIE-Bench's run list) plus
``image_size`` ([64, 64]: decode masks at this size), ``target_image_path`` (under
``target_images/``) and ``world``: both scenes' ground truth (``Scene.to_dict``),
the edited object's index and a reader check of the edited attribute
(:func:`check_edit`), which passes on the exact target and fails on the source
of every item that has one (items are redrawn until it does).

The mask (True = edited) is the edit's region -- the edited object's filled shape
(old and new shape for a shape change; the added or deleted object), everything
but the objects for a background change, the whole image for a style change (as
PIE-Bench annotates style edits) -- joined with every pixel where source and target
differ (a blur or pixel art spreads a change past the shape). Outside the mask the
exact target equals the source pixel for pixel.

Item ``i`` is drawn with ``numpy.random.default_rng(SeedSequence([PIE_STREAM, seed],
spawn_key=(i,)))``: a stream of its own, never the training data's draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..pie.data import PieItem, mark_difference, mask_encode, slug
from . import spec
from .reader import looks_pixelated, colour_of, match_objects, read_image, texture_strength
from .render import RenderResult, render
from .sample import sample_scene
from .scene import CaptionSpec, Scene, edit_scene

#: PIE-Bench editing types the shapes world can express, in drawing order.
WORLD_TYPES: tuple[int, ...] = (1, 2, 3, 6, 7, 8, 9)
#: First entropy word of the set's seed sequence ("PIE" in ASCII).
PIE_STREAM = 0x504945
#: Mean texture darkness of each texture word (:func:`texture_strength`).
TEXTURE_LEVELS: Mapping[str | None, float] = {None: 0.0, "dotted": 0.25, "striped": 0.5}
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class WorldPieItem:
    """One edit of the set: the mapping entry and its images.

    Attributes:
        id: the mapping file's key (12 digits, the first one the type, as in PIE-Bench).
        type_id: PIE-Bench editing type.
        entry: the JSON-ready mapping entry (see the module docstring).
        source, target: renderings of the source and the exact target scene.
        mask: bool (64, 64), the edit region (the mask the entry encodes).
    """

    id: str
    type_id: int
    entry: Mapping[str, Any]
    source: RenderResult
    target: RenderResult
    mask: np.ndarray

    @property
    def folder(self) -> str:
        return self.entry["image_path"].split("/")[0]


# --- Edits --------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: list) -> Any:
    return options[int(rng.integers(len(options)))]


def _with_object(c: CaptionSpec, i: int, **words) -> CaptionSpec:
    objects = list(c.objects)
    objects[i] = dataclasses.replace(objects[i], **words)
    return dataclasses.replace(c, objects=tuple(objects))


def _free_pairs(c: CaptionSpec, i: int) -> set[tuple[str, str]]:
    """(colour, shape) pairs of the other objects: an edit must keep the objects distinct."""
    return {(o.colour, o.shape) for j, o in enumerate(c.objects) if j != i}


def _style_name(prefix: str | None) -> str:
    return {None: "a plain picture", spec.BLURRY: "a blurry photo", spec.SKETCH: "a sketch",
            spec.PIXEL_ART: "a pixel art"}[prefix]


def _draw_edit(type_id: int, rng: np.random.Generator) -> tuple[Scene, Scene, dict[str, Any]] | None:
    """Source scene, target scene and the edit's words; None if this draw cannot take the edit."""
    if type_id in (2, 3):
        both = sample_scene(rng, p_two_objects=1.0)
        one = Scene(both.objects[:1], both.background, both.prefix, both.night)
        added = both.objects[1]
        what = f"{added.colour} {added.shape}"
        if type_id == 2:
            info = {"instruction": f"add {added.spec.phrase}", "blended": "", "object": 1,
                    "check": {"kind": "add", "object": 1, "expected": [added.colour, added.shape]}}
            return one, both, info
        info = {"instruction": f"remove the {what}", "blended": "", "object": 1,
                "check": {"kind": "delete", "object": 1}}
        return both, one, info

    src = sample_scene(rng)
    c = src.spec
    if type_id == 8:
        new = _pick(rng, [b for b in spec.BACKGROUNDS if b != c.background])
        tgt = edit_scene(src, dataclasses.replace(c, background=new))
        return src, tgt, {"instruction": f"change the background to {new}", "blended": "background background",
                          "object": None, "check": {"kind": "background", "expected": new}}
    if type_id == 9:
        options = [(p, c.night) for p in (None, *spec.PREFIXES) if p != c.prefix] + [(c.prefix, not c.night)]
        prefix, night = _pick(rng, options)
        tgt = edit_scene(src, dataclasses.replace(c, prefix=prefix, night=night))
        if night != c.night:
            instruction = "make it night" if night else "make it day"
        else:
            instruction = f"make it {_style_name(prefix)}"
        check: dict[str, Any] = {"kind": "style"}
        if night != c.night:
            check["night"] = night
        if (prefix == spec.SKETCH) != (c.prefix == spec.SKETCH):
            check["sketch"] = prefix == spec.SKETCH
        if (prefix == spec.PIXEL_ART) != (c.prefix == spec.PIXEL_ART):
            check["pixel_art"] = prefix == spec.PIXEL_ART
        return src, tgt, {"instruction": instruction, "blended": "", "object": None,
                          "check": check if len(check) > 1 else None}

    i = int(rng.integers(len(c.objects)))
    obj = c.objects[i]
    taken = _free_pairs(c, i)
    if type_id == 6:
        new = _pick(rng, [w for w in spec.COLOURS if w != obj.colour and (w, obj.shape) not in taken])
        tgt = edit_scene(src, _with_object(c, i, colour=new))
        return src, tgt, {"instruction": f"change the color of the {obj.colour} {obj.shape} to {new}",
                          "blended": f"{obj.shape} {obj.shape}", "object": i,
                          "check": {"kind": "colour", "object": i, "expected": new}}
    if type_id == 1:
        new = _pick(rng, [s for s in spec.SHAPES if s != obj.shape and (obj.colour, s) not in taken])
        tgt = edit_scene(src, _with_object(c, i, shape=new))
        return src, tgt, {"instruction": f"change the {obj.colour} {obj.shape} into a {new}",
                          "blended": f"{obj.shape} {new}", "object": i,
                          "check": {"kind": "shape", "object": i, "expected": new}}
    if type_id == 7:
        if c.prefix == spec.SKETCH:
            return None
        new = _pick(rng, [t for t in (None, *spec.TEXTURES) if t != obj.texture])
        tgt = edit_scene(src, _with_object(c, i, texture=new))
        what = f"{obj.colour} {obj.shape}"
        return src, tgt, {"instruction": f"make the {what} {new}" if new else f"make the {what} plain",
                          "blended": f"{obj.shape} {obj.shape}", "object": i,
                          "check": {"kind": "texture", "object": i, "expected": new}}
    raise ValueError(f"the shapes world cannot express editing type {type_id}")


def edit_region(type_id: int, source: RenderResult, target: RenderResult, obj: int | None) -> np.ndarray:
    """The edit's mask: its region by type (see the module docstring) joined with every changed pixel."""
    changed = np.any(source.image != target.image, axis=-1)
    if type_id in (1, 6, 7):
        region = source.masks[obj] | target.masks[obj]
    elif type_id == 2:
        region = target.masks[obj]
    elif type_id == 3:
        region = source.masks[obj]
    elif type_id == 8:
        region = ~np.any(target.masks, axis=0)
    else:  # 9: style edits the whole image
        region = np.ones_like(changed)
    return region | changed


# --- Reader check ---------------------------------------------------------------------------------


def check_edit(image: np.ndarray, world: Mapping[str, Any]) -> bool | None:
    """Does ``image`` show the edited attribute? Read back with the world's reader.

    ``world`` is an entry's ``world`` field. Checks by kind: ``colour`` (the colour
    read where the target paints the object), ``shape`` and ``add`` (the object read
    at the target's mask has the expected shape / colour and shape), ``delete`` (no
    object is read at the deleted object's mask), ``texture`` (mean texture darkness
    nearest the expected word's level), ``background`` (the background read),
    ``style`` (night, sketch, pixel art: whichever changed; a change to or from
    ``a blurry photo of`` alone has no check). None when the entry has no check.
    ``image``: uint8 (64, 64, 3).
    """
    check = world.get("check")
    if not check:
        return None
    image = np.asarray(image)
    if image.shape != (spec.CANVAS_SIZE, spec.CANVAS_SIZE, 3):
        raise ValueError(f"the world check reads {spec.CANVAS_SIZE}x{spec.CANVAS_SIZE} RGB images, got {image.shape}")
    target = Scene.from_dict(world["target"])
    kind = check["kind"]
    if kind == "colour":
        drawn = render(target).drawn[check["object"]]
        return bool(drawn.any()) and colour_of(image, drawn, night=target.night) == check["expected"]
    if kind == "texture":
        obj = target.objects[check["object"]]
        mask = render(target).masks[check["object"]]
        level = texture_strength(image, mask, obj.colour, night=target.night)
        nearest = min(TEXTURE_LEVELS, key=lambda t: abs(TEXTURE_LEVELS[t] - level))
        return nearest == check["expected"]
    if kind in ("shape", "add"):
        masks = render(target).masks
        reading = read_image(image, n_objects=len(target.objects), style=target.prefix)
        found = match_objects(reading.objects, masks)[check["object"]]
        if found is None:
            return False
        read = reading.objects[found]
        if kind == "shape":
            return read.shape == check["expected"]
        return [read.colour, read.shape] == list(check["expected"])
    if kind == "delete":
        source = Scene.from_dict(world["source"])
        gone = render(source).masks[check["object"]]
        reading = read_image(image, style=target.prefix)
        return match_objects(reading.objects, gone[None])[0] is None
    if kind == "background":
        return read_image(image, n_objects=len(target.objects), style=target.prefix).background == check["expected"]
    if kind == "style":
        ok = True
        if "night" in check or "sketch" in check:
            reading = read_image(image, n_objects=len(target.objects))
            if "night" in check:
                ok &= reading.night == check["night"]
            if "sketch" in check:
                ok &= reading.sketch == check["sketch"]
        if "pixel_art" in check:
            ok &= looks_pixelated(image) == check["pixel_art"]
        return bool(ok)
    raise ValueError(f"unknown world check kind {kind!r}")


def world_check(item: PieItem, image: np.ndarray) -> float:
    """:func:`check_edit` as a per-item measure for ``promptedit.pie.evaluate.Metrics``
    (``extra={"world_check": world_check}``): 1.0 pass, 0.0 fail, NaN without a check."""
    world = item.extra.get("world")
    result = None if not world else check_edit(image, world)
    return float("nan") if result is None else float(result)


# --- The set ------------------------------------------------------------------------------------


def _item_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([PIE_STREAM, int(seed)], spawn_key=(int(index),)))


def make_item(index: int, seed: int, type_id: int | None = None, verify: bool = True) -> tuple[int, dict[str, Any]]:
    """Draw item ``index``: (type id, parts) with parts source, target, mask, info.

    Draws again (same generator) until the edit changes the image and, with
    ``verify``, the reader check passes on the target and fails on the source.
    """
    type_id = WORLD_TYPES[index % len(WORLD_TYPES)] if type_id is None else type_id
    rng = _item_rng(seed, index)
    for _ in range(MAX_ATTEMPTS):
        drawn = _draw_edit(type_id, rng)
        if drawn is None:
            continue
        src_scene, tgt_scene, info = drawn
        source, target = render(src_scene), render(tgt_scene)
        if np.array_equal(source.image, target.image):
            continue
        world = {"source": src_scene.to_dict(), "target": tgt_scene.to_dict(),
                 "edited_object": info["object"], "check": info["check"]}
        if verify and info["check"] is not None:
            if check_edit(target.image, world) is not True or check_edit(source.image, world) is not False:
                continue
        mask = edit_region(type_id, source, target, info["object"])
        return type_id, {"source": source, "target": target, "mask": mask, "info": info, "world": world}
    raise RuntimeError(f"no valid edit of type {type_id} for item {index} in {MAX_ATTEMPTS} draws")


def make_pie_set(n: int, seed: int = 0, *, types: tuple[int, ...] = WORLD_TYPES, verify: bool = True,
                 on_item: Callable[[int], None] | None = None) -> list[WorldPieItem]:
    """``n`` edits in PIE-Bench format (pure: returns items, writes nothing); ``on_item(i)`` after each draw.

    Item ``i`` has type ``types[i % len(types)]``; the list is ordered by type, then
    draw, so ids (``<type><11-digit index>``) increase as in PIE-Bench.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    bad = [t for t in types if t not in WORLD_TYPES]
    if bad or not types:
        raise ValueError(f"types must be among {WORLD_TYPES}, got {types}")
    drawn = []
    for i in range(n):
        t = types[i % len(types)]
        drawn.append((t, i, make_item(i, seed, t, verify)[1]))
        if on_item is not None:
            on_item(i)
    counts = {t: sum(1 for d in drawn if d[0] == t) for t in types}
    items = []
    for t, i, parts in sorted(drawn, key=lambda d: (d[0], d[1])):
        key = f"{t}{i:011d}"
        folder = f"{t}_{slug(t)}_{counts[t]}"
        src_prompt, tgt_prompt = mark_difference(parts["source"].caption, parts["target"].caption)
        mask = parts["mask"]
        entry = {
            "image_path": f"{folder}/{key}.png",
            "original_prompt": src_prompt,
            "editing_prompt": tgt_prompt,
            "editing_instruction": parts["info"]["instruction"],
            "editing_type_id": str(t),
            "blended_word": parts["info"]["blended"],
            "mask": mask_encode(mask),
            "image_size": [spec.CANVAS_SIZE, spec.CANVAS_SIZE],
            "target_image_path": f"{folder}/{key}.png",
            "world": parts["world"],
        }
        items.append(WorldPieItem(key, t, entry, parts["source"], parts["target"], mask))
    return items


def mapping(items: list[WorldPieItem]) -> dict[str, Any]:
    """The ``mapping_file.json`` content of a set."""
    return {item.id: item.entry for item in items}


__all__ = [
    "PIE_STREAM",
    "WORLD_TYPES",
    "WorldPieItem",
    "check_edit",
    "edit_region",
    "make_item",
    "make_pie_set",
    "mapping",
    "world_check",
]
