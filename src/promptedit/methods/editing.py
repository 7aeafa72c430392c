"""Prompt-to-Prompt (Hertz et al., ICLR 2023, Algorithm 1) and plain generation, on the one runner.

:func:`edit` denoises the source and every target together from one start: a seed's x_T (a generated image)
or an :class:`~promptedit.methods.inversion.Inversion` (a real image), with the controller :func:`~promptedit.control.edit_spec.
build_controller` makes from an :class:`~promptedit.control.edit_spec.EditSpec`. :func:`generate` and :func:`attention` are
the same run without control, and with an attention store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..control import MAP_PLACES, AttentionStore, Compose, FeatureInjection, ValueInjection, step_window
from ..defaults import EDIT_NULLS, P2PDefaults
from ..errors import ParameterError, PromptError
from ..models import DiffusionModel
from ..runner import SeedStart, Start, StepCallback, resolve_sampling, run
from ..control.edit_spec import EditSpec, _check_prompt, build_controller, resolve_mode
from .result import AttentionResult, EditResult, GenerationResult

__all__ = ["AttentionResult", "EditResult", "EditSpec", "GenerationResult", "attention", "edit", "generate"]


def figure_downsample(model: DiffusionModel, requested: int | None = None) -> tuple[int, str]:
    """The resolution of attention-map figures: ``requested``, or the model's default, or the nearest it has."""
    return model.resolve_downsample(requested, model.defaults.p2p.attention_downsample, "attention maps")


def p2p_defaults(model: DiffusionModel, spec: EditSpec, start: Start) -> tuple[P2PDefaults, list[str]]:
    """The Prompt-to-Prompt defaults of this edit: the model's, with an inversion's self-attention window for
    edits of real images, and the resolutions local blend reads and self-attention is injected at replaced by
    ones the UNet has when it lacks them (with a note)."""
    d = model.defaults.p2p
    notes = []
    if start.inverted and model.defaults.inversion.self_replace is not None:
        d = dataclasses.replace(d, self_replace=model.defaults.inversion.self_replace)
    if spec.blends:
        f, note = model.resolve_downsample(None, d.blend_downsample, "local blend")
        d = dataclasses.replace(d, blend_downsample=f)
        notes += [note] if note else []
    have = model.attention_downsamples(is_cross=False)
    asked = spec.self_replace_downsample
    if have and asked is not None and asked > max(have):
        raise ParameterError(f"self-replace downsample {asked}: this model has no self-attention at 1/{asked} of the "
                             f"latent size or smaller (its smallest: 1/{max(have)})")
    if have and d.self_replace_min_downsample > max(have):
        notes.append(f"self-attention injection: this model has no self-attention at 1/{d.self_replace_min_downsample}"
                     f" of the latent size or smaller; injecting at 1/{max(have)}")
        d = dataclasses.replace(d, self_replace_min_downsample=max(have))
    return d, notes


def _blend_swapped(model: DiffusionModel, spec: EditSpec, start: Start) -> tuple[EditSpec, list[str]]:
    """Word swaps of an inversion given no blend words blend locally on the swapped words (``blend_swapped``)."""
    if not start.inverted or spec.blends:
        return spec, []
    on = model.defaults.inversion.blend_swapped if spec.blend_swapped is None else spec.blend_swapped
    words = spec.swapped_words() if on and resolve_mode(spec)[0] == "replace" else ()
    if not words:
        return spec, []
    note = f"local blend on the swapped words {', '.join(words)}: the image is kept outside them (blend_swapped)"
    return dataclasses.replace(spec, blend_words=words), [note]


