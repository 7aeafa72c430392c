"""The options of the edit commands, as ``promptedit edit`` / ``mask-edit`` and batch manifests give them: their
click declarations, the checks that turn them into a plan before any model loads (one-line errors), and the run of
a plan on a loaded model: its :mod:`promptedit.requests` request, run, and written by
:func:`promptedit.outputs.files.write_result_folder`.

A front-end module (it reads input files and writes the output folder), shared by :mod:`promptedit.cli` and
:mod:`promptedit.batch`, so that batch takes a manifest item's options straight to a request without going
through the command line. ``given``: the options given explicitly, ``{name: flag}`` (an option given that its
workflow would ignore is refused, naming its flag).
"""

from __future__ import annotations

import functools
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import click

from .errors import ParameterError
from .requests import (
    INVERSION_METHODS,
    VELOCITY_EDIT_METHODS,
    FlowEditRequest,
    FlowOptions,
    MAX_SEED,
    EditRequest,
    InstantOptions,
    InvertRequest,
    KVEditOptions,
    MaskEditRequest,
    SamplingOptions,
    check_negative_start,
)

class FiniteRange(click.FloatRange):
    """click's FloatRange that also refuses nan and ±inf (which FloatRange and ``float`` let through)."""

    name = "float"

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


#: any finite number
FINITE = FiniteRange()


def echo(ctx_quiet: bool, message: str) -> None:
    """An informative line on stderr, unless ``--quiet``."""
    if not ctx_quiet:
        click.echo(message, err=True)


def with_options(f, options):
    """``f`` with click's ``options`` (decorators), the first listed first in ``--help``."""
    for option in reversed(options):
        f = option(f)
    return f


def sampling_options(f):
    """--steps, --guidance, --seed, --height, --width, --allow-large-size."""
    @click.option("--steps", type=click.IntRange(1, 1000), default=None,
                  help="Sampling steps (default: the model's, else the papers' 50).")
    @click.option("--guidance", type=FiniteRange(0), default=None,
                  help="Classifier-free guidance scale (default: the model's, else 7.5).")
    @click.option("--seed", type=click.IntRange(0, MAX_SEED), default=None,
                  help="Seed of the noise; the same seed reproduces, bit for bit at the same --threads (default 0).")
    @click.option("--height", type=click.IntRange(min=1), default=None, help="Image height (default: the model's size).")
    @click.option("--width", type=click.IntRange(min=1), default=None, help="Image width (default: the model's size).")
    @click.option("--allow-large-size", "allow_large", is_flag=True,
                  help="Allow sides above 4x the model's native size (refused by default; memory is still checked).")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def negative_prompt_option(f):
    """--negative-prompt."""
    return click.option("--negative-prompt", default=None, metavar="TEXT",
                        help="Negative prompt: its conditioning replaces the empty prompt's in the unconditional "
                             "branch of classifier-free guidance, as diffusers' negative_prompt (refused at "
                             "--guidance 1; real images: applies to the edit of a ddim or direct inversion, in every "
                             "branch, and is refused with null-text and negative-prompt).")(f)


def refuse_given(given: Mapping[str, str], names, why: str) -> None:
    """Refuse the options among ``names`` that were ``given`` (``{name: flag}``) and would be ignored ``why``
    (one line)."""
    flags = [flag for name, flag in given.items() if name in names]
    if flags:
        raise ParameterError(f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} not used {why}")


def command_params(options) -> list[click.Parameter]:
    """The click parameters an options decorator (:func:`edit_options`, :func:`mask_edit_options`) declares, in
    their order."""
    return click.command()(options(lambda **kw: None)).params


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


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_input(path, what: str = "image") -> Path:
    """An input file that exists and is a regular file, checked before the model loads."""
    from .images.inputs import check_input_file

    return check_input_file(path, what)


