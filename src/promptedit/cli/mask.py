"""``promptedit mask`` (a mask alone) and ``promptedit mask-edit`` (a mask-guided edit): InstDiffEdit's instant
attention masks, DiffEdit's, or a mask file of the user's."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import ParameterError
from ..options import (
    INSTANT_OPTIONS,
    FiniteRange,
    check_input,
    echo,
    instant_mask_options,
    mask_edit_options,
    plan_mask_edit,
    prepare_image,
    run_mask_edit,
    sampling_options,
)
from ..requests import SamplingOptions
from .common import given, load, model_options, refuse_unused


@click.command()
@click.argument("image")
@click.option("--source", required=True, help="The image's caption.")
@click.option("--target", required=True, help="The edited prompt.")
@click.option("--out", required=True, metavar="MASK.png", help="The mask; MASK-overlay.png and MASK.json beside it.")
@click.option("--method", type=click.Choice(["instant", "diffedit"]), default="instant", show_default=True,
              help="Instant attention masks (InstDiffEdit) or DiffEdit's noise-difference masks.")
@click.option("--strength", type=FiniteRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Noise level the mask is made at.")
@click.option("--mask-steps", type=click.IntRange(min=1), default=None,
              help="Instant: steps of the denoising pass to run before taking the mask (default: the whole pass).")
@click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
              help="How the image is brought to the model's aspect ratio before resizing.")
@instant_mask_options
@sampling_options
@model_options
def mask(image, source, target, out, method, strength, mask_steps, fit, model, device, threads, quiet, **options):
    """Make the mask of the region that changes from SOURCE to TARGET in IMAGE."""
    from ..methods.maskedit import make_mask
    from ..outputs.files import check_output_file, file_set, write_image, write_json
    from ..outputs.records import build_record
    from ..images.visualize import mask_overlay

    started = time.perf_counter()
    if method != "instant":
        refuse_unused(INSTANT_OPTIONS + ("mask_steps",), f"with --method {method} (only with instant)")
    out = check_output_file(out)
    overlay = out.with_name(out.stem + "-overlay.png")
    if Path(image).resolve() in {out.resolve(), overlay.resolve(), out.with_suffix(".json").resolve()}:
        raise ParameterError(f"--out {out} would overwrite the input image")
    check_input(image)
    m = load(model, device, quiet=quiet, threads=threads)
    sampling = SamplingOptions.take(options)  # the rest: the instant-mask options
    prepared = prepare_image(m, image, fit, sampling, batch=2)
    extra = {"mask_steps": mask_steps, **options} if method == "instant" else {}
    result = make_mask(m, prepared.image, source, target, method=method, strength=strength,
                       num_inference_steps=sampling.steps, guidance_scale=sampling.guidance,
                       seed=0 if sampling.seed is None else sampling.seed, allow_large=sampling.allow_large,
                       progress=not quiet, **extra)
    for note in result.notes:
        echo(quiet, note)
    with file_set(out, overlay) as staged:
        write_image(staged / out.name, result.mask.astype("uint8") * 255)
        write_image(staged / overlay.name, mask_overlay(prepared.image, result.mask))
        write_json(staged / out.with_suffix(".json").name, build_record(
            "mask", m, result, started=started, files={"mask": out.name, "overlay": overlay.name},
            inputs={"image": {"path": str(image), "rule": prepared.rule}}))
    click.echo(f"wrote {out}: {result.mask.mean():.0%} of the image ({method}, {result.timings['mask']:.2f} s)")


@click.command("mask-edit")
@mask_edit_options
@model_options
def mask_edit(model, device, threads, quiet, **kw):
    """A mask-guided edit: the source noised to --strength and denoised under TARGET inside a mask, the rest
    kept pixel for pixel (kv-edit, FLUX.1: the source inverted, then only the mask's tokens denoised). Writes DIR/input.png (or source.png), DIR/edited.png, DIR/mask.png,
    DIR/mask-overlay.png, DIR/grid.png and DIR/result.json."""
    started = time.perf_counter()
    plan = plan_mask_edit(**kw, given=given())
    m = load(model, device, quiet=quiet, threads=threads)
    result = run_mask_edit(m, plan, quiet=quiet, started=started)
    click.echo(f"wrote {plan.out} ({result.method}, mask {result.mask.mean():.0%} of the image, "
               f"total {result.timings['total']:.1f} s)")


COMMANDS = [mask, mask_edit]
