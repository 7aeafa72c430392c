"""``promptedit mask`` (a mask alone) and ``promptedit mask-edit`` (a mask-guided edit): InstDiffEdit's instant
attention masks, DiffEdit's, or a mask file of the user's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import ParameterError
from ..requests import InstantOptions, MaskEditRequest, SamplingOptions
from .common import (
    FiniteRange,
    check_input,
    check_not_inputs,
    echo,
    given,
    load,
    model_options,
    prepare_image,
    refuse_unused,
    run_size,
    sampling_options,
)

INSTANT_OPTIONS = ("anchor", "threshold", "smooth_times", "guided_filter_radius", "region_peak", "object_threshold",
                   "background_threshold", "num_seeds")


def instant_mask_options(f):
    """The instant-mask (InstDiffEdit) options, the model's defaults (else the authors') when not given."""
    options = [
        click.option("--anchor", type=click.Choice(["source", "edited", "start-token"]), default="source",
                     show_default=True,
                     help="Whose maps make the mask: the source text's, anchored on the words the edit replaces; the "
                          "edit text's, anchored on the edited words; or the edit text's, anchored on any word "
                          "(start-token: the paper's rule)."),
        click.option("--threshold", type=FiniteRange(0, 1, max_open=True), default=None,
                     help="φ, the binarisation threshold of the normalised mask (default: the model's; the authors' "
                          "0.2 unless its promptedit.json says otherwise)."),
        click.option("--smooth", "smooth_times", type=click.IntRange(min=0), default=None,
                     help="Passes of 5x5 Gaussian smoothing (default: the model's; the authors' 2; the embedded "
                          "model: 0, its maps are trained to fall inside their objects)."),
        click.option("--guided-filter", "guided_filter_radius", type=FiniteRange(0, 64), default=None,
                     metavar="CELLS",
                     help="Refine the final mask's edges with a guided filter that follows the image, radius in "
                          "attention-map cells; 0 turns it off (default: the model's; none, as in the paper; the "
                          "embedded model: 2)."),
        click.option("--region-peak", "region_peak", type=FiniteRange(0, 1), default=None, metavar="FRACTION",
                     help="Keep only the final mask's connected regions whose peak reaches this fraction of the "
                          "strongest region's; 0 keeps them all (default: the model's; 0, as in the paper; the "
                          "embedded model: 0.9)."),
        click.option("--object-threshold", type=FiniteRange(-1, 1), default=0.9, show_default=True,
                     help="Words at least this similar to the anchor are the object."),
        click.option("--background-threshold", type=FiniteRange(-1, 1), default=0.6, show_default=True,
                     help="Words at most this similar to the anchor are the background."),
        click.option("--seeds", "num_seeds", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Noise draws whose masks are averaged (the authors average 3)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


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
def mask(image, source, target, out, method, strength, mask_steps, fit, model, device, threads, quiet, steps, guidance,
         seed, height, width, allow_large, **instant):
    """Make the mask of the region that changes from SOURCE to TARGET in IMAGE."""

    from ..maskedit import make_mask
    from ..outputs import check_output_file, file_set, write_image, write_json
    from ..records import build_record
    from ..visualize import mask_overlay

    started = time.perf_counter()
    if method != "instant":
        refuse_unused(INSTANT_OPTIONS + ("mask_steps",), f"with --method {method} (only with instant)")
    out = check_output_file(out)
    overlay = out.with_name(out.stem + "-overlay.png")
    if Path(image).resolve() in {out.resolve(), overlay.resolve(), out.with_suffix(".json").resolve()}:
        raise ParameterError(f"--out {out} would overwrite the input image")
    check_input(image)
    m = load(model, device, quiet=quiet, threads=threads)
    prepared = prepare_image(m, image, fit, SamplingOptions(height=height, width=width, allow_large=allow_large),
                             batch=2)
    extra = {"mask_steps": mask_steps, **instant} if method == "instant" else {}
    result = make_mask(m, prepared.image, source, target, method=method, strength=strength,
                       num_inference_steps=steps, guidance_scale=guidance, seed=0 if seed is None else seed,
                       allow_large=allow_large, progress=not quiet, **extra)
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
@click.option("--source", required=True, help="The image's caption (or the prompt of the generated source).")
@click.option("--target", required=True, help="The edited prompt.")
@click.option("--out", required=True, metavar="DIR", help="Output folder.")
@click.option("--image", default=None, metavar="IMAGE", help="The image to edit (default: generated from --seed).")
@click.option("--method", type=click.Choice(["instant", "diffedit"]), default="instant", show_default=True,
              help="The mask: instant attention masks (InstDiffEdit: mask and edit in one pass, then an inpainting "
                   "pass) or DiffEdit's (through diffusers).")
@click.option("--mask", "mask_file", default=None, metavar="MASK.png",
              help="Edit only inside this mask (white = edit), instead of a mask the method makes.")
@click.option("--strength", type=FiniteRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="How far the source is noised (fraction of the steps).")
@click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
              help="How --image (and --mask, the same way) is brought to the model's aspect ratio before resizing.")
@click.option("--inpaint-model", default=None, metavar="PATH",
              help="Instant: a diffusers inpainting folder (SD or SDXL) for the final pass over the mask (default: "
                   "the same model regenerates the masked region).")
@instant_mask_options
@sampling_options
@model_options
def mask_edit(model, device, threads, quiet, **kw):
    """A mask-guided edit: the source noised to --strength and denoised under TARGET inside a mask, the rest
    kept pixel for pixel. Writes DIR/input.png (or source.png), DIR/edited.png, DIR/mask.png,
    DIR/mask-overlay.png, DIR/grid.png and DIR/result.json."""
    started = time.perf_counter()
    plan = plan_mask_edit(**kw)
    m = load(model, device, quiet=quiet, threads=threads)
    result = run_mask_edit(m, plan, quiet=quiet, started=started)
    click.echo(f"wrote {plan.out} ({result.method}, mask {result.mask.mean():.0%} of the image, "
               f"total {result.timings['total']:.1f} s)")


@dataclass
class MaskEditPlan:
    """A mask-guided edit checked before any model loads: its options, its input files and where it writes (the
    request is made once the model is loaded, which the image and mask are read at the size of)."""

    source: str
    target: str
    out: Path
    image: str | None
    mask_file: str | None
    method: str
    strength: float
    fit: str
    inpaint_model: str | None
    sampling: SamplingOptions
    instant: InstantOptions


def plan_mask_edit(source, target, out, image, method, mask_file, strength, fit, inpaint_model, steps, guidance,
                   seed, height, width, allow_large, **instant) -> MaskEditPlan:
    """Check a mask-guided edit's options and inputs before anything loads (one-line errors)."""
    from ..outputs import MASK_EDIT_FILES, check_output_dir

    if mask_file:
        if given("method"):
            raise ParameterError(f"--mask replaces the mask that --method {method} makes: give one of them")
        refuse_unused(INSTANT_OPTIONS + ("inpaint_model",), "with --mask (only with --method instant)")
    elif method != "instant":
        refuse_unused(INSTANT_OPTIONS + ("inpaint_model",), f"with --method {method} (only with instant)")
    if image:
        check_input(image)
    if mask_file:
        check_input(mask_file, "mask")
    out = check_output_dir(out)
    check_not_inputs(out, [image, mask_file], MASK_EDIT_FILES)
    sampling = SamplingOptions(steps=steps, guidance=guidance, seed=0 if seed is None else seed, height=height,
                               width=width, allow_large=allow_large)
    instant = InstantOptions(**instant) if method == "instant" and not mask_file else InstantOptions()
    return MaskEditPlan(source, target, out, image, mask_file, "mask" if mask_file else method, strength, fit,
                        inpaint_model, sampling, instant)


