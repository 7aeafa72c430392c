"""What to edit: :class:`EditSpec`, and the Prompt-to-Prompt controller it asks for.

Pure: prompts, token positions (:mod:`promptedit.text.tokens`), token mappers (:mod:`promptedit.text.alignment`) and
controllers (:mod:`promptedit.control`); no diffusers. :func:`build_controller` turns a spec into an attention
controller for a model's text keys and a number of steps (Hertz et al. 2023, Sec. 3.2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from . import (
    AttentionEdit,
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    LocalBlend,
    cross_replace_alpha,
    step_window,
)
from ..defaults import P2PDefaults
from ..errors import ParameterError, PromptError, WordNotInPromptError, check_real
from ..text.alignment import get_refinement_mapper, get_replacement_mapper
from ..text.tokens import PromptTokens, TextKeys, prompt_words, swapped_words

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


#: the largest re-weighting scale |c|: the paper's range is −2 … 5; far beyond it attention overflows float32
MAX_REWEIGHT = 1e4


def _word_mapping(name: str, value) -> dict:
    """A {word: value} mapping of text words (None: none)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParameterError(f"{name} must be a mapping of words to values, got {type(value).__name__}")
    for w in value:
        if not isinstance(w, str) or not w.strip():
            raise PromptError(f"{name} has a key that is not a word: {w!r}")
    return dict(value)


