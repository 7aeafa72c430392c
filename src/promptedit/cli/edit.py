"""``promptedit edit``: a Prompt-to-Prompt edit of a generated image (from a seed) or of a real image (inverted
first with ``--image``, or a saved ``--inversion``); the edit given by flags or by one prompt in edit syntax.
Its options, checks and run are :mod:`promptedit.options`' (batch manifests take the same)."""

from __future__ import annotations

import time

import click

from ..options import edit_options, plan_edit, run_edit
from .common import folder_defaults, given, load, model_options


@click.command()
@edit_options
@model_options
def edit(model, device, threads, quiet, **kw):
    """Edit an image by editing its prompt: SOURCE → TARGET prompt(s), attention injected (Prompt-to-Prompt).

    A generated image (from --seed) writes DIR/source.png; a real image (--image, or --inversion) writes
    DIR/reconstruction.png (and, for --image, DIR/input.png and DIR/inversion.safetensors). Both write
    DIR/edited.png (edited-K.png for several targets), DIR/grid.png and DIR/result.json. Mask-guided edits are
    `promptedit mask-edit`.
    """
    started = time.perf_counter()
    needs_steps = kw["one_prompt"] is not None and kw["steps"] is None and not kw["inversion"]
    plan = plan_edit(**kw, given=given(), defaults=folder_defaults(model) if needs_steps else None)
    m = load(model, device, quiet=quiet, threads=threads)
    result = run_edit(m, plan, quiet=quiet, started=started)
    click.echo(f"wrote {plan.out} (mode {result.mode}, {result.timings['total']:.1f} s)")


COMMANDS = [edit]
