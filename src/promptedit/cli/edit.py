"""``promptedit edit``: a Prompt-to-Prompt edit of a generated image (from a seed) or of a real image (inverted
first with ``--image``, or a saved ``--inversion``); the edit given by flags or by one prompt in edit syntax."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import ParameterError
from ..requests import INVERSION_METHODS, EditRequest, InvertRequest, SamplingOptions
from .common import (
    FINITE,
    check_input,
    check_not_inputs,
    echo,
    folder_defaults,
    is_number,
    load,
    model_options,
    parse_window,
    parse_word_value,
    prepare_image,
    read_inversion,
    refuse_unused,
    sampling_options,
)

P2P_FLAGS = ("mode", "cross_replace", "self_replace", "reweight", "blend", "blend_subtract", "blend_threshold",
             "blend_start", "inject_features", "blend_source", "blend_target", "self_replace_downsample")
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
        click.option("--self-replace-downsample", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Inject self-attention at layers at least N times smaller than the latent (default: the "
                          "model's; P2P code 4, its null-text notebook and PnPInversion 2)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def spec_from_flags(source, targets, kw) -> "EditSpec":  # noqa: F821
    """The :class:`~promptedit.spec.EditSpec` the Prompt-to-Prompt flags say."""
    from ..spec import EditSpec

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
    )


@click.command()
@click.option("--source", default=None, help="The source prompt (for --image: the image's caption).")
@click.option("--target", "targets", multiple=True, help="An edited prompt (repeat for several).")
@click.option("--prompt", "one_prompt", default=None, metavar="TEXT",
              help="The whole edit in one prompt, in AUTOMATIC1111's or compel's edit syntax, e.g. "
                   "'a [red:blue:0.6] circle on a (white:1.2) background' (instead of --source/--target and the "
                   "Prompt-to-Prompt flags).")
@click.option("--syntax", type=click.Choice(["auto", "a1111", "compel"]), default="auto", show_default=True,
              help="The syntax of --prompt (auto: detected when unambiguous).")
@click.option("--out", required=True, metavar="DIR", help="Output folder.")
@click.option("--image", default=None, metavar="IMAGE", help="Edit this real image (inverted first with --method).")
@click.option("--inversion", default=None, metavar="FILE",
              help="Edit a saved inversion (promptedit invert); its prompt is the source.")
@click.option("--method", type=click.Choice(INVERSION_METHODS), default="null-text", show_default=True,
              help="How --image is inverted.")
@click.option("--fit", type=click.Choice(["crop", "pad"]), default="crop", show_default=True,
              help="How --image is brought to the model's aspect ratio before resizing.")
@click.option("--inner-steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="Null-text: Adam iterations per step.")
@click.option("--edit-null", type=click.Choice(["all", "source"]), default=None,
              help="Real images: which branches take the inversion's null conditioning: all (the null-text and "
                   "negative-prompt papers') or the source only, the edits taking the empty prompt's (default: the "
                   "model's; all unless its promptedit.json says otherwise; the embedded model: source).")
@click.option("--no-blend-swapped", "no_blend_swapped", is_flag=True,
              help="Real images: do not blend a word swap locally on its swapped words (done by default, so the image "
                   "outside them is kept).")
@p2p_options
@click.option("--save-attention", is_flag=True, help="Also write DIR/attention.png (maps of source and edits).")
@sampling_options
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
    plan = plan_edit(**kw, defaults=folder_defaults(model) if needs_steps else None)
    m = load(model, device, quiet=quiet, threads=threads)
    result = run_edit(m, plan, quiet=quiet, started=started)
    click.echo(f"wrote {plan.out} (mode {result.mode}, {result.timings['total']:.1f} s)")


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
              no_blend_swapped, save_attention, steps, guidance, seed, height, width, allow_large, defaults=None,
              **p2p) -> EditPlan:
    """Check the options against the workflow and read the inputs, before anything loads (one-line errors).

    ``defaults``: the model's :class:`~promptedit.defaults.ModelDefaults`, whose steps a ``--prompt`` is read at
    when neither ``--steps`` nor an inversion gives them (A1111's step numbers and exact windows need them).
    """
    from ..outputs import check_output_dir, is_edit_file

    if image and inversion:
        raise ParameterError("give --image or --inversion, not both")
    real = bool(image or inversion)
    if not real:
        refuse_unused(("edit_null", "no_blend_swapped", "method", "fit", "inner_steps"),
                      "in an edit of a generated image (only with --image or --inversion)")
    if inversion:
        refuse_unused(("steps", "guidance", "height", "width", "seed", "allow_large", "method", "fit", "inner_steps"),
                      "with --inversion (its steps, guidance and size are the inversion's; invert again to change them)")
    if image:
        refuse_unused(("seed",), "with --image (inversion uses no noise)")
        if method != "null-text":
            refuse_unused(("inner_steps",), f"with --method {method} (only with null-text)")
    parsed = None
    if one_prompt is not None:
        if source is not None or targets:
            raise ParameterError("--prompt says the source and the target: give it instead of --source/--target")
        refuse_unused(P2P_FLAGS, "with --prompt (the prompt's edit syntax says the edit)")
    else:
        refuse_unused(("syntax",), "without --prompt")
    inv = read_inversion(inversion) if inversion else None
    if one_prompt is not None:
        from ..syntax import parse_edit_prompt

        run_steps = inv.num_inference_steps if inv is not None else steps  # the steps the edit will run at
        if run_steps is None and defaults is not None:
            run_steps = (defaults.inversion if image else defaults.sampling).num_inference_steps
        parsed = parse_edit_prompt(one_prompt, syntax, num_inference_steps=run_steps)
    if image:
        check_input(image)
    blend_swapped = False if no_blend_swapped else None
    if parsed is not None:
        from ..spec import EditSpec

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
    sampling = SamplingOptions(steps=steps, guidance=guidance, seed=seed, height=height, width=width,
                               allow_large=allow_large)
    options = dict(method=method, fit=fit, inner_steps=inner_steps, edit_null=edit_null, save_attention=save_attention)
    return EditPlan(spec, out, parsed, image, inversion, inv, sampling, options)


def edit_request(model, plan: EditPlan, *, quiet: bool = True):
    """The :class:`~promptedit.requests.EditRequest` of a planned edit on a loaded model (a real image read at the
    run's size); returns it and the prepared real image (None for other starts)."""
    o = plan.options
    prepared, invert = None, None
    if plan.image:
        prepared, invert = invert_request(model, plan.image, plan.spec.source, o["method"], o["fit"],
                                          o["inner_steps"], plan.sampling, quiet)
    sampling = SamplingOptions() if plan.image or plan.inversion else plan.sampling
    request = EditRequest(plan.spec, sampling, invert=invert, inversion=plan.inv, edit_null=o["edit_null"],
                          save_attention=o["save_attention"])
    return request, prepared


def run_edit(model, plan: EditPlan, *, quiet: bool = True, started: float | None = None, command: str = "edit",
             extra: dict | None = None):
    """Run a planned edit on a loaded model and write its outputs and record; returns the result."""
    from ..outputs import write_result_folder

    started = time.perf_counter() if started is None else started
    request, prepared = edit_request(model, plan, quiet=quiet)
    result = request.run(model, progress=not quiet)
    for note in result.notes:
        echo(quiet, note)
    inputs = {}
    if plan.inversion:
        inputs["inversion"] = str(plan.inversion)
    if prepared is not None:
        from ..metrics import psnr

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
    prepared = prepare_image(model, image, fit, sampling, batch=1)
    echo(quiet, f"inverting {image} ({prepared.rule}) with {method}")
    return prepared, InvertRequest(prepared.image, prompt, method=method, inner_steps=inner_steps, sampling=sampling,
                                   image_rule=prepared.rule)


COMMANDS = [edit]