def check_not_inputs(out: Path, inputs, names) -> None:
    """Refuse an output folder whose outputs (``names``: a set of file names, or a predicate on a name) would
    overwrite an input file, given by its path or through a link."""
    from .errors import OutputPathError

    if not callable(names):
        names = frozenset(names).__contains__

    for item in inputs:
        if not item:
            continue
        for p in {Path(item).absolute(), Path(item).resolve()}:  # the path given, and the file it links to
            if p.parent.resolve() == Path(out).resolve() and names(p.name):
                raise OutputPathError(f"writing to {out} would overwrite the input {item}")


def run_size(model, sampling) -> tuple[int, int]:
    """(height, width) of a run: the :class:`~promptedit.requests.SamplingOptions`' own, else the model's native
    size."""
    return (model.image_size if sampling.height is None else sampling.height,
            model.image_size if sampling.width is None else sampling.width)


def prepare_image(model, image, fit: str, sampling, *, batch: int):
    """A real image file read by the image rule (:func:`promptedit.images.inputs.load_image`) at the run's size
    (:func:`run_size`), checked first for a run of ``batch`` branches."""
    from .images.inputs import load_image
    from .runner import check_size

    size = run_size(model, sampling)
    check_size(model, *size, batch=batch, allow_large=sampling.allow_large)
    return load_image(image, size, fit)


