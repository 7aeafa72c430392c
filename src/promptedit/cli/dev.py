"""``promptedit dev``: developer tools."""

from __future__ import annotations

import click


@click.group()
def dev():
    """Developer tools."""


@dev.command("tiny-model")
@click.argument("folder")
@click.option("--seed", type=int, default=0, show_default=True)
def tiny_model(folder, seed):
    """Write a tiny random-weight SD model FOLDER (noise images; for smoke tests only)."""
    from ..outputs import check_output_dir, make_output_dir
    from ..testing import save_model, tiny_components

    save_model(tiny_components(seed), make_output_dir(check_output_dir(folder)))
    click.echo(f"wrote {folder}")


COMMANDS = [dev]