def _ranges(depths) -> str:
    """Depths as runs: ``19-21, 30``."""
    runs: list[list[int]] = []
    for d in sorted(depths):
        if runs and d == runs[-1][1] + 1:
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def value_injection(model: DiffusionModel, spec: EditSpec, num_steps: int
                    ) -> tuple[EditSpec, ValueInjection | None, list[str]]:
    """The spec with its value blocks resolved (the model's default where it names none), its
    :class:`~promptedit.control.ValueInjection` (None without ``inject_values``) and a note saying what is injected
    where. Refused in one line: on a backbone without transformer blocks (a UNet), at depths the model lacks, and
    with a window that covers no step of the run (the injection asked for would never happen)."""
    if spec.inject_values is None:
        return spec, None, []
    default = model.backbone.default_value_blocks()  # a UNet refuses here
    blocks = default if spec.value_blocks is None else list(spec.value_blocks)
    have = model.backbone.block_depths()
    missing = sorted(set(blocks) - set(have))
    if missing:
        raise ParameterError(f"value block{'s' if len(missing) > 1 else ''} {_ranges(missing)} not in this model: its "
                             f"transformer blocks are depths {_ranges(have)}")
    start, end = step_window(spec.inject_values, num_steps)
    if start >= end:
        raise ParameterError(f"inject-values {spec.inject_values} covers no step of {num_steps}: widen it (a fraction "
                             "of at least one step), or leave it out for no value injection")
    tokens = spec.value_tokens or "all"
    control = ValueInjection(spec.inject_values, blocks, keys=spec.inject_keys, tokens=tokens)
    what = "keys and values" if spec.inject_keys else "values"
    whose = "every token" if tokens == "all" else "the image tokens"
    chosen = " (the model default)" if spec.value_blocks is None else ""
    note = (f"value injection: the targets take the source's {what} of {whose} in blocks {_ranges(blocks)}{chosen}"
            f" at steps {start + 1}-{end} of {num_steps}")
    return dataclasses.replace(spec, value_blocks=tuple(blocks)), control, [note]


def generate(model: DiffusionModel, prompt: str | Sequence[str], *, seed: int | None = None,
             num_inference_steps: int | None = None, guidance_scale: float | None = None, height: int | None = None,
             width: int | None = None, callback: StepCallback | None = None, allow_large: bool = False,
             negative_prompt: str | None = None, progress: bool | str = True) -> GenerationResult:
    """Plain text-to-image generation of one prompt or a batch sharing x_T (no attention control);
    ``negative_prompt``: its conditioning is the unconditional branch (as diffusers' pipelines take it)."""
    if not isinstance(prompt, (str, list, tuple)):
        raise PromptError(f"prompt must be a prompt or a list of prompts, got {type(prompt).__name__}")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise PromptError("no prompt to generate")
    for i, p in enumerate(prompts):
        _check_prompt(f"prompt {i + 1}", p)
    start = SeedStart(seed)
    sampling = resolve_sampling(model, start, num_inference_steps, guidance_scale, height, width,
                                batch=len(prompts), allow_large=allow_large, negative_prompt=negative_prompt)
    out = run(model, prompts, start, sampling=sampling, callback=callback, progress=progress)
    return GenerationResult("generate", prompts, out.images, seed, sampling, out.timings, latents=out.x_start,
                            final_latents=out.latents)


