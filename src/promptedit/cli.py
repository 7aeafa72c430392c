"""The ``promptedit`` command line.

Every command takes ``--model``, ``--steps``, ``--guidance`` and ``--seed``;
bad input ends in one ``error: ...`` line and exit code 2; outputs are
written atomically, with a JSON record of every parameter and timing beside
them. ``main(argv)`` returns the exit code, so tests call it directly.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import click

from .errors import ParameterError, PromptEditError

EXIT_USAGE = 2
EMBEDDED_MODEL = Path(__file__).parent / "assets" / "shapes-model"


# ----------------------------------------------------------------------------- helpers


def _quiet_libraries() -> None:
    """Library chatter off for this command: the verbosity variables are read when diffusers, transformers
    and the hub client are first imported, which the commands do lazily after this."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("diffusers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


def resolve_model_path(model: str | None) -> str:
    if model:
        return model
    if EMBEDDED_MODEL.is_dir():
        return str(EMBEDDED_MODEL)
    raise PromptEditError(
        "no --model given and the embedded shapes-world model is not installed yet; "
        "pass --model PATH (a diffusers Stable Diffusion folder; `promptedit dev tiny-model DIR` makes a tiny one)"
    )


def load(model: str | None, device: str | None, quiet: bool = False):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .models import load_model

    for lib in (diffusers_logging, transformers_logging):  # their loading bars and notices are not ours to show
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    path = resolve_model_path(model)
    if not quiet:
        click.echo(f"loading model {path}", err=True)
    return load_model(path, device=device)