def read_inversion(path):
    """A saved inversion, read and validated completely."""
    from .errors import ImageInputError
    from .methods.inversion import Inversion

    p = check_input(path, "inversion file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageInputError(f"cannot read {p}: {e.strerror or e}") from None
    return Inversion.from_bytes(data, str(p))


# ----------------------------------------------------------------------------- edit

P2P_FLAGS = ("mode", "cross_replace", "self_replace", "reweight", "blend", "blend_subtract", "blend_threshold",
             "blend_start", "inject_features", "blend_source", "blend_target", "self_replace_downsample",
             "inject_values", "value_blocks", "inject_keys", "value_tokens")


def parse_blocks(text: str) -> tuple[int, ...]:
    """``--value-blocks``: block depths as a list of depths and ranges, ``39-56`` or ``19,20,30-33``."""
    depths: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ParameterError(f"--value-blocks must be block depths and ranges, e.g. 39-56 or 19,20,30-33; got "
                                 f"{text!r}") from None
        if a < 0 or b < a:
            raise ParameterError(f"--value-blocks: {part.strip()!r} is not a range of depths (0 <= FIRST <= LAST)")
        depths += range(a, b + 1)
    return tuple(depths)


def p2p_options(f):
    """The Prompt-to-Prompt options of an edit."""
    options = [
        click.option("--mode", type=click.Choice(["replace", "refine", "reweight", "auto"]), default="auto",
                     show_default=True, help="Word swap, added phrase, re-weighting, or chosen from the prompts."),
        click.option("--cross-replace", "cross_replace", multiple=True, metavar="F | START,END | WORD=F",
                     help="Cross-attention injection window (fraction of steps); WORD=... sets one word's window."),
        click.option("--self-replace", default=None, metavar="F | START,END",
                     help="Self-attention injection window (default: the model's; edits of a real image take its "
                          "inversion self_replace, 0.8 on the embedded model)."),
        click.option("--reweight", multiple=True, metavar="WORD=C", help="Scale WORD's attention by C (negative allowed)."),
        click.option("--blend", "blend", multiple=True, metavar="WORD", help="Local blend: edit only where WORD attends."),
        click.option("--blend-source", multiple=True, metavar="WORD",
                     help="Local blend on WORD looked up in the source prompt only (PnPInversion's blended_word 0)."),
        click.option("--blend-target", multiple=True, metavar="WORD",
                     help="Local blend on WORD looked up in the target prompts only (PnPInversion's blended_word 1)."),
        click.option("--blend-subtract", multiple=True, metavar="WORD", help="Local blend: leave WORD's region out."),
        click.option("--blend-threshold", type=FINITE, default=None, help="Local-blend mask threshold (default 0.3)."),
        click.option("--blend-start", type=FINITE, default=None, help="Fraction of steps before blending (default 0.2)."),
        click.option("--inject-features", default=None, metavar="F | START,END",
                     help="Plug-and-Play: inject the source's decoder features over this window."),
        click.option("--inject-values", default=None, metavar="F | START,END",
                     help="Transformers (FLUX.1, SD3): the targets take the source's attention values in the "
                          "--value-blocks over this window (RF-Solver-Edit, FireFlow; their FLUX.1-dev settings: "
                          "2 of 15 steps, 1 of 8)."),
        click.option("--value-blocks", default=None, metavar="DEPTHS",
                     help="Block depths of --inject-values, e.g. 39-56 or 19,20,30-33 (FLUX.1: double-stream blocks "
                          "first, then single-stream; default: RF-Solver-Edit's single-stream blocks 20-37, depths "
                          "39-56 on FLUX.1-dev; FireFlow's: 19-56)."),
        click.option("--inject-keys", is_flag=True,
                     help="With --inject-values: inject the source's keys too (Stable Flow's K and V)."),
        click.option("--value-tokens", type=click.Choice(["all", "image"]), default=None,
                     help="With --inject-values: whose values, every token's (RF-Solver-Edit's and FireFlow's code; "
                          "the default) or the image tokens' (Stable Flow's)."),
        click.option("--self-replace-downsample", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Inject self-attention at layers at least N times smaller than the latent (default: the "
                          "model's; P2P code 4, its null-text notebook and PnPInversion 2)."),
    ]
    return with_options(f, options)


def spec_from_flags(source, targets, kw) -> "EditSpec":  # noqa: F821
    """The :class:`~promptedit.control.edit_spec.EditSpec` the Prompt-to-Prompt flags say."""
    from .control.edit_spec import EditSpec

    windows, cross = {}, None
    for item in kw["cross_replace"]:
        head = item.split("=", 1)[0]
        if "=" in item and not is_number(head):
            word, value = parse_word_value(item, "--cross-replace")
            windows[word] = parse_window(value, f"--cross-replace {word}")
        else:
            cross = parse_window(item, "--cross-replace")
    weights = {}
    for item in kw["reweight"]:
        word, value = parse_word_value(item, "--reweight")
        try:
            weights[word] = float(value)
        except ValueError:
            raise ParameterError(f"--reweight {word} needs a number, got {value!r}") from None
    return EditSpec(
        source=source, targets=tuple(targets), mode=kw["mode"], cross_replace=cross, cross_replace_words=windows,
        self_replace=parse_window(kw["self_replace"], "--self-replace") if kw["self_replace"] else None,
        reweight=weights, blend_words=tuple(kw["blend"]), blend_subtract=tuple(kw["blend_subtract"]),
        blend_threshold=kw["blend_threshold"], blend_start=kw["blend_start"],
        inject_features=parse_window(kw["inject_features"], "--inject-features") if kw["inject_features"] else None,
        blend_swapped=kw.get("blend_swapped"), blend_source=tuple(kw.get("blend_source", ())),
        blend_target=tuple(kw.get("blend_target", ())), self_replace_downsample=kw.get("self_replace_downsample"),
        inject_values=parse_window(kw["inject_values"], "--inject-values") if kw.get("inject_values") else None,
        value_blocks=parse_blocks(kw["value_blocks"]) if kw.get("value_blocks") else None,
        inject_keys=bool(kw.get("inject_keys")), value_tokens=kw.get("value_tokens"),
    )


def edit_options(f):
    """Every option of ``edit`` but the model's: the prompts, the start, the Prompt-to-Prompt options, sampling."""
    options = [
        click.option("--source", default=None, help="The source prompt (for --image: the image's caption)."),
        click.option("--target", "targets", multiple=True, help="An edited prompt (repeat for several)."),
        click.option("--prompt", "one_prompt", default=None, metavar="TEXT",
                     help="The whole edit in one prompt, in AUTOMATIC1111's or compel's edit syntax, e.g. "
                          "'a [red:blue:0.6] circle on a (white:1.2) background' (instead of --source/--target and the "
                          "Prompt-to-Prompt flags)."),
        click.option("--syntax", type=click.Choice(["auto", "a1111", "compel"]), default="auto", show_default=True,
                     help="The syntax of --prompt (auto: detected when unambiguous)."),
        click.option("--out", required=True, metavar="DIR", help="Output folder."),
        click.option("--image", default=None, metavar="IMAGE",
                     help="Edit this real image (inverted first with --method)."),
        click.option("--inversion", default=None, metavar="FILE",
                     help="Edit a saved inversion (promptedit invert); its prompt is the source."),
        click.option("--method", type=click.Choice(INVERSION_METHODS), default=None,
                     help="How --image is inverted (promptedit invert --help lists the methods; default: null-text on "
                          "DDIM models, euler on flow models)."),
        click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
                     help="How --image is brought to the model's aspect ratio before resizing."),
        click.option("--inner-steps", type=click.IntRange(min=1), default=10, show_default=True,
                     help="Null-text: Adam iterations per step."),
        click.option("--edit-null", type=click.Choice(["all", "source"]), default=None,
                     help="Real images: which branches take the inversion's null conditioning: all (the null-text and "
                          "negative-prompt papers') or the source only, the edits taking the empty prompt's "
                          "(default: the model's; all unless its promptedit.json says otherwise; the embedded model: "
                          "source)."),
        click.option("--no-blend-swapped", "no_blend_swapped", is_flag=True,
                     help="Real images: do not blend a word swap locally on its swapped words (done by default, "
                          "so the image outside them is kept)."),
        p2p_options,
        click.option("--save-attention", is_flag=True, help="Also write DIR/attention.png (maps of source and edits)."),
        sampling_options,
        negative_prompt_option,
    ]
    return with_options(f, options)


@dataclass
class EditPlan:
    """An edit checked before any model loads: what ``edit`` will run and where it writes (the request is made
    once the model is loaded, which a real image is read at the size of)."""

    spec: object
    out: Path
    parsed: object | None
    image: str | None
    inversion: str | None
    inv: object | None
    sampling: SamplingOptions
    options: dict


def plan_edit(source, targets, one_prompt, syntax, out, image, inversion, method, fit, inner_steps, edit_null,
              no_blend_swapped, save_attention, *, given: Mapping[str, str], defaults=None, **options) -> EditPlan:
    """Check the options against the workflow and read the inputs, before anything loads (one-line errors).

    ``defaults``: the model's :class:`~promptedit.defaults.ModelDefaults`, whose steps a ``--prompt`` is read at
    when neither ``--steps`` nor an inversion gives them (A1111's step numbers and exact windows need them).
    ``options``: the sampling options and the Prompt-to-Prompt options.
    """
    from .outputs.files import check_output_dir, is_edit_file

    sampling = SamplingOptions.take(options)
    p2p = options  # the rest: the Prompt-to-Prompt options
    if image and inversion:
        raise ParameterError("give --image or --inversion, not both")
    real = bool(image or inversion)
    if not real:
        refuse_given(given, ("edit_null", "no_blend_swapped", "method", "fit", "inner_steps"),
                      "in an edit of a generated image (only with --image or --inversion)")
    if inversion:
        refuse_given(given, ("steps", "guidance", "height", "width", "seed", "allow_large", "method", "fit", "inner_steps"),
                      "with --inversion (its steps, guidance and size are the inversion's; invert again to change them)")
    if image:
        refuse_given(given, ("seed",), "with --image (inversion uses no noise)")
        if method is not None and method != "null-text":
            refuse_given(given, ("inner_steps",), f"with --method {method} (only with null-text)")
    parsed = None
    if one_prompt is not None:
        if source is not None or targets:
            raise ParameterError("--prompt says the source and the target: give it instead of --source/--target")
        refuse_given(given, P2P_FLAGS, "with --prompt (the prompt's edit syntax says the edit)")
    else:
        refuse_given(given, ("syntax",), "without --prompt")
    inv = read_inversion(inversion) if inversion else None
    check_negative_start(sampling.negative_prompt, method if image else getattr(inv, "method", None))
    if one_prompt is not None:
        from .text.syntax import parse_edit_prompt

        run_steps = inv.num_inference_steps if inv is not None else sampling.steps  # the steps the edit runs at
        if run_steps is None and defaults is not None:
            run_steps = (defaults.inversion if image else defaults.sampling).num_inference_steps
        parsed = parse_edit_prompt(one_prompt, syntax, num_inference_steps=run_steps)
    if image:
        check_input(image)
    blend_swapped = False if no_blend_swapped else None
    if parsed is not None:
        from .control.edit_spec import EditSpec

        spec = EditSpec(**{**parsed.spec_kwargs(), "blend_swapped": blend_swapped})
        if inv is not None and spec.source != inv.prompt:
            raise ParameterError(f"the prompt's source {spec.source!r} differs from the inversion's prompt {inv.prompt!r}")
    else:
        if inv is not None:
            if source is not None and source != inv.prompt:
                raise ParameterError(f"--source differs from the inversion's prompt {inv.prompt!r}")
            source = inv.prompt
        if source is None:
            raise ParameterError("give --source (the prompt of the image to edit), or the whole edit with --prompt")
        if not targets:
            if p2p["mode"] != "reweight":
                raise ParameterError("give at least one --target (or --mode reweight with --reweight WORD=C)")
            targets = (source,)
        spec = spec_from_flags(source, targets, {**p2p, "blend_swapped": blend_swapped})
    out = check_output_dir(out)
    check_not_inputs(out, [image, inversion], is_edit_file)
    options = dict(method=method, fit=fit, inner_steps=inner_steps, edit_null=edit_null, save_attention=save_attention,
                   inner_steps_given="inner_steps" in given)
    return EditPlan(spec, out, parsed, image, inversion, inv, sampling, options)


def edit_request(model, plan: EditPlan, *, quiet: bool = True):
    """The :class:`~promptedit.requests.EditRequest` of a planned edit on a loaded model (a real image read at the
    run's size); returns it and the prepared real image (None for other starts)."""
    o = plan.options
    prepared, invert = None, None
    if plan.image:
        if o["method"] is None and o.get("inner_steps_given"):  # the model's default method: known only now
            from .methods.inversion import default_method

            if default_method(model) != "null-text":
                raise ParameterError(f"--inner-steps is not used with --method {default_method(model)}, this "
                                     "model's default (only with null-text)")
        prepared, invert = invert_request(model, plan.image, plan.spec.source, o["method"], o["fit"],
                                          o["inner_steps"], replace(plan.sampling, negative_prompt=None), quiet)
    negative = plan.sampling.negative_prompt  # the edit's own: an inversion takes none
    sampling = SamplingOptions(negative_prompt=negative) if plan.image or plan.inversion else plan.sampling
    request = EditRequest(plan.spec, sampling, invert=invert, inversion=plan.inv, edit_null=o["edit_null"],
                          save_attention=o["save_attention"])
    return request, prepared


def run_edit(model, plan: EditPlan, *, quiet: bool = True, started: float | None = None, command: str = "edit",
             extra: dict | None = None):
    """Run a planned edit on a loaded model and write its outputs and record; returns the result."""
    from .outputs.files import write_result_folder

    started = time.perf_counter() if started is None else started
    request, prepared = edit_request(model, plan, quiet=quiet)
    result = request.run(model, progress=not quiet)
    for note in result.notes:
        echo(quiet, note)
    inputs = {}
    if plan.inversion:
        inputs["inversion"] = str(plan.inversion)
    if prepared is not None:
        from .images.metrics import psnr

        inputs["image"] = {"path": str(plan.image), "rule": prepared.rule, "original_size": prepared.original_size,
                           "original_mode": prepared.original_mode,
                           "reconstruction_psnr": round(psnr(result.images[0], prepared.image), 3)}
    extra = dict(extra or {})
    if plan.parsed is not None:
        extra["one_prompt"] = {**plan.parsed.to_dict(), "equivalent_flags": plan.parsed.flags()}
        echo(quiet, "as flags: " + shlex.join(plan.parsed.flags()))
    write_result_folder(plan.out, model, result, command=command, started=started, input_image=prepared,
                        write_inversion=bool(plan.image), inputs=inputs, extra=extra or None)
    return result


def invert_request(model, image, prompt, method, fit, inner_steps, sampling, quiet):
    """``image`` read by the image rule at the run's size, and the :class:`~promptedit.requests.InvertRequest`
    that inverts it under ``prompt``."""
    if method is None:
        from .methods.inversion import default_method

        method = default_method(model)
    prepared = prepare_image(model, image, fit, sampling, batch=1)
    echo(quiet, f"inverting {image} ({prepared.rule}) with {method}")
    return prepared, InvertRequest(prepared.image, prompt, method=method, inner_steps=inner_steps, sampling=sampling,
                                   image_rule=prepared.rule)


# ----------------------------------------------------------------------------- mask-edit

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
    return with_options(f, options)


KV_OPTIONS = ("skip_step", "inversion_guidance", "re_init", "attn_mask")


def kv_edit_options(f):
    """KV-Edit's options (the paper's defaults when not given)."""
    options = [
        click.option("--skip-step", type=click.IntRange(min=0), default=None,
                     help="KV-Edit: the schedule's first steps left out (the inversion stops and the edit starts "
                          "there; default: the paper's 4 of 28, scaled to --steps)."),
        click.option("--inversion-guidance", type=FiniteRange(0), default=None,
                     help="KV-Edit: the inversion's guidance (default: the paper's 1.5 on a guidance-distilled FLUX.1, "
                          "else 1)."),
        click.option("--re-init", is_flag=True,
                     help="KV-Edit: start the foreground from fresh noise instead of its inversion."),
        click.option("--attn-mask", is_flag=True,
                     help="KV-Edit: in the inversion, the foreground attends to the text and itself only."),
    ]
    return with_options(f, options)


def mask_edit_options(f):
    """Every option of ``mask-edit`` but the model's."""
    options = [
        click.option("--source", required=True, help="The image's caption (or the prompt of the generated source)."),
        click.option("--target", required=True, help="The edited prompt."),
        click.option("--out", required=True, metavar="DIR", help="Output folder."),
        click.option("--image", default=None, metavar="IMAGE",
                     help="The image to edit (default: generated from --seed)."),
        click.option("--method", type=click.Choice(["instant", "diffedit", "kv-edit"]), default="instant",
                     show_default=True,
                     help="The mask: instant attention masks (InstDiffEdit: mask and edit in one pass, then an "
                          "inpainting pass) or DiffEdit's (through diffusers); or KV-Edit (FLUX.1: inversion, then "
                          "only the foreground's tokens denoise against the background's cached keys and values) "
                          "inside --mask or an instant mask."),
        click.option("--mask", "mask_file", default=None, metavar="MASK.png",
                     help="Edit only inside this mask (white = edit), instead of a mask the method makes (with "
                          "kv-edit: its mask)."),
        click.option("--strength", type=FiniteRange(0, 1, min_open=True), default=0.5, show_default=True,
                     help="How far the source is noised (fraction of the steps)."),
        click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
                     help="How --image (and --mask, the same way) is brought to the model's aspect ratio before "
                          "resizing."),
        click.option("--inpaint-model", default=None, metavar="PATH",
                     help="Instant: a diffusers inpainting folder (SD or SDXL) for the final pass over the mask "
                          "(default: the same model regenerates the masked region)."),
        instant_mask_options,
        kv_edit_options,
        sampling_options,
        negative_prompt_option,
    ]
    return with_options(f, options)


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
    kv: KVEditOptions = KVEditOptions()


