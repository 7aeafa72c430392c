"""``promptedit world pie``: a PIE-Bench-format editing set drawn from the shapes world, with the exact target
image of every edit."""

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
    from ..outputs import write_bytes, write_image
    from ..pie import IMAGES_DIR, MAPPING_FILE, TARGETS_DIR
    from ..world.pie import mapping

    for item in items:
        write_image(out / IMAGES_DIR / item.entry["image_path"], item.source.image)
        write_image(out / TARGETS_DIR / item.entry["target_image_path"], item.target.image)
    path = out / MAPPING_FILE
    write_bytes(path, json.dumps(mapping(items), separators=(",", ":")).encode())
    return path


@click.group()
def world():
    """The shapes world: data sets drawn from it."""


@world.command("pie")
@click.option("--out", required=True, metavar="DIR", help="The set's folder.")
@click.option("--n", "n", type=click.IntRange(1, MAX_ITEMS), default=70, show_default=True,
              help="Edits, the editing types in turn (70: 10 of each of the 7 types the world can express).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="The set's draw.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pie(out, n, seed, quiet):
    """Write a PIE-Bench-format set: change object (shape), add and delete object, change colour, material
    (texture), background and style, each with its mask, its [ ]-marked prompts and its exact target image."""
    from ..outputs import check_output_dir
    from ..world.pie import make_pie_set

    started = time.perf_counter()
    out = check_output_dir(out)
    from tqdm.auto import tqdm

    with tqdm(total=n, desc="world pie", unit="edit", disable=quiet) as bar:
        items = make_pie_set(n, seed, on_item=lambda _: bar.update(1))
    path = save_pie_set(items, out)
    types = sorted({i.type_id for i in items})
    from ..outputs import write_json
    from ..records import build_record

    write_json(out / "result.json", build_record("world pie", started=started, files={"mapping": path.name},
                                                 extra={"n": n, "seed": seed, "editing_types": types}))
    click.echo(f"wrote {path}: {len(items)} edits of types {', '.join(map(str, types))} "
               f"({time.perf_counter() - started:.1f} s)")


COMMANDS = [world]
