"""Editing generated images with Prompt-to-Prompt (Algorithm 1 of Hertz et al. 2023), as an API.

An :class:`EditSpec` says what to edit; :func:`build_controller` turns it into an
attention controller for a tokenizer and a number of steps (no diffusers
needed); :func:`edit` runs the source and every target from the same x_T in one
batch; :func:`generate` and :func:`attention` do plain generation and
attention-map capture.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .control import (
    AttentionControl,
    AttentionEdit,
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    AttentionStore,
    Compose,
    LocalBlend,
    cross_replace_alpha,
    step_window,
)
from .errors import ParameterError, PromptError, WordNotInPromptError
from .hooks import FeatureInjection
from .models import DiffusionModel, ModelDefaults
from .pipeline import (
    StepCallback,
    check_sampling,
    check_size,
    decode_latents,
    denoise,
    encode_prompts,
    initial_latents,
    make_generator,
    to_uint8,
)
from .seq_aligner import get_refinement_mapper, get_replacement_mapper
from .tokens import prompt_words, swapped_words, word_token_indices

MODES = ("replace", "refine", "reweight", "auto")
Window = float | tuple[float, float]


def _check_window(name: str, window) -> Window:
    try:
        step_window(window, 1)
    except ParameterError as e:
        raise ParameterError(f"{name}: {e}") from None
    return window if isinstance(window, (int, float)) else (float(window[0]), float(window[1]))


def _check_prompt(name: str, prompt) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError(f"{name} must be a non-empty prompt, got {prompt!r}")
    return prompt


@dataclass(frozen=True)
class EditSpec:
    """What to edit, validated on construction. ``None`` fields take the model's defaults.

    Attributes:
        source: the source prompt.
        targets: one or more edited prompts (for ``reweight`` they may repeat the source).
        mode: ``replace`` (word swap), ``refine`` (added or removed words), ``reweight``
            (same prompt, re-weighted words) or ``auto`` (chosen from the prompts).
        cross_replace: cross-attention injection window: fraction f (first f of the steps) or (start, end).
        cross_replace_words: per-word windows overriding ``cross_replace`` for those words of the targets.
        self_replace: self-attention injection window.
        reweight: word → scale c of its attention (negative allowed), applied in the targets.
        blend_words: words whose attention defines the local-blend region (looked up in every prompt).
        blend_subtract: words whose region is taken out of the blend mask.
        blend_threshold: local-blend threshold in [0, 1).
        blend_start: fraction of steps before blending starts.
        inject_features: Plug-and-Play feature-injection window, or None for none.
        blend_swapped: for word swaps of an inversion given no ``blend_words``: blend locally on the swapped
            words (None: the model's ``inversion_blend_swapped``).
    """

    source: str
    targets: tuple[str, ...]
    mode: str = "auto"
    cross_replace: Window | None = None
    cross_replace_words: Mapping[str, Window] = field(default_factory=dict)
    self_replace: Window | None = None
    reweight: Mapping[str, float] = field(default_factory=dict)
    blend_words: tuple[str, ...] = ()
    blend_subtract: tuple[str, ...] = ()
    blend_threshold: float | None = None
    blend_start: float | None = None
    inject_features: Window | None = None
    blend_swapped: bool | None = None

    def __post_init__(self):
        _check_prompt("source", self.source)
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets:
            raise PromptError("at least one target prompt is needed")
        for i, t in enumerate(targets):
            _check_prompt(f"target {i + 1}", t)
        object.__setattr__(self, "targets", targets)
        if self.mode not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("cross_replace", "self_replace", "inject_features"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _check_window(name.replace("_", "-"), getattr(self, name)))
        object.__setattr__(
            self, "cross_replace_words",
            {w: _check_window(f"cross-replace for {w!r}", v) for w, v in dict(self.cross_replace_words).items()},
        )
        weights = {}
        for w, c in dict(self.reweight).items():
            try:
                c = float(c)
            except (TypeError, ValueError):
                raise ParameterError(f"reweight for {w!r} must be a number, got {c!r}") from None
            if not math.isfinite(c):
                raise ParameterError(f"reweight for {w!r} must be finite, got {c}")
            weights[w] = c
        object.__setattr__(self, "reweight", weights)
        object.__setattr__(self, "blend_words", tuple(self.blend_words))
        object.__setattr__(self, "blend_subtract", tuple(self.blend_subtract))
        if self.blend_subtract and not self.blend_words:
            raise ParameterError("blend-subtract words need blend words")
        if self.blend_threshold is not None and not (0.0 <= float(self.blend_threshold) < 1.0):
            raise ParameterError(f"blend threshold must be in [0, 1), got {self.blend_threshold}")
        if self.blend_start is not None and not (0.0 <= float(self.blend_start) <= 1.0):
            raise ParameterError(f"blend start must be in [0, 1], got {self.blend_start}")
        if self.mode == "reweight" and not self.reweight:
            raise ParameterError("mode reweight needs at least one word to re-weight (--reweight WORD=C)")

    @property
    def prompts(self) -> list[str]:
        return [self.source, *self.targets]

    def swapped_words(self) -> tuple[str, ...]:
        """The words the targets swap, in the source and in the targets (empty unless every target only swaps
        words of the source)."""
        words: list[str] = []
        src = [w for w, _, _ in prompt_words(self.source)]
        for target in self.targets:
            swapped = swapped_words(self.source, target)
            if swapped is None:
                return ()
            tgt = [w for w, _, _ in prompt_words(target)]
            for i in swapped:
                for w in (src[i], tgt[i]):
                    if w not in words and any(ch.isalnum() for ch in w):
                        words.append(w)
        return tuple(words)


def resolve_mode(spec: EditSpec) -> tuple[str, str]:
    """The edit mode for the prompts, and a note saying why when it was chosen automatically.

    Raises AlignmentError (from the mappers) later if a forced ``replace`` does not fit.
    """
    swaps = [swapped_words(spec.source, t) for t in spec.targets]
    if spec.mode == "reweight":
        if any(s is None or s for s in swaps):
            raise PromptError(
                "mode reweight keeps the prompt: the targets must equal the source "
                "(to change words too, use --mode replace or refine with --reweight)"
            )
        return "reweight", ""
    if spec.mode != "auto":
        return spec.mode, ""
    if all(s is not None and not s for s in swaps):
        return ("reweight", "auto: the prompts are the same, re-weighting") if spec.reweight else (
            "replace", "auto: the prompts are the same")
    if all(s is not None for s in swaps):
        return "replace", "auto: the targets swap words of the source, using replace"
    return "refine", "auto: the targets add or remove words, using refine"


def _word_alphas(tokenizer, prompts: Sequence[str], words: Sequence[str], what: str) -> torch.Tensor:
    """(n_prompts, keys): 1 at the tokens of each word in each prompt that contains it."""
    alphas = torch.zeros(len(prompts), int(tokenizer.model_max_length))
    for word in words:
        found = False
        for i, p in enumerate(prompts):
            try:
                alphas[i, word_token_indices(tokenizer, p, word)] = 1.0
                found = True
            except PromptError:
                continue
        if not found:
            raise WordNotInPromptError(word, list(prompts), what)
    return alphas


def build_controller(
    spec: EditSpec, tokenizer, num_steps: int, defaults: ModelDefaults = ModelDefaults()
) -> tuple[AttentionEdit, str, list[str]]:
    """The Prompt-to-Prompt controller for ``spec``: (controller, mode used, notes)."""
    mode, note = resolve_mode(spec)
    notes = [note] if note else []
    max_len = int(tokenizer.model_max_length)
    targets = list(spec.targets)

    token_windows = []
    for word in spec.cross_replace_words:
        if not any(_has_word(tokenizer, t, word) for t in targets):
            raise WordNotInPromptError(word, targets, "cross-replace")
    for t in targets:
        windows = {}
        for word, window in spec.cross_replace_words.items():
            if _has_word(tokenizer, t, word):
                for tok in word_token_indices(tokenizer, t, word):
                    windows[tok] = window
        token_windows.append(windows)
    cross = spec.cross_replace if spec.cross_replace is not None else defaults.cross_replace
    alpha = cross_replace_alpha(num_steps, len(targets), max_len, cross, token_windows)
    self_window = spec.self_replace if spec.self_replace is not None else defaults.self_replace

    blend = None
    if spec.blend_words:
        prompts = spec.prompts
        blend = LocalBlend(
            _word_alphas(tokenizer, prompts, spec.blend_words, "blend"),
            subtract_alphas=_word_alphas(tokenizer, prompts, spec.blend_subtract, "blend-subtract")
            if spec.blend_subtract else None,
            threshold=spec.blend_threshold if spec.blend_threshold is not None else defaults.blend_threshold,
            subtract_threshold=spec.blend_threshold if spec.blend_threshold is not None else defaults.blend_threshold,
            start_step=int((spec.blend_start if spec.blend_start is not None else defaults.blend_start) * num_steps),
            downsample=defaults.blend_downsample,
            pool_size=defaults.blend_pool_size,
        )
    common = dict(
        self_replace_steps=step_window(self_window, num_steps),
        self_replace_min_downsample=defaults.self_replace_min_downsample,
        local_blend=blend,
    )

    base: AttentionEdit | None = None
    if mode == "replace":
        base = AttentionReplace(get_replacement_mapper(tokenizer, spec.source, targets), alpha, **common)
    elif mode == "refine":
        mapper, alphas = get_refinement_mapper(tokenizer, spec.source, targets)
        base = AttentionRefine(mapper, alphas, alpha, **common)
    if spec.reweight:
        equalizer = torch.ones(len(targets), max_len)
        for word, c in spec.reweight.items():
            for k, t in enumerate(targets):
                if not _has_word(tokenizer, t, word):
                    raise WordNotInPromptError(word, t, "reweight")
                equalizer[k, word_token_indices(tokenizer, t, word)] = c
        return AttentionReweight(equalizer, alpha, prev=base, **common), mode, notes
    assert base is not None
    return base, mode, notes


def _has_word(tokenizer, prompt: str, word: str) -> bool:
    try:
        word_token_indices(tokenizer, prompt, word)
        return True
    except PromptError:
        return False


# ----------------------------------------------------------------------------- running


@dataclass
class GenerationResult:
    """Images from one batch of prompts sharing x_T.

    Attributes:
        prompts: the prompts, in batch order.
        images: (n, H, W, 3) uint8.
        latents: x_T (1, C, h, w) used for every prompt.
        seed, num_inference_steps, guidance_scale, height, width: the settings used.
        timings: seconds per stage (``encode``, ``denoise``, ``decode``, ``total``).
        attention: the attention store when maps were recorded, else None.
        mode, notes: for edits, the mode used and notes on how it was chosen.
        null_branches: for edits of an inversion, ``all`` or ``source`` (see ``inversion.edit_inversion``).
    """

    prompts: list[str]
    images: np.ndarray
    latents: torch.Tensor
    seed: int | None
    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    timings: dict[str, float]
    attention: AttentionStore | None = None
    mode: str | None = None
    notes: list[str] = field(default_factory=list)
    blend_mask: torch.Tensor | None = None
    final_latents: torch.Tensor | None = None  # x_0 (n, C, h, w) before decoding
    attention_downsample: int | None = None  # the resolution ``attention`` recorded, when maps were recorded
    spec: "EditSpec | None" = None  # for edits: the spec as run (e.g. with the blend words it was given)
    null_branches: str | None = None  # edits of an inversion: which branches took its null embeddings


def resolved_defaults(model: DiffusionModel, spec: EditSpec, defaults: ModelDefaults | None = None
                      ) -> tuple[ModelDefaults, list[str]]:
    """The model's defaults with the resolutions an edit reads maps at (local blend) or injects self-attention
    from replaced by ones the UNet has, when it lacks the defaults' (with a note saying so)."""
    defaults = model.defaults if defaults is None else defaults
    notes = []
    if spec.blend_words:
        f, note = model.resolve_downsample(None, defaults.blend_downsample, "local blend")
        defaults = dataclasses.replace(defaults, blend_downsample=f)
        notes += [note] if note else []
    have = model.attention_downsamples(is_cross=False)
    if have and defaults.self_replace_min_downsample > max(have):
        notes.append(f"self-attention injection: this model has no self-attention at 1/"
                     f"{defaults.self_replace_min_downsample} of the latent size or smaller; injecting at 1/{max(have)}")
        defaults = dataclasses.replace(defaults, self_replace_min_downsample=max(have))
    return defaults, notes


def figure_downsample(model: DiffusionModel, requested: int | None = None) -> tuple[int, str]:
    """The resolution of attention-map figures: ``requested``, or the model's default, or the nearest it has."""
    return model.resolve_downsample(requested, model.defaults.attention_downsample, "attention maps")


def _settings(model: DiffusionModel, num_inference_steps, guidance_scale, height, width):
    steps = model.defaults.num_inference_steps if num_inference_steps is None else num_inference_steps
    w = model.defaults.guidance_scale if guidance_scale is None else guidance_scale
    check_sampling(steps, w)
    height = model.image_size if height is None else height
    width = model.image_size if width is None else width
    check_size(model, height, width)
    return steps, float(w), height, width


def run_prompts(
    model: DiffusionModel,
    prompts: Sequence[str],
    *,
    seed: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    height: int | None = None,
    width: int | None = None,
    latents: torch.Tensor | None = None,
    controller: AttentionControl | None = None,
    features: FeatureInjection | None = None,
    callback: StepCallback | None = None,
    progress: bool = True,
) -> GenerationResult:
    """Denoise ``prompts`` in one batch from one x_T (Algorithm 1) and decode them."""
    steps, w, height, width = _settings(model, num_inference_steps, guidance_scale, height, width)
    t0 = time.perf_counter()
    cond = encode_prompts(model, prompts)
    t1 = time.perf_counter()
    x_T = initial_latents(model, height, width, make_generator(seed)) if latents is None else latents.to(model.device, model.dtype)
    x_0 = denoise(model, cond, x_T, num_inference_steps=steps, guidance_scale=w, controller=controller,
                  features=features, callback=callback, progress=progress)
    t2 = time.perf_counter()
    images = to_uint8(decode_latents(model, x_0))
    t3 = time.perf_counter()
    return GenerationResult(
        prompts=list(prompts), images=images, latents=x_T, seed=seed, num_inference_steps=steps,
        guidance_scale=w, height=height, width=width,
        timings={"encode": t1 - t0, "denoise": t2 - t1, "decode": t3 - t2, "total": t3 - t0},
        final_latents=x_0,
    )


def generate(model: DiffusionModel, prompt: str | Sequence[str], **kwargs) -> GenerationResult:
    """Plain text-to-image generation (no attention control). See :func:`run_prompts` for arguments."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    for i, p in enumerate(prompts):
        _check_prompt(f"prompt {i + 1}", p)
    return run_prompts(model, prompts, **kwargs)


def edit(
    model: DiffusionModel,
    spec: EditSpec,
    *,
    store_attention: bool = False,
    **kwargs,
) -> GenerationResult:
    """Prompt-to-Prompt edit of a generated image: source and targets from the same x_T, in one batch.

    ``store_attention`` also records the (edited) cross-attention maps at the
    model's figure resolution. Other arguments as :func:`run_prompts`.
    """
    steps, *_ = _settings(model, kwargs.get("num_inference_steps"), kwargs.get("guidance_scale"),
                          kwargs.get("height"), kwargs.get("width"))
    defaults, notes = resolved_defaults(model, spec)
    controller, mode, mode_notes = build_controller(spec, model.tokenizer, steps, defaults)
    notes = mode_notes + notes
    store = None
    if store_attention:
        f, note = figure_downsample(model)
        notes += [note] if note else []
        store = AttentionStore(downsamples=[f], places=("down", "up"))
    features = FeatureInjection(spec.inject_features) if spec.inject_features is not None else None
    result = run_prompts(model, spec.prompts, controller=Compose([controller, store]) if store else controller,
                         features=features, **kwargs)
    result.attention, result.mode, result.notes, result.spec = store, mode, notes, spec
    result.attention_downsample = None if store is None else next(iter(store.downsamples))
    if controller.local_blend is not None:
        result.blend_mask = controller.local_blend.last_mask
    return result


def attention(
    model: DiffusionModel,
    prompt: str,
    *,
    downsample: int | None = None,
    self_attention: bool = True,
    **kwargs,
) -> GenerationResult:
    """Generate ``prompt`` while recording its cross- (and self-) attention maps at 1/``downsample`` of the latent."""
    _check_prompt("prompt", prompt)
    f, note = figure_downsample(model, downsample)
    store = AttentionStore(self_attention=self_attention, downsamples=[f], places=("down", "up"))
    result = run_prompts(model, [prompt], controller=store, **kwargs)
    result.attention = store
    result.attention_downsample = f
    result.notes = [note] if note else []
    return result