def edit(
    model: DiffusionModel,
    spec: EditSpec,
    *,
    start: Start | None = None,
    seed: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    store_attention: bool = False,
    edit_null: str | None = None,
    callback: StepCallback | None = None,
    allow_large: bool = False,
    negative_prompt: str | None = None,
    progress: bool | str = True,
) -> EditResult:
    """A Prompt-to-Prompt edit: the source and every target of ``spec`` from one start, in one batch.

    Args:
        start: where the branches start: a seed's x_T (default, from ``seed``) or an
            :class:`~promptedit.methods.inversion.Inversion` of a real image (its steps, guidance and size are its own; a
            different value given is refused). The source prompt must then be the inversion's.
        store_attention: also record the (edited) cross-attention maps at the model's figure resolution.
        edit_null: edits of an inversion: which branches take its null conditioning, ``all`` (the null-text and
            negative-prompt papers') or ``source`` (ours: the edited branches take the empty prompt's); None: the
            model's ``inversion.edit_null``.
        negative_prompt: its conditioning is every branch's unconditional branch; refused at guidance 1 and in
            edits of a null-text or negative-prompt inversion (their unconditional branch is the inversion's).
    """
    if not isinstance(spec, EditSpec):
        raise ParameterError(f"an edit takes an EditSpec (EditSpec(source, targets) or EditSpec.from_prompt(text)), "
                             f"got {type(spec).__name__}")
    if start is not None and not isinstance(start, Start):
        raise ParameterError(f"start must be an inversion, a noised image or None, got {type(start).__name__}")
    if start is None:
        start = SeedStart(seed)
    elif seed is not None and start.seed != seed:
        raise ParameterError(f"a seed does not apply to an edit of a {start.method} start")
    inverted = start.inverted
    if edit_null is not None and not inverted:
        raise ParameterError("edit_null applies to edits of an inversion only")
    if edit_null is not None and edit_null not in EDIT_NULLS:
        raise ParameterError(f"edit_null must be one of {', '.join(EDIT_NULLS)}, got {edit_null!r}")
    start.check_prompts(spec.prompts)
    sampling = resolve_sampling(model, start, num_inference_steps, guidance_scale, height, width,
                                batch=len(spec.prompts), allow_large=allow_large, negative_prompt=negative_prompt)
    spec, notes = _blend_swapped(model, spec, start)
    defaults, resolution_notes = p2p_defaults(model, spec, start)
    controller, mode, mode_notes = build_controller(spec, model.keys, sampling.num_inference_steps, defaults)
    spec, values, value_notes = value_injection(model, spec, sampling.num_inference_steps)
    notes = mode_notes + notes + resolution_notes + value_notes
    store, f = None, None
    if store_attention:
        f, note = figure_downsample(model)
        notes += [note] if note else []
        store = AttentionStore(downsamples=[f], places=MAP_PLACES)
    features = FeatureInjection(spec.inject_features) if spec.inject_features is not None else None
    edit_null = (model.defaults.inversion.edit_null if edit_null is None else edit_null) if inverted else None
    control = Compose([controller, values, store]) if store or values else controller
    out = run(model, spec.prompts, start, sampling=sampling, controller=control,
              features=features, callback=callback, edit_null=edit_null, progress=progress)
    return EditResult(
        start.method if inverted else "p2p", spec.prompts, out.images, None if inverted else start.seed, sampling,
        out.timings, latents=out.x_start, final_latents=out.latents, spec=spec, mode=mode, notes=notes,
        attention=store, attention_downsample=f, edit_null=edit_null, inversion=start if inverted else None,
        blend_mask=None if controller.local_blend is None else controller.local_blend.last_mask,
    )


def attention(
    model: DiffusionModel,
    prompt: str,
    *,
    downsample: int | None = None,
    self_attention: bool = True,
    seed: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    allow_large: bool = False,
    progress: bool | str = True,
) -> AttentionResult:
    """Generate ``prompt`` while recording its cross- (and self-) attention maps at 1/``downsample`` of the
    latent (default: the model's figure resolution, or the nearest one its UNet has). Self-attention maps exist
    only where the backbone has self-attention layers: an MM-DiT's image block of joint attention is not read
    (it would be the full N_image² matrix), and a note says so."""
    _check_prompt("prompt", prompt)
    f, note = figure_downsample(model, downsample)
    notes = [note] if note else []
    if self_attention and not model.backbone.grids(kind="self", places=("down", "up")):
        self_attention = False
        notes.append("this model's attention is joint (MM-DiT): its image-to-image maps are not recorded, so there "
                     "are no self-attention components")
    store = AttentionStore(self_attention=self_attention, downsamples=[f], places=MAP_PLACES)
    start = SeedStart(seed)
    sampling = resolve_sampling(model, start, num_inference_steps, guidance_scale, height, width, batch=1,
                                allow_large=allow_large)
    out = run(model, [prompt], start, sampling=sampling, controller=store, progress=progress)
    return AttentionResult("attention", [prompt], out.images, seed, sampling, out.timings, latents=out.x_start,
                           final_latents=out.latents, notes=notes, attention=store, attention_downsample=f)
