"""Reading PIE-Bench folders (Ju et al., "PnP Inversion", ICLR 2024).

A PIE-Bench folder holds ``mapping_file.json`` and ``annotation_images/``::

    data/
      mapping_file.json            {"000000000000": {entry}, ...}
      annotation_images/0_random_140/000000000000.jpg ...
      target_images/...            (only in sets that carry the exact edit result,
                                    e.g. promptedit.world.pie; not in PIE-Bench)

Each entry has ``image_path`` (relative to ``annotation_images/``),
``original_prompt`` and ``editing_prompt`` (the words that differ are marked with
``[ ]``), ``editing_instruction``, ``editing_type_id`` (``"0"`` .. ``"9"``),
``blended_word`` (``"<word in source> <word in target>"`` or ``""``) and ``mask``:
the edited region as a run-length list ``[start, length, start, length, ...]`` of
row-major pixel indices of a 512 x 512 image.

Decoding follows the benchmark's own ``mask_decode`` (PnPInversion
``evaluation/evaluate.py`` lines 9-25): runs are cut at the end of the image
(:func:`read_pie` warns, once per folder, naming the entries whose runs were cut),
then the first and last rows and columns are set to 1 ("to avoid annotation
errors in boundary"). Prompts are stripped of the marks exactly as
``evaluate.py`` lines 255-256 do (every ``[`` and ``]`` removed, nothing else).

Sets that are not 512 x 512 state their size in each entry as ``"image_size":
[H, W]`` (an extension of this project; PIE-Bench itself has no such field), and
masks are decoded at that size.

Pure numpy + json: no torch; Pillow is imported only by the image loaders.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import PromptEditError

#: Editing types of PIE-Bench (README "PIE-Bench Benchmark" table; folder names of
#: ``annotation_images``). The ids are the ``editing_type_id`` strings of the mapping file.
EDITING_TYPES: Mapping[int, str] = MappingProxyType(
    {
        0: "random",
        1: "change object",
        2: "add object",
        3: "delete object",
        4: "change attribute content",
        5: "change attribute pose",
        6: "change attribute color",
        7: "change attribute material",
        8: "change background",
        9: "change style",
    }
)
#: Folder of each type in PIE-Bench's ``annotation_images`` (name, then the number of images).
PIE_FOLDERS: Mapping[int, str] = MappingProxyType(
    {
        0: "0_random_140",
        1: "1_change_object_80",
        2: "2_add_object_80",
        3: "3_delete_object_80",
        4: "4_change_attribute_content_40",
        5: "5_change_attribute_pose_40",
        6: "6_change_attribute_color_40",
        7: "7_change_attribute_material_40",
        8: "8_change_background_80",
        9: "9_change_style_80",
    }
)
#: PIE-Bench images and masks are 512 x 512 (``mask_decode(..., image_shape=[512, 512])``).
BENCHMARK_SIZE: tuple[int, int] = (512, 512)
MAPPING_FILE = "mapping_file.json"
IMAGES_DIR = "annotation_images"
TARGETS_DIR = "target_images"

_REQUIRED = ("image_path", "original_prompt", "editing_prompt", "editing_type_id", "mask")
_KNOWN = set(_REQUIRED) | {"editing_instruction", "blended_word", "image_size", "target_image_path"}
_MARKED = re.compile(r"\[([^\[\]]*)\]")


class PieDataError(PromptEditError):
    """A PIE-Bench folder cannot be read; the message names the file."""


class MappingFileError(PieDataError):
    """``mapping_file.json`` is missing, not JSON, or has an entry the benchmark cannot use."""


class PieImageError(PieDataError):
    """An image named by the mapping file is missing or unreadable."""


def slug(type_id: int) -> str:
    """``change attribute color`` -> ``change_attribute_color`` (PIE-Bench's folder style)."""
    return EDITING_TYPES[type_id].replace(" ", "_")


# --- Prompts ----------------------------------------------------------------------------


def strip_marks(prompt: str) -> str:
    """The prompt without its ``[ ]`` marks, as ``evaluate.py`` does: ``replace("[", "").replace("]", "")``."""
    return prompt.replace("[", "").replace("]", "")


def marked_words(prompt: str) -> tuple[str, ...]:
    """The texts inside ``[ ]`` in order, e.g. ``"a [rusty] bike"`` -> ``("rusty",)``."""
    return tuple(m.strip() for m in _MARKED.findall(prompt))


def mark_difference(source: str, target: str) -> tuple[str, str]:
    """Mark with ``[ ]`` the words that differ between two prompts.

    The common leading and trailing words are left alone; what lies between them
    is bracketed in each prompt where it is not empty, e.g. ``a red circle`` /
    ``a blue circle`` -> ``a [red] circle`` / ``a [blue] circle``, and
    ``a star`` / ``a big star`` -> ``a star`` / ``a [big] star``.
    """
    a, b = source.split(" "), target.split(" ")
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(len(a), len(b)) - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1

    def mark(words: list[str]) -> str:
        mid = words[p : len(words) - s]
        if not mid:
            return " ".join(words)
        return " ".join(words[:p] + ["[" + " ".join(mid) + "]"] + words[len(words) - s :])

    return mark(a), mark(b)


# --- Masks --------------------------------------------------------------------------------


def mask_decode(encoded: Sequence[int], shape: tuple[int, int] = BENCHMARK_SIZE, border: bool = True) -> np.ndarray:
    """Decode a PIE-Bench mask: bool (H, W), True where the image is to be edited.

    ``encoded`` is ``[start, length, ...]`` over the row-major flattened image.
    As the benchmark does, each run is cut at the end of the image (a run that
    starts past the end is ignored), and with ``border=True`` (the benchmark's
    decoding) the first and last rows and columns are set to True afterwards.
    ``border=False`` gives the annotated mask alone.

    Raises:
        ValueError: odd length, negative or non-integer values (the benchmark
            would crash or index from the end on those).
    """
    h, w = (int(v) for v in shape)
    values = _check_encoding(encoded)
    n = h * w
    flat = np.zeros(n, dtype=bool)
    for start, length in zip(values[0::2], values[1::2]):
        end = min(start + length, n)
        if start < end:
            flat[start:end] = True
    mask = flat.reshape(h, w)
    if border:
        mask[0, :] = mask[-1, :] = True
        mask[:, 0] = mask[:, -1] = True
    return mask


def _check_encoding(encoded: Sequence[int]) -> list[int]:
    values = list(encoded)
    if len(values) % 2:
        raise ValueError(f"a mask encoding has start/length pairs, got {len(values)} numbers")
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in values):
        raise ValueError("a mask encoding holds non-negative integers only")
    return values