def plan_mask_edit(source, target, out, image, method, mask_file, strength, fit, inpaint_model, *,
                   given: Mapping[str, str], **options) -> MaskEditPlan:
    """Check a mask-guided edit's options and inputs before anything loads (one-line errors); ``options``: the
    sampling options and the instant-mask options."""
    from .outputs.files import MASK_EDIT_FILES, check_output_dir

    sampling = SamplingOptions.take(options)
    kv = {name: options.pop(name) for name in KV_OPTIONS}

    if mask_file:
        if "method" in given and method != "kv-edit":
            raise ParameterError(f"--mask replaces the mask that --method {method} makes: give one of them")
        refuse_given(given, INSTANT_OPTIONS + ("inpaint_model",), "with --mask (only with --method instant)")
        if method == "kv-edit":
            refuse_given(given, ("strength",), "with --method kv-edit and --mask (it is the noise level of an instant "
                                               "mask; KV-Edit starts from its inversion: see --skip-step)")
    elif method == "kv-edit":
        refuse_given(given, ("inpaint_model",), "with --method kv-edit (only with instant)")
    elif method != "instant":
        refuse_given(given, INSTANT_OPTIONS + ("inpaint_model",), f"with --method {method} (only with instant)")
    if method != "kv-edit":
        refuse_given(given, KV_OPTIONS, f"with {'--mask' if mask_file else f'--method {method}'} (only with kv-edit)")
    if image:
        check_input(image)
    if mask_file:
        check_input(mask_file, "mask")
    out = check_output_dir(out)
    check_not_inputs(out, [image, mask_file], MASK_EDIT_FILES)
    instant = InstantOptions(**options) if method in ("instant", "kv-edit") and not mask_file else InstantOptions()
    kv = KVEditOptions(**kv) if method == "kv-edit" else KVEditOptions()
    return MaskEditPlan(source, target, out, image, mask_file, "mask" if mask_file and method != "kv-edit" else method,
                        strength, fit, inpaint_model, sampling, instant, kv)


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
                              sampling=plan.sampling, kv=plan.kv)
    return request, prepared


