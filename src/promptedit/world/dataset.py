"""Shapes-world datasets: on the fly for training, or written to disk with ground truth.

Sample ``i`` of seed ``seed`` is drawn with its own generator,
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(i,)))``, so it does not
depend on how many samples are drawn, nor on whether they are written or streamed.

On disk (:func:`write_dataset`)::

    out_dir/images/000000.png ...   RGB 64 x 64
    out_dir/metadata.jsonl          one JSON object per sample (see :func:`sample_record`)

Masks are stored in the metadata as row-major run-length encodings
(:func:`rle_encode`). Every file is written to a temporary name and moved into
place with ``os.replace``, so readers never see a partial file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from . import spec
from .render import RenderResult, render
from .sample import sample_scene
from .scene import Scene


def scene_at(seed: int, index: int, p_two_objects: float = spec.P_TWO_OBJECTS) -> Scene:
    """Scene ``index`` of the dataset with this ``seed`` (``p_two_objects``: see :func:`sample_scene`)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    return sample_scene(rng, p_two_objects)


def iter_samples(n: int | None, seed: int, start: int = 0,
                 p_two_objects: float = spec.P_TWO_OBJECTS) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(caption, image, masks)`` for samples start .. start + n - 1 (forever if n is None).

    image: uint8 (64, 64, 3); masks: bool (n_objects, 64, 64) in caption order.
    """
    i = start
    while n is None or i < start + n:
        result = render(scene_at(seed, i, p_two_objects))
        yield result.caption, result.image, result.masks
        i += 1


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Row-major run lengths of a bool (H, W) mask, starting with a run of False (maybe 0)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`rle_encode`; bool (H, W)."""
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2 == 1
    flat = np.repeat(values, rle["counts"])
    if flat.size != h * w:
        raise ValueError(f"run lengths cover {flat.size} pixels, expected {h * w}")
    return flat.reshape(h, w)


def ground_truth(result: RenderResult) -> dict[str, Any]:
    """Every ground-truth field of the specification for a rendered scene.

    Keys: caption, background, prefix, night, objects (each with colour, shape, size,
    texture, box [x, y, s] and mask as RLE).
    """
    record = result.scene.to_dict()
    for obj, mask in zip(record["objects"], result.masks):
        obj["mask"] = rle_encode(mask)
    return record


def sample_record(result: RenderResult, index: int, seed: int, image_path: str) -> dict[str, Any]:
    """The metadata line of one sample: index, seed, image and its :func:`ground_truth`."""
    return {"index": index, "seed": seed, "image": image_path, **ground_truth(result)}


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_dataset(out_dir: str | os.PathLike, n: int, seed: int) -> Path:
    """Render samples 0 .. n-1 of ``seed`` into ``out_dir``; returns the metadata path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        result = render(scene_at(seed, i))
        rel = f"images/{i:06d}.png"
        _atomic_write(out / rel, _png_bytes(result.image))
        lines.append(json.dumps(sample_record(result, i, seed, rel), separators=(",", ":")))
    meta = out / "metadata.jsonl"
    _atomic_write(meta, ("\n".join(lines) + "\n" if lines else "").encode())
    return meta


def read_dataset(out_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the records of a written dataset with ``image`` (uint8 (64, 64, 3)),
    ``masks`` (bool (n_objects, 64, 64)) and ``scene`` (:class:`Scene`) added."""
    out = Path(out_dir)
    with open(out / "metadata.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            with Image.open(out / record["image"]) as im:
                record["image_path"] = record["image"]
                record["image"] = np.asarray(im.convert("RGB"))
            record["masks"] = np.array([rle_decode(o["mask"]) for o in record["objects"]], dtype=bool)
            record["scene"] = Scene.from_dict(record)
            yield record
