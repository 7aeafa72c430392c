"""``promptedit invert``: invert a real image once, to edit it as often as wanted with ``edit --inversion``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import ParameterError
from ..options import check_input, invert_request, sampling_options
from ..requests import INVERSION_METHODS, SamplingOptions
from .common import load, model_options, refuse_unused


@click.command()
@click.argument("image")
@click.option("--prompt", required=True, help="The image's caption (the source prompt of later edits).")
@click.option("--method", type=click.Choice(INVERSION_METHODS), default=None,
              help="Inversion method: DDIM models take ddim; flow-matching models (FLUX.1, SD3) euler, rf-solver "
                   "(second order, 2 evaluations per step), fireflow (second order at Euler's cost), uni-inv; both "
                   "take direct (the source put back on the trajectory after every step: exact), and null-text and "
                   "negative-prompt where their guidance is classifier-free (default: null-text on DDIM models, "
                   "euler on flow models).")
@click.option("--out", required=True, metavar="FILE.safetensors",
              help="The inversion; FILE-reconstruction.png and FILE.json are written beside it.")
@click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
              help="How IMAGE is brought to the model's aspect ratio before resizing.")
@click.option("--inner-steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="Null-text: Adam iterations per step.")
@sampling_options
@model_options
def invert(image, prompt, method, out, fit, inner_steps, model, device, threads, quiet, **sampling):
    """Invert a real IMAGE under its caption, for editing with `promptedit edit --inversion`.

    --steps defaults to the model's inversion steps (the paper's 50), which the edits of the inversion reuse.
    """
    from ..methods.inversion import reconstruct
    from ..images.metrics import psnr
    from ..outputs.files import check_output_file, file_set, write_bytes, write_image, write_json
    from ..outputs.records import build_record

    started = time.perf_counter()
    refuse_unused(("seed",), "by an inversion (it uses no noise)")
    if method is not None and method != "null-text":
        refuse_unused(("inner_steps",), f"with --method {method} (only with null-text)")
    out = check_output_file(out, suffixes=(".safetensors",))
    rec_path = out.with_name(out.stem + "-reconstruction.png")
    if Path(image).resolve() in {out.resolve(), rec_path.resolve(), out.with_suffix(".json").resolve()}:
        raise ParameterError(f"--out {out} would overwrite the input image")
    check_input(image)
    m = load(model, device, quiet=quiet, threads=threads)
    if method is None:
        from ..methods.inversion import default_method

        method = default_method(m)
        if method != "null-text":
            refuse_unused(("inner_steps",), f"with --method {method}, this model's default (only with null-text)")
    sampling = SamplingOptions(**sampling)
    prepared, request = invert_request(m, image, prompt, method, fit, inner_steps, sampling, quiet)
    inv = request.run(m, progress=not quiet)
    rec = reconstruct(m, inv, progress=False)
    value = psnr(rec.images[0], prepared.image)
    with file_set(out, rec_path) as staged:  # all three, or none
        write_bytes(staged / out.name, inv.to_bytes())
        write_image(staged / rec_path.name, rec.images[0])
        write_json(staged / out.with_suffix(".json").name, build_record(
            "invert", m, rec, started=started, files={"inversion": out.name, "reconstruction": rec_path.name},
            inputs={"image": {"path": str(image), "rule": prepared.rule, "original_size": prepared.original_size,
                              "original_mode": prepared.original_mode}},
            extra={"reconstruction_psnr": round(value, 3), "inversion_seconds": round(inv.seconds, 3)}))
    click.echo(f"wrote {out} and {rec_path}: reconstruction PSNR {value:.2f} dB ({inv.seconds:.1f} s, {method})")


COMMANDS = [invert]