def run_mask_edit(model, plan: MaskEditPlan, *, quiet: bool = True, started: float | None = None,
                  command: str = "mask-edit", extra: dict | None = None):
    """Run a planned mask-guided edit on a loaded model and write its outputs and record; returns the result."""
    from .outputs.files import write_result_folder

    started = time.perf_counter() if started is None else started
    inpainter = None
    if plan.inpaint_model:
        from .models import load_inpaint_pipeline

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
    :func:`promptedit.images.inputs.prepare_mask`); ``like``: the image's (width, height), whose shape the mask must have."""
    from .errors import ImageInputError
    from .images.inputs import load_mask

    mask = load_mask(path, size, fit, like=like)
    if not mask.any():
        raise ImageInputError(f"mask {path} is empty (no white pixels)")
    return mask


# ----------------------------------------------------------------------------- flow-edit

FLOW_OPTIONS = FlowOptions.FLOWEDIT + FlowOptions.UNIEDIT


def flow_edit_options(f):
    """Every option of ``flow-edit`` but the model's."""
    options = [
        click.option("--image", required=True, metavar="IMAGE", help="The real image to edit."),
        click.option("--source", required=True, help="The image's caption."),
        click.option("--target", required=True, help="The edited prompt."),
        click.option("--out", required=True, metavar="DIR", help="Output folder."),
        click.option("--method", type=click.Choice(VELOCITY_EDIT_METHODS), default="flowedit", show_default=True,
                     help="flowedit: FlowEdit (Kulikov et al. 2024), inversion-free, the ODE on the difference of the "
                          "target's and the source's velocities at re-noised copies of the image; uniedit: "
                          "UniEdit-Flow (Jiao et al. 2025), Uni-Inv then the two velocities fused by a mask read off "
                          "their difference."),
        click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
                     help="How IMAGE is brought to the model's aspect ratio before resizing."),
        click.option("--n-max", "n_max", type=click.IntRange(min=1), default=None,
                     help="FlowEdit: the last N_MAX steps run (default: 24 of 28, the paper's FLUX.1 share)."),
        click.option("--n-min", "n_min", type=click.IntRange(min=0), default=None,
                     help="FlowEdit: the last N_MIN steps sample the target plainly (default 0)."),
        click.option("--n-avg", "n_avg", type=click.IntRange(min=1), default=None,
                     help="FlowEdit: noise draws averaged per step (default 1)."),
        click.option("--source-guidance", type=FiniteRange(0), default=None,
                     help="FlowEdit: the source velocity's guidance (default 1.5; --guidance is the target's, "
                          "default 5.5; the paper's SD3 settings: 3.5 and 13.5, 50 steps, --n-max 33)."),
        click.option("--alpha", type=FiniteRange(0, 1, min_open=True), default=None,
                     help="UniEdit-Flow: the share of the steps inverted and edited (default 0.6)."),
        click.option("--omega", type=FINITE, default=None, help="UniEdit-Flow: the edit's strength (default 5)."),
        click.option("--mask-patch", "mask_patch", type=click.IntRange(min=1), default=None,
                     help="UniEdit-Flow: the velocity mask's cell in latent positions (default: one backbone "
                          "token, 2 on FLUX.1)."),
        sampling_options,
    ]
    return with_options(f, options)


