"""``promptedit dev``: developer tools."""

from __future__ import annotations

import click


@click.group()
def dev():
    """Developer tools."""


@dev.command("tiny-model")
@click.argument("folder")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--family", type=click.Choice(["sd", "sdxl"]), default="sd", show_default=True,
              help="Stable Diffusion 1.x/2.x's architecture, or SDXL's (two text encoders, text-time conditioning).")
def tiny_model(folder, seed, family):
    """Write a tiny random-weight model FOLDER in diffusers format (noise images; for smoke tests only)."""
    from ..outputs import check_output_dir, make_output_dir
    from ..testing import save_model, tiny_components, tiny_sdxl_components

    build = tiny_sdxl_components if family == "sdxl" else tiny_components
    save_model(build(seed), make_output_dir(check_output_dir(folder)))
    click.echo(f"wrote {folder}")


COMMANDS = [dev]