def _words(name: str, value) -> tuple[str, ...]:
    """A tuple of text words from a word or a list of them (None: none)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"{name} must be a word or a list of words, got {type(value).__name__}")
    for w in value:
        if not isinstance(w, str) or not w.strip():
            raise PromptError(f"{name} holds something that is not a word: {w!r}")
    return tuple(value)


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
        blend_source, blend_target: local-blend words looked up in the source prompt only, and in the targets
            only (PnPInversion's scripts blend PIE-Bench's ``blended_word`` so: its first word in the source, its
            second in the target).
        blend_subtract: words whose region is taken out of the blend mask.
        blend_threshold: local-blend threshold in [0, 1).
        blend_start: fraction of steps before blending starts.
        inject_features: Plug-and-Play feature-injection window, or None for none.
        self_replace_downsample: self-attention is injected at layers at least this many times smaller than the
            latent (None: the model's ``p2p.self_replace_min_downsample``; P2P code 4, its null-text notebook and
            PnPInversion 2).
        inject_values: value-injection window (RF-Solver-Edit, FireFlow, Stable Flow;
            :class:`~promptedit.control.ValueInjection`): the targets take the source's values in ``value_blocks``
            over these steps; None: none. Transformers only (a UNet refuses it).
        value_blocks: the transformer block depths of value injection (FLUX.1: double-stream 0 … D−1, then
            single-stream D …); None: the model's default (FLUX.1: RF-Solver-Edit's single-stream blocks 20–37,
            depths 39–56 on FLUX.1-dev).
        inject_keys: inject the source's keys too (Stable Flow's K and V).
        value_tokens: whose values are injected: ``all`` tokens of the joint sequence (RF-Solver-Edit's and
            FireFlow's code; None means this) or the ``image`` tokens only (Stable Flow's).
        blend_swapped: for word swaps of an inversion given no ``blend_words``: blend locally on the swapped
            words (None: the model's ``inversion.blend_swapped``).
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
    blend_source: tuple[str, ...] = ()
    blend_target: tuple[str, ...] = ()
    self_replace_downsample: int | None = None
    inject_values: Window | None = None
    value_blocks: tuple[int, ...] | None = None
    inject_keys: bool = False
    value_tokens: str | None = None

    def __post_init__(self):
        _check_prompt("source", self.source)
        if not isinstance(self.targets, (str, list, tuple)):
            raise PromptError(f"targets must be a prompt or a list of prompts, got {type(self.targets).__name__}")
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets:
            raise PromptError("at least one target prompt is needed")
        for i, t in enumerate(targets):
            _check_prompt(f"target {i + 1}", t)
        object.__setattr__(self, "targets", targets)
        if self.mode not in MODES:
            raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("cross_replace", "self_replace", "inject_features", "inject_values"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _check_window(name.replace("_", "-"), getattr(self, name)))
        object.__setattr__(
            self, "cross_replace_words",
            {w: _check_window(f"cross-replace for {w!r}", v)
             for w, v in _word_mapping("cross_replace_words", self.cross_replace_words).items()},
        )
        weights = {}
        for w, c in _word_mapping("reweight", self.reweight).items():
            if isinstance(c, bool):
                raise ParameterError(f"reweight for {w!r} must be a number, got {c!r}")
            try:
                c = float(c)
            except (TypeError, ValueError):
                raise ParameterError(f"reweight for {w!r} must be a number, got {c!r}") from None
            if not math.isfinite(c) or abs(c) > MAX_REWEIGHT:
                raise ParameterError(f"reweight for {w!r} must be a number within ±{MAX_REWEIGHT:g} (attention "
                                     f"scaled by more overflows), got {c}")
            weights[w] = c
        object.__setattr__(self, "reweight", weights)
        object.__setattr__(self, "blend_words", _words("blend_words", self.blend_words))
        object.__setattr__(self, "blend_subtract", _words("blend_subtract", self.blend_subtract))
        object.__setattr__(self, "blend_source", _words("blend_source", self.blend_source))
        object.__setattr__(self, "blend_target", _words("blend_target", self.blend_target))
        if self.blend_subtract and not self.blends:
            raise ParameterError("blend-subtract words need blend words")
        d = self.self_replace_downsample
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1 or d & (d - 1)):
            raise ParameterError(f"self-replace downsample must be a power of two (1, 2, 4, …), got {d!r}")
        if self.blend_threshold is not None:
            check_real("blend threshold", self.blend_threshold, 0.0, 1.0, high_open=True)
        if self.blend_start is not None:
            check_real("blend start", self.blend_start, 0.0, 1.0)
        if self.blend_swapped is not None and not isinstance(self.blend_swapped, bool):
            raise ParameterError(f"blend_swapped must be True, False or None, got {self.blend_swapped!r}")
        self._check_value_injection()
        if self.mode == "reweight" and not self.reweight:
            raise ParameterError("mode reweight needs at least one word to re-weight (--reweight WORD=C)")

    def _check_value_injection(self) -> None:
        from .values import VALUE_TOKENS

        blocks = self.value_blocks
        if blocks is not None:
            if isinstance(blocks, (str, int)) or not isinstance(blocks, (list, tuple, range)):
                raise ParameterError(f"value blocks must be a list of block depths, got {blocks!r}")
            if not blocks:
                raise ParameterError("value blocks must name at least one block depth")
            for b in blocks:
                if isinstance(b, bool) or not isinstance(b, int) or b < 0:
                    raise ParameterError(f"a value block must be a block depth (a whole number >= 0), got {b!r}")
            object.__setattr__(self, "value_blocks", tuple(sorted(set(blocks))))
        if not isinstance(self.inject_keys, bool):
            raise ParameterError(f"inject_keys must be True or False, got {self.inject_keys!r}")
        if self.value_tokens is not None and self.value_tokens not in VALUE_TOKENS:
            raise ParameterError(f"value tokens must be one of {', '.join(VALUE_TOKENS)}, got {self.value_tokens!r}")
        if self.inject_values is None:
            given = [flag for flag, on in (("value-blocks", blocks is not None), ("inject-keys", self.inject_keys),
                                           ("value-tokens", self.value_tokens is not None)) if on]
            if given:
                raise ParameterError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} inject-values "
                                     "(the steps of value injection)")

    @classmethod
    def from_prompt(cls, text: str, syntax: str = "auto", *, num_inference_steps: int | None = None,
                    **fields) -> "EditSpec":
        """The edit one prompt says in AUTOMATIC1111's or compel's syntax (``a [red:blue:0.6] circle``, ``a
        red.swap(blue) circle``; see :mod:`promptedit.text.syntax`); ``fields`` add to or override what it says."""
        from ..text.syntax import parse_edit_prompt

        parsed = parse_edit_prompt(text, syntax, num_inference_steps=num_inference_steps)
        return cls(**{**parsed.spec_kwargs(), **fields})

    @property
    def blends(self) -> bool:
        """Whether the edit blends locally (on words of every prompt, of the source or of the targets)."""
        return bool(self.blend_words or self.blend_source or self.blend_target)

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


class _Positions:
    """Key positions of words in prompts (:class:`~promptedit.text.tokens.TextKeys`), each prompt tokenized once."""

    def __init__(self, keys: TextKeys):
        self.keys = keys
        self._tokens: dict[str, tuple[PromptTokens, ...]] = {}

    def __call__(self, prompt: str, word: str) -> list[int] | None:
        """The positions of ``word`` in ``prompt``, or None when it is not there (or lies past the limit)."""
        if prompt not in self._tokens:
            self._tokens[prompt] = self.keys.tokenize(prompt)
        try:
            return self.keys.word_positions(prompt, word, tokens=self._tokens[prompt])
        except PromptError:  # not there, or past the text encoder's limit
            return None

    def missing(self, word: str, prompts: Sequence[str], role: str) -> PromptError:
        """The error for ``word`` found in none of ``prompts``: past the text encoder's limit where it is in a
        prompt's text, else not in the prompts."""
        for p in prompts:
            try:
                self.keys.word_positions(p, word, tokens=self._tokens.get(p))
            except WordNotInPromptError:
                continue
            except PromptError as e:
                return PromptError(f"{role} {e}")
        return WordNotInPromptError(word, prompts[0] if len(prompts) == 1 else list(prompts), role)