def runs_past_end(encoded: Sequence[int], shape: tuple[int, int] = BENCHMARK_SIZE) -> int:
    """How many runs of a mask encoding reach past the end of an image of ``shape`` (the decoder cuts them)."""
    values = _check_encoding(encoded)
    n = int(shape[0]) * int(shape[1])
    return sum(start + length > n for start, length in zip(values[0::2], values[1::2]))


def mask_encode(mask: np.ndarray) -> list[int]:
    """Encode a bool (H, W) mask the way PIE-Bench stores it: ``[start, length, ...]``
    of the runs of True in row-major order. ``mask_decode(mask_encode(m), m.shape,
    border=False)`` equals ``m``."""
    flat = np.asarray(mask, dtype=bool).ravel()
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # run starts, then run ends, alternating
    starts, ends = edges[0::2], edges[1::2]
    out = np.empty(2 * starts.size, dtype=np.int64)
    out[0::2], out[1::2] = starts, ends - starts
    return out.tolist()


# --- Items ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PieItem:
    """One PIE-Bench entry.

    Attributes:
        id: the mapping file's key (e.g. ``"000000000000"``).
        image_path: absolute path of the source image.
        relative_path: ``image_path`` as written in the mapping file (output images of
            an editing method are stored under the same relative path).
        source_prompt, target_prompt: the prompts with ``[ ]`` removed.
        source_prompt_marked, target_prompt_marked: the prompts as written.
        instruction: ``editing_instruction`` ("" if absent).
        type_id, type_name: editing type (see :data:`EDITING_TYPES`).
        blended_words: ``blended_word`` split on spaces (``()`` when empty); the
            benchmark's scripts use word 0 in the source prompt and word 1 in the target.
        source_marked, target_marked: the texts inside ``[ ]`` in each prompt.
        size: (H, W) the mask was decoded at (the set's stated size, else 512 x 512).
        mask: bool (H, W), the benchmark's decoding (border rows/columns True); read-only.
        annotated_mask: bool (H, W), the annotation without the border rule; read-only.
        target_image_path: absolute path of the exact edit result, for sets that carry one.
        mask_runs_cut: runs of the mask encoding that reached past the image's end (cut, as the benchmark does).
        extra: the entry's other fields (e.g. the shapes world's ground truth).
    """

    id: str
    image_path: Path
    relative_path: str
    source_prompt: str
    target_prompt: str
    source_prompt_marked: str
    target_prompt_marked: str
    instruction: str
    type_id: int
    type_name: str
    blended_words: tuple[str, ...]
    source_marked: tuple[str, ...]
    target_marked: tuple[str, ...]
    size: tuple[int, int]
    mask: np.ndarray = field(repr=False, compare=False)
    annotated_mask: np.ndarray = field(repr=False, compare=False)
    target_image_path: Path | None = None
    mask_runs_cut: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _entry_error(path: Path, key: str, what: str) -> MappingFileError:
    return MappingFileError(f"{path}: entry {key!r} {what}")


