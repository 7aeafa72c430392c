"""``promptedit world``: the shapes world from the command line. ``world render``: one scene of a caption, a real
image for ``invert``, ``edit --image`` and ``mask``, with its ground truth; ``world pie``: a PIE-Bench-format
editing set drawn from the shapes world, with the exact target image of every edit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

MAX_ITEMS = 100_000  # PIE-Bench has 700; the set is drawn in memory before it is written

def save_pie_set(items, out: Path) -> Path:
    """Lay a set out as PIE-Bench does (``mapping_file.json``, ``annotation_images/``) plus ``target_images/``;
    every file written atomically, the mapping file last (a reader never sees entries whose images are
    missing). Returns the mapping file's path."""
    from ..outputs.files import write_bytes, write_image
    from ..pie.data import IMAGES_DIR, MAPPING_FILE, TARGETS_DIR
    from ..world.pie import mapping

    for item in items:
        write_image(out / IMAGES_DIR / item.entry["image_path"], item.source.image)
        write_image(out / TARGETS_DIR / item.entry["target_image_path"], item.target.image)
    path = out / MAPPING_FILE
    write_bytes(path, json.dumps(mapping(items), separators=(",", ":")).encode())
    return path


@click.group()
def world():
    """The shapes world: scenes and data sets drawn from it."""


@world.command("render")
@click.argument("caption")
@click.option("--out", required=True, metavar="FILE.png",
              help="The image (64 x 64); FILE.json holds its ground truth: the words, each object's box and mask.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="The layout's draw.")
def render_scene(caption, out, seed):
    """Render a scene of CAPTION, with its ground truth.

    CAPTION is a caption of the shapes world (docs/shapes-world.md), e.g. "a red circle on a white background";
    the scene is a real image to any model (one it never generated), for `invert`, `edit --image`, `mask` and
    `mask-edit`."""
    import numpy as np

    from ..errors import PromptError
    from ..outputs.files import check_output_file, write_image, write_json
    from ..outputs.records import build_record
    from ..world import CaptionError, ground_truth, layout_scene, parse_caption, render

    started = time.perf_counter()
    out = check_output_file(out)
    try:
        words = parse_caption(caption)
    except CaptionError as e:
        raise PromptError(f"{caption!r} is not a shapes-world caption: {e}") from None
    result = render(layout_scene(words, np.random.default_rng(seed)))
    write_image(out, result.image)
    record = out.with_suffix(".json")
    write_json(record, build_record("world render", started=started, files={"image": out.name},
                                    extra={"seed": seed, **ground_truth(result)}, with_environment=False))
    click.echo(f"wrote {out} and {record}")


@world.command("pie")
@click.option("--out", required=True, metavar="DIR", help="The set's folder.")
@click.option("--n", "n", type=click.IntRange(1, MAX_ITEMS), default=70, show_default=True,
              help="Edits, the editing types in turn (70: 10 of each of the 7 types the world can express).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="The set's draw.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pie(out, n, seed, quiet):
    """Write a PIE-Bench-format set: change object (shape), add and delete object, change colour, material
    (texture), background and style, each with its mask, its [ ]-marked prompts and its exact target image."""
    from ..outputs.files import check_output_dir
    from ..world.pie import make_pie_set

    started = time.perf_counter()
    out = check_output_dir(out)
    from tqdm.auto import tqdm

    with tqdm(total=n, desc="world pie", unit="edit", disable=quiet) as bar:
        items = make_pie_set(n, seed, on_item=lambda _: bar.update(1))
    path = save_pie_set(items, out)
    types = sorted({i.type_id for i in items})
    from ..outputs.files import write_json
    from ..outputs.records import build_record

    write_json(out / "result.json", build_record("world pie", started=started, files={"mapping": path.name},
                                                 extra={"n": n, "seed": seed, "editing_types": types}))
    click.echo(f"wrote {path}: {len(items)} edits of types {', '.join(map(str, types))} "
               f"({time.perf_counter() - started:.1f} s)")


COMMANDS = [world]
