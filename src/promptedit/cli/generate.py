"""``promptedit generate``: plain text-to-image generation."""

from __future__ import annotations

import time

import click

from ..options import negative_prompt_option, sampling_options
from .common import load, model_options


@click.command()
@click.argument("prompt")
@click.option("--out", required=True, metavar="FILE.png", help="Output image; FILE.json records the run.")
@sampling_options
@negative_prompt_option
@model_options
def generate(prompt, out, model, device, threads, quiet, **sampling):
    """Generate an image from PROMPT."""
    from ..outputs.files import check_output_file, file_set, write_image, write_json
    from ..outputs.records import build_record
    from ..requests import GenerateRequest, SamplingOptions

    started = time.perf_counter()
    out = check_output_file(out)
    request = GenerateRequest(prompt, SamplingOptions(**sampling))
    m = load(model, device, quiet=quiet, threads=threads)
    result = request.run(m, progress=not quiet)
    with file_set(out) as staged:  # the image and its record, or neither
        write_image(staged / out.name, result.images[0])
        write_json(staged / out.with_suffix(".json").name, build_record("generate", m, result, started=started,
                                                                        files={"image": out.name}))
    click.echo(f"wrote {out} ({result.timings['total']:.1f} s)")


COMMANDS = [generate]
