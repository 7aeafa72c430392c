"""``promptedit dev``: developer tools."""

from __future__ import annotations

import click

from ..families import FAMILIES


@click.group()
def dev():
    """Developer tools."""


@dev.command("tiny-model")
@click.argument("folder")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--family", type=click.Choice(list(FAMILIES)), default="sd", show_default=True,
              help="A model family: sd (Stable Diffusion 1.x/2.x's architecture), sdxl (SDXL's: two text encoders, "
                   "text-time conditioning), flux (FLUX.1's MM-DiT: CLIP pooled vector, T5 keys, flow matching) or sd3 "
                   "(SD3.5's MM-DiT: two CLIPs' keys and pooled vectors, T5 keys, flow matching).")
def tiny_model(folder, seed, family):
    """Write a tiny random-weight model FOLDER in diffusers format (noise images; for smoke tests only)."""
    from ..outputs.files import check_output_dir, make_output_dir
    from ..testing import TINY_MODELS, save_model

    save_model(TINY_MODELS[family](seed), make_output_dir(check_output_dir(folder)))
    click.echo(f"wrote {folder}")


COMMANDS = [dev]