@dataclass
class FlowEditPlan:
    """A velocity edit checked before any model loads: the image file, where it writes and the options."""

    image: str
    source: str
    target: str
    out: Path
    method: str
    fit: str
    options: FlowOptions
    sampling: SamplingOptions


def plan_flow_edit(image, source, target, out, method, fit, *, given: Mapping[str, str], **options) -> FlowEditPlan:
    """Check a velocity edit's options and input before anything loads (one-line errors); ``options``: the
    sampling options and the methods' own (:class:`~promptedit.requests.FlowOptions`)."""
    from .outputs.files import check_output_dir, is_edit_file

    sampling = SamplingOptions.take(options)
    other = FlowOptions.UNIEDIT if method == "flowedit" else FlowOptions.FLOWEDIT
    refuse_given(given, other, f"with --method {method}")
    if method == "uniedit":
        refuse_given(given, ("seed",), "with --method uniedit (it draws no noise)")
    flow = FlowOptions(**{name: options[name] for name in FLOW_OPTIONS})
    check_input(image)
    out = check_output_dir(out)
    check_not_inputs(out, [image], is_edit_file)
    return FlowEditPlan(image, source, target, out, method, fit, flow, sampling)


def run_flow_edit(model, plan: FlowEditPlan, *, quiet: bool = True, started: float | None = None,
                  command: str = "flow-edit", extra: dict | None = None):
    """Run a planned velocity edit on a loaded model (the image read at the run's size) and write its folder
    (``source.png``: the input as edited, ``edited.png``, ``grid.png``, ``result.json``); returns the result."""
    from .outputs.files import write_result_folder

    started = time.perf_counter() if started is None else started
    prepared = prepare_image(model, plan.image, plan.fit, plan.sampling, batch=2)
    request = FlowEditRequest(prepared.image, plan.source, plan.target, plan.method, plan.options, plan.sampling)
    result = request.run(model, progress=not quiet)
    inputs = {"image": {"path": str(plan.image), "rule": prepared.rule, "original_size": prepared.original_size,
                        "original_mode": prepared.original_mode}}
    write_result_folder(plan.out, model, result, command=command, started=started, inputs=inputs, extra=extra)
    return result