def parse_window(text: str, what: str):
    """``F`` → F; ``START,END`` → (START, END)."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise ParameterError(f"{what} must be F or START,END with numbers, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise ParameterError(f"{what} must be F or START,END, got {text!r}")


def parse_word_value(text: str, what: str) -> tuple[str, str]:
    if "=" not in text:
        raise ParameterError(f"{what} must be WORD=VALUE, got {text!r}")
    word, value = text.rsplit("=", 1)
    if not word.strip():
        raise ParameterError(f"{what} needs a word before '=', got {text!r}")
    return word.strip(), value.strip()


def common_options(f):
    """--model, --steps, --guidance, --seed, --height, --width, --device."""
    @click.option("--model", "model", metavar="PATH", default=None,
                  help="Diffusers Stable Diffusion folder (default: the embedded shapes-world model).")
    @click.option("--steps", type=int, default=None, help="DDIM steps (default: the model's, else 50).")
    @click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale (default 7.5).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of x_T; the same seed reproduces.")
    @click.option("--height", type=int, default=None, help="Image height (default: the model's size).")
    @click.option("--width", type=int, default=None, help="Image width (default: the model's size).")
    @click.option("--device", default=None, help="cpu or cuda (default: cuda with fp16 when present).")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def instant_mask_options(f):
    """The instant-mask (InstDiffEdit) options shared by ``mask`` and ``edit --method instdiffedit``, with the
    authors' values as defaults."""
    @click.option("--anchor", type=click.Choice(["source", "edited", "start-token"]), default="source",
                  show_default=True,
                  help="Instant masks: whose maps make the mask: the source text's, anchored on the words the edit "
                       "replaces; the edit text's, anchored on the edited words; or the edit text's, anchored on "
                       "any word (start-token: the paper's rule).")
    @click.option("--threshold", type=click.FloatRange(0, 1, max_open=True), default=None,
                  help="Instant masks: φ, the binarisation threshold of the normalised mask (default: the model's; "
                       "the authors' 0.2 unless its promptedit.json says otherwise).")
    @click.option("--smooth", "smooth_times", type=click.IntRange(min=0), default=None,
                  help="Instant masks: passes of 5x5 Gaussian smoothing (default: the model's; the authors' 2 "
                       "unless its promptedit.json says otherwise; the embedded model: 0, its maps are trained to "
                       "fall inside their objects).")
    @click.option("--refine", "refine_radius", type=click.FloatRange(0, 64), default=None, metavar="CELLS",
                  help="Instant masks: refine the final mask's edges with a guided filter that follows the image, "
                       "radius in attention-map cells; 0 turns it off (default: the model's; none unless its "
                       "promptedit.json says otherwise, as in the paper; the embedded model: 2).")
    @click.option("--region-peak", "region_peak", type=click.FloatRange(0, 1), default=None, metavar="FRACTION",
                  help="Instant masks: keep only the final mask's connected regions whose peak reaches this "
                       "fraction of the strongest region's; 0 keeps them all (default: the model's; 0 unless its "
                       "promptedit.json says otherwise, as in the paper; the embedded model: 0.9).")
    @click.option("--object-threshold", type=click.FloatRange(-1, 1), default=0.9, show_default=True,
                  help="Instant masks: words at least this similar to the anchor are the object.")
    @click.option("--background-threshold", type=click.FloatRange(-1, 1), default=0.6, show_default=True,
                  help="Instant masks: words at most this similar to the anchor are the background.")
    @click.option("--seeds", "num_seeds", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Instant masks: noise draws whose masks are averaged (the authors average 3).")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


INSTANT_OPTIONS = ("anchor", "threshold", "smooth_times", "refine_radius", "region_peak", "object_threshold",
                   "background_threshold", "num_seeds")
P2P_OPTIONS = ("mode", "cross_replace", "self_replace", "edit_null", "reweight", "blend", "blend_subtract",
               "blend_threshold", "blend_start", "inject_features", "save_attention")


def refuse_unused(names, why: str) -> None:
    """Refuse options given on the command line that would be ignored ``why`` (one line, exit 2)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [p.opts[0] for p in ctx.command.params
             if p.name in names and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE,
                                                                           ParameterSource.ENVIRONMENT)]
    if given:
        raise ParameterError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} not used {why}")


def instant_settings(kw) -> dict:
    """The instant-mask options of a command, as keyword arguments of the library."""
    return {k: kw.pop(k) for k in INSTANT_OPTIONS}


def sampling_kwargs(kw) -> dict:
    return dict(seed=kw["seed"], num_inference_steps=kw["steps"], guidance_scale=kw["guidance"],
                height=kw["height"], width=kw["width"], progress=not kw["quiet"])


def record(command: str, model, result, extra: dict, started: float) -> dict:
    from dataclasses import asdict

    from .outputs import environment

    return {
        "command": command,
        "model": model.name,
        "model_defaults": asdict(model.defaults),
        "prompts": result.prompts,
        "seed": result.seed,
        "num_inference_steps": result.num_inference_steps,
        "guidance_scale": result.guidance_scale,
        "height": result.height,
        "width": result.width,
        "scheduler": "DDIM",
        **extra,
        "timings": {**{k: round(v, 4) for k, v in result.timings.items()},
                    "wall": round(time.perf_counter() - started, 4)},
        "environment": environment(),
    }


# ----------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="promptedit")
def cli():
    """Edit images by editing their prompts (Prompt-to-Prompt on Stable Diffusion)."""


@cli.command()
@click.argument("prompt")
@click.option("--out", required=True, metavar="FILE.png", help="Output image; FILE.json records the run.")
@common_options
def generate(prompt, out, **kw):
    """Generate an image from PROMPT."""
    from .editing import generate as run
    from .outputs import check_output_file, write_image, write_json

    started = time.perf_counter()
    out = check_output_file(out)
    model = load(kw["model"], kw["device"])
    result = run(model, prompt, **sampling_kwargs(kw))
    write_image(out, result.images[0])
    write_json(out.with_suffix(".json"), record("generate", model, result, {}, started))
    click.echo(f"wrote {out} ({result.timings['total']:.1f} s)")


@cli.command()
@click.option("--source", default=None, help="The source prompt (for --image: the image's caption).")
@click.option("--target", "targets", multiple=True, help="An edited prompt (repeat for several).")
@click.option("--out", required=True, metavar="DIR", help="Output folder.")
@click.option("--image", default=None, metavar="IMAGE", help="Edit this real image (inverted first with --method).")
@click.option("--inversion", default=None, metavar="FILE",
              help="Edit a saved inversion (promptedit invert); its prompt is the source.")
@click.option("--method", type=click.Choice(["null-text", "negative-prompt", "direct", "ddim", "instdiffedit", "diffedit"]),
              default="null-text", show_default=True,
              help="Inversion method for Prompt-to-Prompt on --image, or a mask-guided edit: instdiffedit "
                   "(instant attention masks) or diffedit.")
@click.option("--mask", "mask_file", default=None, metavar="MASK.png",
              help="Edit only inside this mask (white = edit), instead of a mask the method makes.")
@click.option("--strength", type=float, default=0.5, show_default=True,
              help="Mask-guided edits: how far the source is noised (fraction of the steps).")
@click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
              help="How --image is brought to the model's aspect ratio before resizing.")
@click.option("--inner-steps", type=int, default=10, show_default=True, help="Null-text: Adam iterations per step.")
@click.option("--mode", type=click.Choice(["replace", "refine", "reweight", "auto"]), default="auto",
              show_default=True, help="Word swap, added phrase, re-weighting, or chosen from the prompts.")
@click.option("--cross-replace", "cross_replace", multiple=True, metavar="F | START,END | WORD=F",
              help="Cross-attention injection window (fraction of steps); WORD=... sets one word's window.")
@click.option("--self-replace", default=None, metavar="F | START,END",
              help="Self-attention injection window (default: the model's; edits of a real image take its "
                   "inversion_self_replace, 0.8 on the embedded model).")
@click.option("--edit-null", type=click.Choice(["all", "source"]), default=None,
              help="Real images: which branches of the edit take the inversion's null embeddings: all (the "
                   "null-text and negative-prompt papers') or the source branch only, the edits taking the empty "
                   "prompt's (default: the model's; all unless its promptedit.json says otherwise; the embedded "
                   "model: source).")
@click.option("--reweight", multiple=True, metavar="WORD=C", help="Scale WORD's attention by C (negative allowed).")
@click.option("--blend", "blend", multiple=True, metavar="WORD", help="Local blend: edit only where WORD attends.")
@click.option("--blend-subtract", multiple=True, metavar="WORD", help="Local blend: leave WORD's region out.")
@click.option("--blend-threshold", type=float, default=None, help="Local-blend mask threshold (default 0.3).")
@click.option("--blend-start", type=float, default=None, help="Fraction of steps before blending (default 0.2).")
@click.option("--inject-features", default=None, metavar="F | START,END",
              help="Plug-and-Play: inject the source's decoder features over this window.")
@click.option("--save-attention", is_flag=True, help="Also write DIR/attention.png (maps of source and edits).")
@click.option("--inpaint-model", default=None, metavar="PATH",
              help="instdiffedit: a diffusers Stable Diffusion inpainting folder for the final pass over the mask "
                   "(default: the same model regenerates the masked region).")
@instant_mask_options
@common_options
def edit(source, targets, out, image, inversion, method, mask_file, strength, fit, inner_steps, mode, cross_replace,
         self_replace, edit_null, reweight, blend, blend_subtract, blend_threshold, blend_start, inject_features, save_attention,
         inpaint_model, **kw):
    """Edit an image by editing its prompt: SOURCE → TARGET prompt(s), attention injected.

    A generated image (from --seed) writes DIR/source.png; a real image (--image, or --inversion)
    writes DIR/reconstruction.png and DIR/inversion.safetensors. Both write DIR/edited.png
    (edited-K.png for several targets), DIR/grid.png and DIR/result.json.
    """
    from .editing import EditSpec
    from .editing import edit as run
    from .outputs import check_output_dir

    started = time.perf_counter()
    instant = instant_settings(kw)
    if image and inversion:
        raise ParameterError("give --image or --inversion, not both")
    if method != "instdiffedit":
        refuse_unused(INSTANT_OPTIONS + ("inpaint_model",), f"with --method {method} (only with instdiffedit)")
    mask_guided = method in ("instdiffedit", "diffedit") or bool(mask_file)
    if mask_guided:
        refuse_unused(P2P_OPTIONS, "in a mask-guided edit (only in Prompt-to-Prompt edits)")
    else:
        refuse_unused(("strength",), "in a Prompt-to-Prompt edit (only in mask-guided edits)")
    if not (image and method == "null-text"):
        refuse_unused(("inner_steps",), "unless --image is inverted with --method null-text")
    if not (image or inversion):
        refuse_unused(("edit_null",), "in an edit of a generated image (only with --image or --inversion)")
    if mask_guided:
        return mask_edit_command(source, targets, out, image, inversion, method, mask_file, strength, fit, kw,
                                 started, instant=instant, inpaint_model=inpaint_model)
    inv = None
    if inversion:
        inv = read_inversion(inversion)
        if source is not None and source != inv.prompt:
            raise ParameterError(f"--source differs from the inversion's prompt {inv.prompt!r}")
        source = inv.prompt
    if source is None:
        raise ParameterError("give --source (the prompt of the image to edit)")
    if not targets:
        if mode != "reweight":
            raise ParameterError("give at least one --target (or --mode reweight with --reweight WORD=C)")
        targets = (source,)
    windows, cross = {}, None
    for item in cross_replace:
        head = item.split("=", 1)[0]
        if "=" in item and not _is_number(head):
            word, value = parse_word_value(item, "--cross-replace")
            windows[word] = parse_window(value, f"--cross-replace {word}")
        else:
            cross = parse_window(item, "--cross-replace")
    weights = {}
    for item in reweight:
        word, value = parse_word_value(item, "--reweight")
        try:
            weights[word] = float(value)
        except ValueError:
            raise ParameterError(f"--reweight {word} needs a number, got {value!r}") from None
    spec = EditSpec(
        source=source, targets=tuple(targets), mode=mode, cross_replace=cross, cross_replace_words=windows,
        self_replace=parse_window(self_replace, "--self-replace") if self_replace else None,
        reweight=weights, blend_words=tuple(blend), blend_subtract=tuple(blend_subtract),
        blend_threshold=blend_threshold, blend_start=blend_start,
        inject_features=parse_window(inject_features, "--inject-features") if inject_features else None,
    )
    out = check_output_dir(out)
    check_not_inputs(out, [image, inversion])
    model = load(kw["model"], kw["device"])
    if image or inv is not None:
        from .inversion import edit_inversion, psnr

        prepared = None
        if image:
            prepared, inv = invert_image(model, image, source, method, fit, inner_steps, kw)
        else:
            inv.check_compatible(model)
        result = edit_inversion(model, inv, spec, progress=not kw["quiet"], store_attention=save_attention,
                                null_branches=edit_null)
        extra = {"inversion": {**inv.metadata(), "file": str(inversion) if inversion else "inversion.safetensors"},
                 "edit_null": result.null_branches}
        if prepared is not None:
            extra["image"] = {"path": str(image), "rule": prepared.rule, "original_size": prepared.original_size,
                              "original_mode": prepared.original_mode,
                              "reconstruction_psnr": round(psnr(result.images[0], prepared.image), 3)}
        for note in result.notes:
            click.echo(note, err=True)
        write_edit_outputs(out, model, spec, result, started, real=prepared, inversion=inv if image else None,
                           extra=extra)
    else:
        result = run(model, spec, store_attention=save_attention, **sampling_kwargs(kw))
        for note in result.notes:
            click.echo(note, err=True)
        write_edit_outputs(out, model, spec, result, started)
    click.echo(f"wrote {out} (mode {result.mode}, {result.timings['total']:.1f} s)")


def mask_edit_command(source, targets, out, image, inversion, method, mask_file, strength, fit, kw, started, *,
                      instant: dict, inpaint_model: str | None = None):
    """edit --method instdiffedit|diffedit, or --mask: a mask-guided edit of a real or generated image."""
    from .maskedit import diffedit, instdiffedit, masked_edit
    from .outputs import check_output_dir, write_image, write_json
    from .visualize import image_grid, mask_overlay

    if inversion:
        raise ParameterError("mask-guided edits take --image (or a generated image), not --inversion")
    if source is None or len(targets) != 1:
        raise ParameterError("a mask-guided edit needs --source and exactly one --target")
    if method not in ("instdiffedit", "diffedit"):
        method = "user"
    elif mask_file:
        raise ParameterError(f"--mask replaces the mask that {method} makes: give one of them")
    out = check_output_dir(out)
    check_not_inputs(out, [image, mask_file])
    model = load(kw["model"], kw["device"])
    inpainter = None
    if inpaint_model:
        from .models import load_inpaint_pipeline

        inpainter = load_inpaint_pipeline(inpaint_model, device=model.device, dtype=model.dtype,
                                          progress=not kw["quiet"])
    size = (kw["height"] or model.image_size, kw["width"] or model.image_size)
    prepared = None
    if image:
        from .images import load_image
        from .pipeline import check_size

        check_size(model, *size)
        prepared = load_image(image, size, fit)
        source_image = prepared.image
    else:
        from .editing import generate as gen

        source_image = gen(model, source, **sampling_kwargs(kw)).images[0]
    common = dict(strength=strength, num_inference_steps=kw["steps"], guidance_scale=kw["guidance"],
                  seed=kw["seed"], progress=not kw["quiet"])
    if method == "instdiffedit":
        result = instdiffedit(model, source_image, source, targets[0], inpaint_pipeline=inpainter, **instant,
                              **common)
    elif method == "diffedit":
        result = diffedit(model, source_image, source, targets[0], **common)
    else:
        result = masked_edit(model, source_image, read_mask(mask_file, source_image.shape[:2]), targets[0], **common)
    first = "input.png" if image else "source.png"
    write_image(out / first, source_image)
    write_image(out / "edited.png", result.edited)
    write_image(out / "mask.png", result.mask.astype("uint8") * 255)
    overlay = mask_overlay(source_image, result.mask)
    write_image(out / "mask-overlay.png", overlay)
    write_image(out / "grid.png", image_grid([source_image, overlay, result.edited], [first[:-4], "mask", "edited"],
                                             cell=max(128, source_image.shape[1])))
    record_ = {"command": "edit", "method": result.method, "model": model.name, "source": source,
               "target": targets[0], "settings": result.settings, "words": result.words,
               "mask_fraction": round(float(result.mask.mean()), 4),
               "files": {"source": first, "edited": "edited.png", "mask": "mask.png", "overlay": "mask-overlay.png",
                         "grid": "grid.png"},
               "timings": {**{k: round(v, 4) for k, v in result.timings.items()},
                           "wall": round(time.perf_counter() - started, 4)}}
    if prepared is not None:
        record_["image"] = {"path": str(image), "rule": prepared.rule, "original_size": prepared.original_size,
                            "original_mode": prepared.original_mode}
    if mask_file:
        record_["mask_file"] = str(mask_file)
    from .outputs import environment

    record_["environment"] = environment()
    write_json(out / "result.json", record_)
    click.echo(f"wrote {out} ({result.method}, mask {result.mask.mean():.0%} of the image, "
               f"mask {result.timings['mask']:.2f} s, total {result.timings['total']:.1f} s)")


def read_mask(path, size):
    """A user mask image (white = edit) as an (H, W) bool array at ``size`` (nearest resize)."""
    import numpy as np
    from PIL import Image

    from .errors import ImageInputError
    from .images import open_image

    with open_image(path, what="mask") as im:
        mask = np.asarray(im.convert("L").resize((size[1], size[0]), Image.NEAREST)) > 127
    if not mask.any():
        raise ImageInputError(f"mask {path} is empty (no white pixels)")
    return mask


@cli.command()
@click.argument("image")
@click.option("--source", required=True, help="The image's caption.")
@click.option("--target", required=True, help="The edited prompt.")
@click.option("--out", required=True, metavar="MASK.png", help="The mask; MASK-overlay.png and MASK.json beside it.")
@click.option("--method", type=click.Choice(["instant", "diffedit"]), default="instant", show_default=True,
              help="Instant attention masks (InstDiffEdit) or DiffEdit's noise-difference masks.")
@click.option("--strength", type=float, default=0.5, show_default=True, help="Noise level the mask is made at.")
@click.option("--mask-steps", type=int, default=None,
              help="Instant: steps of the denoising pass to run before taking the mask (default: the whole pass).")
@click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True)
@instant_mask_options
@common_options
def mask(image, source, target, out, method, strength, mask_steps, fit, **kw):
    """Make the mask of the region that changes from SOURCE to TARGET in IMAGE."""
    from .images import load_image
    from .maskedit import make_mask
    from .outputs import check_output_file, write_image, write_json
    from .pipeline import check_size
    from .visualize import mask_overlay

    started = time.perf_counter()
    out = check_output_file(out)
    if Path(image).resolve() in {out.resolve(), out.with_name(out.stem + "-overlay.png").resolve()}:
        raise ParameterError(f"--out {out} would overwrite the input image")
    model = load(kw["model"], kw["device"])
    size = (kw["height"] or model.image_size, kw["width"] or model.image_size)
    check_size(model, *size)
    prepared = load_image(image, size, fit)
    if method != "instant":
        refuse_unused(INSTANT_OPTIONS + ("mask_steps",), f"with --method {method} (only with instant)")
    instant = instant_settings(kw)
    extra = {"mask_steps": mask_steps, **instant} if method == "instant" else {}
    result = make_mask(model, prepared.image, source, target, method=method, strength=strength,
                       num_inference_steps=kw["steps"], guidance_scale=kw["guidance"], seed=kw["seed"],
                       progress=not kw["quiet"], **extra)
    write_image(out, result.mask.astype("uint8") * 255)
    write_image(out.with_name(out.stem + "-overlay.png"), mask_overlay(prepared.image, result.mask))
    write_json(out.with_suffix(".json"), {
        "command": "mask", "method": method, "model": model.name, "image": str(image), "image_rule": prepared.rule,
        "source": source, "target": target, "settings": result.settings, "words": result.words,
        "mask_fraction": round(float(result.mask.mean()), 4),
        "timings": {**{k: round(v, 4) for k, v in result.timings.items()},
                    "wall": round(time.perf_counter() - started, 4)}})
    click.echo(f"wrote {out}: {result.mask.mean():.0%} of the image ({method}, {result.timings['mask']:.2f} s)")


def read_inversion(path):
    from .errors import ImageInputError
    from .images import check_input_file
    from .inversion import Inversion

    p = check_input_file(path, "inversion file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageInputError(f"cannot read {p}: {e.strerror or e}") from None
    return Inversion.from_bytes(data, str(p))


def check_not_inputs(out: Path, inputs) -> None:
    """Refuse an output folder that would overwrite an input file."""
    from .errors import OutputPathError

    for item in inputs:
        if item and Path(item).resolve().parent == out.resolve():
            name = Path(item).name
            if name in OUTPUT_NAMES:
                raise OutputPathError(f"writing to {out} would overwrite the input {item}")


OUTPUT_NAMES = {"source.png", "reconstruction.png", "input.png", "grid.png", "result.json", "attention.png",
                "blend-mask.png", "inversion.safetensors", "edited.png", "mask.png", "mask-overlay.png"}


def invert_image(model, image, prompt, method, fit, inner_steps, kw):
    from .images import load_image
    from .inversion import invert

    size = (kw["height"] or model.image_size, kw["width"] or model.image_size)
    from .pipeline import check_size

    check_size(model, *size)
    prepared = load_image(image, size, fit)
    click.echo(f"inverting {image} ({prepared.rule}) with {method}", err=True)
    inv = invert(model, prepared.image, prompt, method=method, num_inference_steps=kw["steps"],
                 guidance_scale=kw["guidance"], num_inner_steps=inner_steps, progress=not kw["quiet"],
                 image_rule=prepared.rule)
    return prepared, inv


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_edit_outputs(out: Path, model, spec, result, started: float, *, real=None, inversion=None,
                       extra: dict | None = None) -> None:
    from dataclasses import asdict

    from .outputs import write_bytes, write_image, write_json
    from .visualize import cross_attention_grid, image_grid, mask_overlay, token_labels

    first = "reconstruction.png" if (real is not None or extra) else "source.png"
    files = {"source": first}
    names = ["edited.png"] if len(spec.targets) == 1 else [f"edited-{k + 1}.png" for k in range(len(spec.targets))]
    write_image(out / first, result.images[0])
    for name, image in zip(names, result.images[1:]):
        write_image(out / name, image)
    files["edited"] = names
    tiles, labels = list(result.images), [first.removesuffix(".png")] + [f"edit {k + 1}" for k in range(len(names))]
    if real is not None:
        write_image(out / "input.png", real.image)
        files["input"] = "input.png"
        tiles, labels = [real.image] + tiles, ["input"] + labels
    if inversion is not None:
        write_bytes(out / "inversion.safetensors", inversion.to_bytes())
        files["inversion"] = "inversion.safetensors"
    grid = image_grid(tiles, labels, cell=max(128, result.width))
    write_image(out / "grid.png", grid)
    files["grid"] = "grid.png"
    if result.attention is not None:
        maps = result.attention.maps(downsample=result.attention_downsample)
        rows = [cross_attention_grid(result.images[i], maps[i], token_labels(model.tokenizer, p))
                for i, p in enumerate(result.prompts)]
        width = max(r.width for r in rows)
        import numpy as np
        from PIL import Image

        sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
        y = 0
        for r in rows:
            sheet.paste(r, (0, y))
            y += r.height
        write_image(out / "attention.png", np.asarray(sheet))
        files["attention"] = "attention.png"
    if result.blend_mask is not None:
        mask = result.blend_mask[1:].any(0)[0].cpu().numpy()
        write_image(out / "blend-mask.png", mask_overlay(result.images[1], mask))
        files["blend_mask"] = "blend-mask.png"
    spec_dict = asdict(spec)
    write_json(out / "result.json", record("edit", model, result, {
        "mode": result.mode, "mode_notes": result.notes, "spec": spec_dict, "files": files, **(extra or {})},
        started))


@cli.command()
@click.argument("image")
@click.option("--prompt", required=True, help="The image's caption (the source prompt of later edits).")
@click.option("--method", type=click.Choice(["null-text", "negative-prompt", "direct", "ddim"]), default="null-text",
              show_default=True, help="Inversion method.")
@click.option("--out", required=True, metavar="FILE.safetensors",
              help="The inversion; FILE-reconstruction.png and FILE.json are written beside it.")
@click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
              help="How IMAGE is brought to the model's aspect ratio before resizing.")
@click.option("--inner-steps", type=int, default=10, show_default=True, help="Null-text: Adam iterations per step.")
@common_options
def invert(image, prompt, method, out, fit, inner_steps, **kw):
    """Invert a real IMAGE under its caption, for editing with `promptedit edit --inversion`.

    --steps defaults to the model's inversion steps (the paper's 50), which the edits of the inversion reuse.
    """
    from .inversion import psnr, reconstruct
    from .outputs import check_output_file, write_bytes, write_image, write_json

    started = time.perf_counter()
    out = check_output_file(out, suffixes=(".safetensors",))
    if Path(image).resolve() in {out.resolve(), out.with_name(out.stem + "-reconstruction.png").resolve()}:
        raise ParameterError(f"--out {out} would overwrite the input image")
    model = load(kw["model"], kw["device"])
    prepared, inv = invert_image(model, image, prompt, method, fit, inner_steps, kw)
    rec = reconstruct(model, inv, progress=False)
    value = psnr(rec, prepared.image)
    write_bytes(out, inv.to_bytes())
    rec_path = out.with_name(out.stem + "-reconstruction.png")
    write_image(rec_path, rec)

    write_json(out.with_suffix(".json"), {
        "command": "invert", "model": model.name, "image": str(image), "image_rule": prepared.rule,
        "original_size": prepared.original_size, "original_mode": prepared.original_mode,
        **inv.metadata(), "reconstruction_psnr": round(value, 3),
        "timings": {"inversion": round(inv.seconds, 3), "wall": round(time.perf_counter() - started, 3)},
    })
    click.echo(f"wrote {out} and {rec_path}: reconstruction PSNR {value:.2f} dB ({inv.seconds:.1f} s, {method})")


@cli.command()
@click.argument("prompt")
@click.option("--out", required=True, metavar="FILE.png", help="Output grid of per-token maps.")
@click.option("--resolution", "downsample", type=int, default=None,
              help="Maps of layers this many times smaller than the latent (default: the model's, 4 for SD).")
@click.option("--components", type=int, default=6, show_default=True,
              help="Top self-attention components written to FILE-self.png (0: none).")
@common_options
def attention(prompt, out, downsample, components, **kw):
    """Generate PROMPT and show its cross-attention maps per token (and self-attention components)."""
    from .editing import attention as run
    from .outputs import check_output_file, write_image, write_json
    from .visualize import cross_attention_grid, self_attention_grid, token_labels

    started = time.perf_counter()
    out = check_output_file(out)
    if downsample is not None and downsample < 1:
        raise ParameterError(f"--resolution must be a positive integer, got {downsample}")
    if components < 0:
        raise ParameterError(f"--components must be >= 0, got {components}")
    model = load(kw["model"], kw["device"])
    result = run(model, prompt, downsample=downsample, self_attention=components > 0, **sampling_kwargs(kw))
    for note in result.notes:
        click.echo(note, err=True)
    f = result.attention_downsample
    maps = result.attention.maps(downsample=f)[0]
    write_image(out, cross_attention_grid(result.images[0], maps, token_labels(model.tokenizer, prompt)))
    files = {"cross": out.name}
    if components > 0:
        self_maps = result.attention.maps(is_cross=False, downsample=f)[0]
        self_out = out.with_name(out.stem + "-self.png")
        write_image(self_out, self_attention_grid(self_maps, k=components))
        files["self"] = self_out.name
    write_json(out.with_suffix(".json"), record("attention", model, result,
                                                 {"resolution": f, "files": files}, started))
    click.echo(f"wrote {out}")


@cli.command()
@click.option("--out", default="out/demo", show_default=True, metavar="DIR", help="Output folder.")
@common_options
def demo(out, **kw):
    """Run a word swap, an added phrase, re-weighting, a real-image edit (null-text inversion) and an
    instant-mask edit; write DIR/gallery.png and DIR/index.html."""
    from .demo import gallery_html, gallery_png, run_demo
    from .outputs import check_output_dir, write_bytes, write_image, write_json

    started = time.perf_counter()
    out = check_output_dir(out)
    note = ""
    if kw["model"] is None and not EMBEDDED_MODEL.is_dir():
        from .testing import tiny_components

        note = ("The embedded shapes-world model is not installed yet: this demo ran on tiny random weights, "
                "so the images are noise. It shows the plumbing only.")
        click.echo(f"warning: {note}", err=True)
        model = tiny_components(0)
    else:
        model = load(kw["model"], kw["device"])
    items = run_demo(model, **sampling_kwargs(kw))
    write_image(out / "gallery.png", gallery_png(items))
    write_bytes(out / "index.html", gallery_html(items, model.name, note).encode())
    write_json(out / "result.json", {
        "command": "demo", "model": model.name, "note": note,
        "edits": [i.record for i in items],
        "timings": {"wall": round(time.perf_counter() - started, 3)},
    })
    click.echo(f"wrote {out / 'index.html'} and {out / 'gallery.png'} ({time.perf_counter() - started:.1f} s)")


@cli.command()
@click.option("--out", default="runs/shapes", show_default=True, metavar="DIR",
              help="Run folder: checkpoint.pt (resumable), config.json, preview.png.")
@click.option("--steps", type=int, default=None, help="Optimisation steps (default 4000).")
@click.option("--batch-size", type=int, default=None, help="Batch size (default 32).")
@click.option("--minutes", type=float, default=None, help="Stop (and export) after this much training time.")
@click.option("--lr", type=float, default=None, help="Peak learning rate (default 7e-4).")
@click.option("--grounding-weight", type=float, default=None,
              help="Weight of the token-grounding loss (default 0.05; 0 turns it off).")
@click.option("--word-mass-weight", type=float, default=None,
              help="Weight of the word-mass term: the words describing a pixel get at least --word-mass-floor "
                   "of its attention (default 0.05; 0 turns it off).")
@click.option("--word-mass-floor", type=float, default=None, help="Floor of the word-mass term (default 0.5).")
@click.option("--identity-weight", type=float, default=None,
              help="Weight of the word-identity term: each word's text-encoder output must name its word "
                   "(default 0.02; 0 turns it off).")
@click.option("--identity-temperature", type=float, default=None,
              help="Temperature τ of the word-identity term's cosine classifier (default 10).")
@click.option("--ema-decay", type=float, default=None, help="EMA decay of the exported weights (default 0.998).")
@click.option("--min-lr-fraction", type=float, default=None,
              help="Where the cosine decay ends, as a fraction of --lr (default 0.1).")
@click.option("--two-object-fraction", type=float, default=None,
              help="Share of two-object captions in the training stream (default 0.4, the world's own).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-seed", type=int, default=None,
              help="Seed of the rendered training stream (default 1; a fine-tuning run can take fresh scenes).")
@click.option("--init-from", "init_from", default=None, metavar="MODEL",
              help="Start a new run from this model's weights and tokenizer ('embedded' for the shipped one; a "
                   "folder exported by this command), with a fresh optimiser. Ignored when DIR has a checkpoint.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming DIR/checkpoint.pt.")
@click.option("--export", "export", default=None, metavar="DIR",
              help="Write the trained model (EMA weights) as a diffusers folder here.")
@click.option("--half", is_flag=True, help="Export the weights in fp16 (how the embedded model ships).")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@click.option("--device", default="cpu", show_default=True, help="Where to train: cpu, cuda, cuda:1, ...")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes that render batches ahead (0: render in the training process, about 40 ms per "
                   "batch of 32 on one core, which a GPU step then waits for).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(out, steps, batch_size, minutes, lr, grounding_weight, word_mass_weight, word_mass_floor, identity_weight,
          identity_temperature, ema_decay, min_lr_fraction, two_object_fraction, seed, data_seed, init_from, fresh,
          export, half, threads, device, workers, quiet):
    """Train the embedded shapes-world model (resumable); see MODEL_CARD.md for the shipped run."""
    import torch

    from .outputs import check_output_dir, make_output_dir, write_image
    from .train.shapes import TrainConfig, check_architecture, train as run_train

    overrides = {k: v for k, v in dict(steps=steps, batch_size=batch_size, max_minutes=minutes, lr=lr,
                                       grounding_weight=grounding_weight, word_mass_weight=word_mass_weight,
                                       word_mass_floor=word_mass_floor, identity_weight=identity_weight,
                                       identity_temperature=identity_temperature, ema_decay=ema_decay,
                                       min_lr_fraction=min_lr_fraction, two_object_fraction=two_object_fraction,
                                       data_seed=data_seed).items()
                 if v is not None}
    try:
        config = TrainConfig(seed=seed, **overrides)
    except ValueError as e:
        raise ParameterError(str(e)) from None
    if threads:
        torch.set_num_threads(threads)
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ParameterError(f"unknown device {device!r} (cpu, cuda, cuda:N, ...)") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ParameterError(f"device {device} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s) here")
    run_path = check_output_dir(out)
    if export:
        check_output_dir(export)
    start_model = None  # loaded before the run folder is made, so that a bad model leaves nothing behind
    if init_from is not None and (fresh or not (run_path / "checkpoint.pt").exists()):
        start_model = load(None if init_from == "embedded" else init_from, "cpu")
        try:
            check_architecture(config, start_model)
        except ValueError as e:
            raise ParameterError(str(e)) from None
    run_dir = make_output_dir(run_path)
    started = time.perf_counter()
    model = run_train(config, run_dir, resume=not fresh, progress=not quiet,
                      log=lambda m: click.echo(m, err=True), device=device, workers=workers, init_from=start_model)
    from .editing import generate as gen
    from .visualize import image_grid

    prompts = ["a red circle on a white background", "a blue square on a black background",
               "a big striped yellow star on a gray background", "a green heart and a purple triangle on a white background",
               "a sketch of a cyan circle on a white background", "a pixel art of an orange heart on a gray background".replace("an ", "a "),
               "a blurry photo of a pink star on a black background", "a dotted blue triangle on a white background at night"]
    result = gen(model, prompts, seed=0, progress=False)
    write_image(run_dir / "preview.png", image_grid(list(result.images), [p[:40] for p in prompts], cols=4, cell=160))
    if export:
        from .models import save_model

        save_model(model, export, half=half)
        click.echo(f"exported {export}")
    click.echo(f"trained {model.training_info['steps']} steps in {model.training_info['minutes']:.1f} min; "
               f"preview {run_dir / 'preview.png'} ({time.perf_counter() - started:.0f} s)")


@cli.group()
def bench():
    """Benchmarks against exact ground truth."""


def _bench_sections():
    from .bench import SECTIONS

    return SECTIONS


@bench.command("world")
@click.option("--model", "model", metavar="PATH", default=None,
              help="Diffusers Stable Diffusion folder (default: the embedded shapes-world model).")
@click.option("--out", default="out/bench-world", show_default=True, metavar="DIR",
              help="Writes DIR/bench-world.json, DIR/bench-world.md and DIR/bench-world.png.")
@click.option("--n", "n", type=int, default=50, show_default=True, help="Items per metric.")
@click.option("--seed", type=int, default=0, show_default=True, help="x_T seed of item 0 (item i uses SEED + i).")
@click.option("--steps", type=int, default=None,
              help="DDIM steps (default: the model's; its inversion steps, 50, for the real-image section).")
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale (default: the model's).")
@click.option("--only", "only", type=click.Choice(_bench_sections()), multiple=True,
              help="Run only this section (repeat for several).")
@click.option("--examples", type=int, default=2, show_default=True, help="Example items per section in the PNG grid.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda with fp16 when present).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_world(model, out, n, seed, steps, guidance, only, examples, device, quiet):
    """Measure generation and every Prompt-to-Prompt edit against the shapes world's ground truth.

    Prompts are held-out captions; images are read back with the world's reader (images that are
    not 64 x 64 are resized to it, nearest). Every number is reported with its target and n.
    """
    from .outputs import check_output_dir, environment, write_bytes, write_image, write_json

    started = time.perf_counter()
    if n < 1:
        raise ParameterError(f"--n must be at least 1, got {n}")
    if examples < 0:
        raise ParameterError(f"--examples must be >= 0, got {examples}")
    out = check_output_dir(out)
    from .bench.world import example_cells, markdown_report, run_world_bench
    from .visualize import image_grid

    loaded = load(model, device)

    def save(result, complete: bool) -> None:  # after every section, so a later failure loses nothing
        files = {"json": "bench-world.json", "markdown": "bench-world.md"}
        images, labels, cols = example_cells(result)
        if images:
            write_image(out / "bench-world.png", image_grid(images, labels, cols=cols, cell=128))
            files["examples"] = "bench-world.png"
        write_bytes(out / "bench-world.md", markdown_report(result).encode())
        write_json(out / "bench-world.json", {
            "command": "bench world", "complete": complete, **result.to_dict(), "files": files,
            "timings": {"wall": round(time.perf_counter() - started, 3)}, "environment": environment(),
        })

    result = run_world_bench(loaded, n=n, sections=list(only) or None, seed=seed, steps=steps, guidance=guidance,
                             examples=examples, progress=not quiet, on_section=lambda r: save(r, False))
    save(result, True)
    verdict = "all targets met" if result.passed else "some targets not met"
    click.echo(f"wrote {out / 'bench-world.md'} ({verdict}; {time.perf_counter() - started:.0f} s)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (127.0.0.1: this machine only).")
@click.option("--port", type=int, default=7860, show_default=True)
@click.option("--model", "model", metavar="PATH", default=None, help="Diffusers SD folder (default: the embedded model).")
@click.option("--device", default=None, help="cpu or cuda.")
def serve(host, port, model, device):
    """Start the web app (Gradio) for editing in a browser."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise PromptEditError("the web app needs Gradio: pip install 'promptedit[app]'") from None
    if not 0 < port < 65536:
        raise ParameterError(f"--port must be in 1..65535, got {port}")
    from .app import serve as run

    m = load(model, device)
    click.echo(f"serving {m.name} on http://{host}:{port}", err=True)
    run(m, host=host, port=port)


@cli.group()
def dev():
    """Developer tools."""


@dev.command("tiny-model")
@click.argument("folder")
@click.option("--seed", type=int, default=0, show_default=True)
def tiny_model(folder, seed):
    """Write a tiny random-weight SD model FOLDER (noise images; for smoke tests only)."""
    from .outputs import check_output_dir, make_output_dir
    from .testing import save_model, tiny_components

    save_model(tiny_components(seed), make_output_dir(check_output_dir(folder)))
    click.echo(f"wrote {folder}")


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, with one ``error:`` line)."""
    _quiet_libraries()
    args = sys.argv[1:] if argv is None else list(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.filterwarnings("ignore", category=FutureWarning)  # the libraries' deprecation chatter
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            cli.main(args=args, prog_name="promptedit", standalone_mode=False)
            return 0
        except click.exceptions.Exit as e:
            return e.exit_code
        except click.exceptions.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            return EXIT_USAGE
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            return 130
        except PromptEditError as e:
            click.echo(f"error: {e}", err=True)
            return EXIT_USAGE
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