def _parse_size(value: Any, path: Path, key: str) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise _entry_error(path, key, f"has image_size {value!r}; expected [height, width] in pixels")
    return int(value[0]), int(value[1])


def _inside(relative: str) -> bool:
    """``relative`` names a file inside the folder it is relative to: not absolute, no ``..``, not empty.
    Edited images are written to the same relative path under a run's folder."""
    p = PurePosixPath(relative.replace("\\", "/"))
    return bool(relative.strip()) and not p.is_absolute() and ".." not in p.parts and not PureWindowsPath(relative).drive


def parse_entry(
    key: str,
    entry: Mapping[str, Any],
    *,
    mapping_path: Path,
    images_dir: Path,
    targets_dir: Path | None = None,
    size: tuple[int, int] | None = None,
    check_images: bool = True,
) -> PieItem:
    """One mapping-file entry as a :class:`PieItem` (see :func:`read_pie`)."""
    if not isinstance(entry, Mapping):
        raise _entry_error(mapping_path, key, f"is a {type(entry).__name__}, expected an object")
    for name in _REQUIRED:
        if name not in entry:
            raise _entry_error(mapping_path, key, f"lacks {name!r}")
    for name in ("image_path", "original_prompt", "editing_prompt"):
        if not isinstance(entry[name], str):
            raise _entry_error(mapping_path, key, f"has a non-text {name!r}")
    try:
        type_id = int(str(entry["editing_type_id"]))
    except ValueError:
        type_id = -1
    if type_id not in EDITING_TYPES:
        raise _entry_error(mapping_path, key, f"has editing_type_id {entry['editing_type_id']!r}; expected 0 to 9")
    if "image_size" in entry:
        shape = _parse_size(entry["image_size"], mapping_path, key)
    else:
        shape = tuple(size) if size is not None else BENCHMARK_SIZE
    if not isinstance(entry["mask"], list):
        raise _entry_error(mapping_path, key, "has a mask that is not a list of run starts and lengths")
    try:
        mask = mask_decode(entry["mask"], shape, border=True)
        annotated = mask_decode(entry["mask"], shape, border=False)
        cut = runs_past_end(entry["mask"], shape)
    except ValueError as exc:
        raise _entry_error(mapping_path, key, f"has a corrupt mask ({exc})") from None
    mask.setflags(write=False)
    annotated.setflags(write=False)
    blended = entry.get("blended_word", "") or ""
    if not isinstance(blended, str):
        raise _entry_error(mapping_path, key, "has a non-text 'blended_word'")
    instruction = entry.get("editing_instruction", "") or ""
    for name in ("image_path", "target_image_path"):
        if isinstance(entry.get(name), str) and not _inside(entry[name]):
            raise _entry_error(mapping_path, key, f"has {name} {entry[name]!r}, not a file inside its folder (a "
                                                  "relative path without '..' is expected)")
    image_path = images_dir / entry["image_path"]
    if check_images and not image_path.is_file():
        raise PieImageError(f"{image_path}: source image of entry {key!r} not found")
    target_path = None
    if entry.get("target_image_path"):
        if not isinstance(entry["target_image_path"], str):
            raise _entry_error(mapping_path, key, "has a non-text 'target_image_path'")
        target_path = (targets_dir if targets_dir is not None else images_dir.parent / TARGETS_DIR) / entry["target_image_path"]
        if check_images and not target_path.is_file():
            raise PieImageError(f"{target_path}: target image of entry {key!r} not found")
    src_marked, tgt_marked = entry["original_prompt"], entry["editing_prompt"]
    return PieItem(
        id=str(key),
        image_path=image_path,
        relative_path=entry["image_path"],
        source_prompt=strip_marks(src_marked),
        target_prompt=strip_marks(tgt_marked),
        source_prompt_marked=src_marked,
        target_prompt_marked=tgt_marked,
        instruction=str(instruction),
        type_id=type_id,
        type_name=EDITING_TYPES[type_id],
        blended_words=tuple(blended.split(" ")) if blended != "" else (),
        source_marked=marked_words(src_marked),
        target_marked=marked_words(tgt_marked),
        size=(int(shape[0]), int(shape[1])),
        mask=mask,
        annotated_mask=annotated,
        target_image_path=target_path,
        mask_runs_cut=cut,
        extra=MappingProxyType({k: v for k, v in entry.items() if k not in _KNOWN}),
    )