def mask_edit_request(model, plan: MaskEditPlan):
    """The :class:`~promptedit.requests.MaskEditRequest` of a planned mask-guided edit on a loaded model (the image
    and the mask read at the run's size); returns it and the prepared image (None for a generated source)."""
    prepared = None if not plan.image else prepare_image(model, plan.image, plan.fit, plan.sampling, batch=2)
    mask = None
    if plan.mask_file:
        size = prepared.image.shape[:2] if prepared is not None else run_size(model, plan.sampling)
        like = None if prepared is None else prepared.oriented_size  # the image file's shape, which the mask has
        mask = read_mask(plan.mask_file, size, plan.fit, like=like)
    request = MaskEditRequest(plan.source, plan.target, image=None if prepared is None else prepared.image,
                              method=plan.method, mask=mask, strength=plan.strength, instant=plan.instant,
                              sampling=plan.sampling)
    return request, prepared


def run_mask_edit(model, plan: MaskEditPlan, *, quiet: bool = True, started: float | None = None,
                  command: str = "mask-edit", extra: dict | None = None):
    """Run a planned mask-guided edit on a loaded model and write its outputs and record; returns the result."""
    from ..outputs import write_result_folder

    started = time.perf_counter() if started is None else started
    inpainter = None
    if plan.inpaint_model:
        from ..models import load_inpaint_pipeline

        inpainter = load_inpaint_pipeline(plan.inpaint_model, device=model.device, dtype=model.dtype,
                                          progress=not quiet)
    request, prepared = mask_edit_request(model, plan)
    result = request.run(model, inpaint_pipeline=inpainter, progress=not quiet)
    for note in result.notes:
        echo(quiet, note)
    inputs = {}
    if prepared is not None:
        inputs["image"] = {"path": str(plan.image), "rule": prepared.rule, "original_size": prepared.original_size,
                           "original_mode": prepared.original_mode}
    if plan.mask_file:
        inputs["mask"] = str(plan.mask_file)
    write_result_folder(plan.out, model, result, command=command, started=started, input_image=prepared,
                        inputs=inputs, extra=extra)
    return result


def read_mask(path, size, fit="crop", *, like=None):
    """A user mask image (white = edit) as an (H, W) bool array at ``size``, brought there as the image was
    (EXIF orientation, 16-bit scaling, the same crop or pad, then nearest resize; see
    :func:`promptedit.images.prepare_mask`); ``like``: the image's (width, height), whose shape the mask must have."""
    from ..errors import ImageInputError
    from ..images import load_mask

    mask = load_mask(path, size, fit, like=like)
    if not mask.any():
        raise ImageInputError(f"mask {path} is empty (no white pixels)")
    return mask


COMMANDS = [mask, mask_edit]