def _word_alphas(positions: _Positions, prompts: Sequence[str], words: Sequence[str], max_len: int,
                 what: str, rows: Sequence[int] | None = None) -> torch.Tensor:
    """(n_prompts, keys): 1 at the tokens of each word in each prompt that contains it (of ``rows`` only: the
    prompts' indices the words are looked up in; default all)."""
    alphas = torch.zeros(len(prompts), max_len)
    for word in words:
        found = False
        for i, p in enumerate(prompts):
            if rows is not None and i not in rows:
                continue
            idx = positions(p, word)
            if idx is not None:
                alphas[i, idx] = 1.0
                found = True
        if not found:
            raise positions.missing(word, [prompts[i] for i in (rows or range(len(prompts)))], what)
    return alphas


def build_controller(
    spec: EditSpec, keys, num_steps: int, defaults: P2PDefaults = P2PDefaults()
) -> tuple[AttentionEdit, str, list[str]]:
    """The Prompt-to-Prompt controller for ``spec`` over the text keys ``keys`` (the model's
    :class:`~promptedit.text.tokens.TextKeys`, or a tokenizer whose positions they are): (controller, mode used,
    notes). ``defaults`` fill what the spec leaves unset (windows, local blend's threshold, resolution and start)."""
    mode, note = resolve_mode(spec)
    notes = [note] if note else []
    keys = TextKeys.of(keys)
    max_len = keys.length
    targets = list(spec.targets)
    positions = _Positions(keys)

    token_windows = []
    for word in spec.cross_replace_words:
        if all(positions(t, word) is None for t in targets):
            raise positions.missing(word, targets, "cross-replace")
    for t in targets:
        windows = {}
        for word, window in spec.cross_replace_words.items():
            for tok in positions(t, word) or ():
                windows[tok] = window
        token_windows.append(windows)
    cross = spec.cross_replace if spec.cross_replace is not None else defaults.cross_replace
    alpha = cross_replace_alpha(num_steps, len(targets), max_len, cross, token_windows)
    self_window = spec.self_replace if spec.self_replace is not None else defaults.self_replace

    blend = None
    if spec.blends:
        prompts = spec.prompts
        threshold = spec.blend_threshold if spec.blend_threshold is not None else defaults.blend_threshold
        words = torch.maximum(  # (n_prompts, keys): every prompt's words, the source's, the targets'
            _word_alphas(positions, prompts, spec.blend_words, max_len, "blend"),
            _word_alphas(positions, prompts, spec.blend_source, max_len, "blend-source", rows=[0])
            + _word_alphas(positions, prompts, spec.blend_target, max_len, "blend-target",
                           rows=range(1, len(prompts))))
        blend = LocalBlend(
            words,
            subtract_alphas=_word_alphas(positions, prompts, spec.blend_subtract, max_len, "blend-subtract")
            if spec.blend_subtract else None,
            threshold=threshold, subtract_threshold=threshold,
            start_step=int((spec.blend_start if spec.blend_start is not None else defaults.blend_start) * num_steps),
            downsample=defaults.blend_downsample,
            pool_size=defaults.blend_pool_size,
            propagation=int(defaults.blend_propagation),
        )
    common = dict(
        self_replace_steps=step_window(self_window, num_steps),
        self_replace_min_downsample=(defaults.self_replace_min_downsample if spec.self_replace_downsample is None
                                     else spec.self_replace_downsample),
        local_blend=blend,
    )

    base: AttentionEdit | None = None
    if mode == "replace":
        base = AttentionReplace(get_replacement_mapper(keys, spec.source, targets), alpha, **common)
    elif mode == "refine":
        mapper, alphas = get_refinement_mapper(keys, spec.source, targets)
        base = AttentionRefine(mapper, alphas, alpha, **common)
    if spec.reweight:
        equalizer = torch.ones(len(targets), max_len)
        for word, c in spec.reweight.items():
            for k, t in enumerate(targets):
                idx = positions(t, word)
                if idx is None:
                    raise positions.missing(word, [t], "reweight")
                equalizer[k, idx] = c
        return AttentionReweight(equalizer, alpha, prev=base, **common), mode, notes
    assert base is not None
    return base, mode, notes