def read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping file as a dict (key -> entry), in file order.

    Raises:
        MappingFileError: missing, unreadable, not JSON, or not an object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingFileError(f"{path}: mapping file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(f"{path}: cannot read the mapping file ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MappingFileError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise MappingFileError(f"{path}: expected a JSON object of entries, got a {type(data).__name__}")
    return data


def read_pie(
    folder: str | os.PathLike,
    *,
    types: Iterable[int] | None = None,
    size: tuple[int, int] | None = None,
    mapping_file: str = MAPPING_FILE,
    images_dir: str | os.PathLike | None = None,
    check_images: bool = True,
) -> list[PieItem]:
    """Read a PIE-Bench folder into items, in the mapping file's order (the benchmark's order).

    Args:
        folder: the data folder (holding ``mapping_file.json`` and ``annotation_images/``),
            or the mapping file itself (images then beside it in ``annotation_images/``).
        types: keep only these editing type ids (like ``--edit_category_list``).
        size: (H, W) to decode masks at when an entry states none; default 512 x 512.
        images_dir: where ``image_path`` is relative to; default ``<folder>/annotation_images``.
        check_images: fail when a source (or target) image is missing.

    Raises:
        MappingFileError: missing or corrupt mapping file, or an unusable entry.
        PieImageError: an image named by an entry does not exist.
    """
    root = Path(folder)
    mapping_path = root if root.is_file() else root / mapping_file
    if root.is_file():
        root = root.parent
    data = read_mapping(mapping_path)
    images = Path(images_dir) if images_dir is not None else root / IMAGES_DIR
    keep = None if types is None else {int(t) for t in types}
    items: list[PieItem] = []
    errors: list[PieDataError] = []
    for key, entry in data.items():
        try:
            item = parse_entry(
                key, entry, mapping_path=mapping_path, images_dir=images, targets_dir=root / TARGETS_DIR,
                size=size, check_images=check_images,
            )
        except PieDataError as exc:  # every bad entry is reported at once, not one per run
            errors.append(exc)
            continue
        if keep is None or item.type_id in keep:
            items.append(item)
    if errors:
        raise _all_errors(errors, mapping_path)
    cut = [item.id for item in items if item.mask_runs_cut]
    if cut:
        warnings.warn(f"{mapping_path}: {len(cut)} entr{'y has' if len(cut) == 1 else 'ies have'} mask runs past the "
                      f"image's end, cut there as PIE-Bench's decoder cuts them ({_some(cut)})", stacklevel=2)
    return items


def _some(ids: Sequence[str], shown: int = 5) -> str:
    """``'a', 'b', 'c'`` and how many more."""
    text = ", ".join(repr(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _all_errors(errors: Sequence[PieDataError], mapping_path: Path) -> PieDataError:
    """One error for all bad entries of a mapping file, in one line: the first few reasons, and how many."""
    if len(errors) == 1:
        return errors[0]
    kinds = {type(e) for e in errors}
    kind = kinds.pop() if len(kinds) == 1 else PieDataError
    prefix = f"{mapping_path}: "
    reasons = [str(e)[len(prefix):] if str(e).startswith(prefix) else str(e) for e in errors]
    shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
    return kind(f"{mapping_path}: {len(errors)} bad entries: {shown}")


def fingerprint(folder: str | os.PathLike) -> str:
    """A short hash of a PIE folder's data: its mapping file's bytes and the bytes of every source (and exact
    target) image its entries name, in order. Two sets with the same ids but other prompts, masks or images
    differ (a batch run records it, and ``evaluate`` refuses a run made on another set).

    Raises:
        MappingFileError: the mapping file cannot be read.
    """
    root = Path(folder)
    mapping_path = root if root.is_file() else root / MAPPING_FILE
    data = read_mapping(mapping_path)
    h = hashlib.sha256(json.dumps(data, sort_keys=False, separators=(",", ":")).encode())
    for entry in data.values():
        for name, base in (("image_path", IMAGES_DIR), ("target_image_path", TARGETS_DIR)):
            path = mapping_path.parent / base / entry[name] if isinstance(entry, Mapping) and isinstance(
                entry.get(name), str) and entry[name] else None
            try:
                h.update(hashlib.sha256(path.read_bytes()).digest() if path is not None else b"-")
            except OSError:
                h.update(b"missing")
    return h.hexdigest()[:16]


# --- Images ---------------------------------------------------------------------------------


def crop_output(image: np.ndarray, size: tuple[int, int] = BENCHMARK_SIZE) -> np.ndarray:
    """What ``evaluate.py`` (lines 271-273) keeps of an edited image saved as panels side by side (PnPInversion's
    editing scripts save ``[instruction | source | reconstruction | edited]``, the edited image last): the
    bottom-right ``size`` block, for an image as tall as ``size`` and a whole number of times as wide. Any other
    image is returned unchanged (:func:`output_at_size` brings it to the set's size)."""
    h, w = image.shape[:2]
    th, tw = size
    if h != th or w <= tw or w % tw:
        return image
    return image[h - th : h, w - tw : w]


#: The filter an edited image of another size is resized with to the set's size (Pillow's).
RESIZE_FILTER = "Lanczos"


def output_at_size(image: np.ndarray, size: tuple[int, int], fit: str = "crop"
                   ) -> tuple[np.ndarray, tuple[int, int, int, int] | None, str]:
    """An edited image (h, w, 3) brought to the frame of the set's (H, W) = ``size`` image it was edited from.

    The model edited the source brought to its own size by the image rule (:mod:`promptedit.images.inputs`): with the
    source's aspect ratio, the edit is resized to ``size`` (Lanczos); with another, under ``fit="crop"`` it
    covers the source's centre box of its aspect ratio, and is resized to that box (the metrics are then taken
    over the box), and under ``fit="pad"`` its padding is cut off before it is resized.

    Returns:
        (image, box, how): the image (uint8 (h', w', 3)); the box (top, left, height, width) of the set's image
        it covers, or None for all of it; what was done, in words ("" when nothing).
    """
    from PIL import Image

    from ..images.inputs import crop_box, pad_size

    h, w = image.shape[:2]
    H, W = (int(v) for v in size)
    if (h, w) == (H, W):
        return image, None, ""
    im = Image.fromarray(np.ascontiguousarray(image))
    resized = f"resized {w}x{h} to {{}} ({RESIZE_FILTER})"
    if h * W == w * H:  # the same aspect ratio
        return np.asarray(im.resize((W, H), Image.LANCZOS)), None, resized.format(f"{W}x{H}")
    if fit == "pad":
        pw, ph = pad_size((W, H), (w, h))
        left, top = (pw - W) // 2, (ph - H) // 2
        out = np.asarray(im.resize((pw, ph), Image.LANCZOS))[top : top + H, left : left + W]
        return out, None, resized.format(f"{pw}x{ph}") + f", its padding cut off to {W}x{H}"
    left, top, cw, ch = crop_box((W, H), (w, h))
    out = np.asarray(im.resize((cw, ch), Image.LANCZOS))
    return out, (top, left, ch, cw), resized.format(f"{cw}x{ch}") + f": the centre {cw}x{ch} of the {W}x{H} source"


def crop_item(item: PieItem, box: tuple[int, int, int, int]) -> PieItem:
    """The item with its masks cut to ``box`` (top, left, height, width) (see :func:`output_at_size`)."""
    import dataclasses

    top, left, h, w = box
    masks = {}
    for name in ("mask", "annotated_mask"):
        m = np.array(getattr(item, name)[top : top + h, left : left + w])
        m.setflags(write=False)
        masks[name] = m
    return dataclasses.replace(item, size=(h, w), **masks)


def read_rgb(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as saved, uint8 (H, W, 3) RGB (not resized or cropped, unlike :func:`promptedit.images.inputs.load_image`);
    with ``size``, it must be (H, W) = size.

    Raises:
        ImageInputError: missing, unreadable, not a regular file or too large (:func:`promptedit.images.inputs.open_image`).
        PieImageError: of another size.
    """
    from ..images.inputs import open_image

    path = Path(path)
    with open_image(path) as im:  # the image reader's rules: regular file, size limit, truncation, non-images
        array = np.asarray(im.convert("RGB"))
    if size is not None and array.shape[:2] != tuple(size):
        raise PieImageError(f"{path}: image is {array.shape[0]}x{array.shape[1]}, the mask is {size[0]}x{size[1]}")
    return array


def load_source(item: PieItem) -> np.ndarray:
    """The item's source image, uint8 (H, W, 3), checked against the mask's size."""
    return read_rgb(item.image_path, item.size)


def load_target(item: PieItem) -> np.ndarray | None:
    """The exact edit result of sets that carry one, else None."""
    return None if item.target_image_path is None else read_rgb(item.target_image_path, item.size)


def load_output(folder: str | os.PathLike, item: PieItem) -> np.ndarray:
    """An editing method's output for ``item``: ``<folder>/<relative_path>``, its edited panel cut out as the
    benchmark does (:func:`crop_output`); at the size it was saved (see :func:`output_at_size`)."""
    return crop_output(read_rgb(Path(folder) / item.relative_path), item.size)


__all__ = [
    "BENCHMARK_SIZE",
    "EDITING_TYPES",
    "PIE_FOLDERS",
    "MappingFileError",
    "PieDataError",
    "PieImageError",
    "PieItem",
    "crop_item",
    "crop_output",
    "fingerprint",
    "load_output",
    "load_source",
    "load_target",
    "mark_difference",
    "marked_words",
    "mask_decode",
    "mask_encode",
    "output_at_size",
    "parse_entry",
    "read_mapping",
    "read_pie",
    "read_rgb",
    "runs_past_end",
    "slug",
    "strip_marks",
]
