"""Requests: what one ``generate``, ``edit``, ``mask-edit``, ``flow-edit`` or ``invert`` asks for, as frozen dataclasses checked
on construction (a one-line :class:`~promptedit.errors.ParameterError`), each run on a loaded model by the method
functions (:mod:`promptedit.methods.editing`, :mod:`promptedit.methods.maskedit`, :mod:`promptedit.methods.inversion`).

Every front-end (the CLI, the web app, batch) builds these and writes what they return with
:func:`promptedit.outputs.files.write_result_folder`. Inputs are in memory: the front-end reads the image, mask or saved
inversion (no file I/O here). Options are grouped: :class:`SamplingOptions` (steps, guidance, seed, size) is
shared by every request, :class:`InstantOptions` is InstDiffEdit's; a new per-edit input is one field of the
request it belongs to, used in that request's ``run``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .defaults import EDIT_NULLS
from .errors import ParameterError

#: :data:`promptedit.methods.inversion.METHODS` (kept here so that front-ends can list them without torch): DDIM's,
#: the flow's, and null-text and negative-prompt on either
INVERSION_METHODS = ("null-text", "negative-prompt", "direct", "ddim", "euler", "rf-solver", "fireflow", "uni-inv")
MASK_EDIT_METHODS = ("instant", "diffedit", "mask", "kv-edit")
#: :data:`promptedit.methods.velocityedit.METHODS`: the velocity edits of flow models
VELOCITY_EDIT_METHODS = ("flowedit", "uniedit")
ANCHORS = ("source", "edited", "start-token")
MAX_SEED = 2**63 - 1


def _whole(value, name: str, low: int, high: int | None = None) -> None:
    """Refuse ``value`` unless it is a whole number in [low, high] (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ParameterError(f"{name} must be in [{low}, {high}], got {value}" if high is not None
                             else f"{name} must be at least {low}, got {value}")


def _finite(value, name: str, low: float | None = None, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number within the bounds given (open where said)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and (value < low or (low_open and value == low))) or \
            (high is not None and (value > high or (high_open and value == high))):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ParameterError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}")


def _prompt(value, name: str) -> None:
    if not isinstance(value, str):
        raise ParameterError(f"{name} must be a prompt (text), got {type(value).__name__}")


def _image(value, name: str) -> None:
    """An (H, W, 3) uint8 image array."""
    if not (isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3):
        raise ParameterError(f"{name} must be an (H, W, 3) uint8 array, got "
                             f"{getattr(value, 'shape', type(value).__name__)}")


def check_negative_start(negative_prompt: str | None, inversion_method: str | None) -> None:
    """Refuse a negative prompt for an edit of a null-text or negative-prompt inversion (``inversion_method``;
    None: no inversion): their unconditional branch is the inversion's."""
    if negative_prompt is None or inversion_method is None:
        return
    from .methods.inversion import NEEDS_CLASSIFIER_FREE  # torch: only for an edit of an inversion

    if inversion_method in NEEDS_CLASSIFIER_FREE:
        raise ParameterError(f"a negative prompt does not apply to an edit of a {inversion_method} inversion: its "
                             "unconditional branch is the inversion's (invert with method ddim or direct)")


@dataclass(frozen=True)
class SamplingOptions:
    """Steps, guidance, seed and size of a run (None: the model's, or the start's) and the negative prompt, whose
    conditioning replaces the empty prompt's in the unconditional branch of classifier-free guidance (None: none;
    refused at guidance 1 and by inversions); shared by every request."""

    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    height: int | None = None
    width: int | None = None
    allow_large: bool = False
    negative_prompt: str | None = None

    def __post_init__(self):
        if self.steps is not None:
            _whole(self.steps, "steps", 1, 1000)
        if self.guidance is not None:
            _finite(self.guidance, "guidance", 0)
        if self.seed is not None:
            _whole(self.seed, "seed", 0, MAX_SEED)
        for name in ("height", "width"):
            if getattr(self, name) is not None:
                _whole(getattr(self, name), name, 1)
        if not isinstance(self.allow_large, bool):
            raise ParameterError(f"allow_large must be true or false, got {self.allow_large!r}")
        if self.negative_prompt is not None:
            _prompt(self.negative_prompt, "the negative prompt")
            if self.guidance == 1:
                raise ParameterError("a negative prompt needs a guidance scale other than 1 (at 1 classifier-free "
                                     "guidance has no unconditional branch to replace)")

    @classmethod
    def take(cls, options: dict) -> SamplingOptions:
        """The sampling options among a front-end's ``options`` (by field name: the options
        :func:`promptedit.options.sampling_options` declares), taken out of that dict."""
        return cls(**{name: options.pop(name) for name in cls.__dataclass_fields__ if name in options})

    @property
    def is_default(self) -> bool:
        """Nothing given: every value the model's (or the start's)."""
        return self == SamplingOptions()

    @property
    def is_negative_only(self) -> bool:
        """Nothing given but (perhaps) a negative prompt: what an edit of a real image may have of its own."""
        return self == SamplingOptions(negative_prompt=self.negative_prompt)


@dataclass(frozen=True)
class GenerateRequest:
    """Plain text-to-image generation of ``prompt`` (seed 0 unless given)."""

    prompt: str
    sampling: SamplingOptions = field(default_factory=SamplingOptions)

    def __post_init__(self):
        _prompt(self.prompt, "prompt")

    def run(self, model, *, progress: bool | str = True):
        """:func:`promptedit.methods.editing.generate` on ``model``; returns its GenerationResult."""
        from .methods.editing import generate

        s = self.sampling
        return generate(model, self.prompt, seed=0 if s.seed is None else s.seed, num_inference_steps=s.steps,
                        guidance_scale=s.guidance, height=s.height, width=s.width, allow_large=s.allow_large,
                        negative_prompt=s.negative_prompt, progress=progress)


@dataclass(frozen=True)
class InvertRequest:
    """Invert ``image`` ((H, W, 3) uint8 at the run's size, read and prepared by the front-end) under ``prompt``
    with ``method`` (None: the model's, null-text on DDIM models and euler on flow models); ``image_rule``: how the
    front-end prepared it (recorded with the inversion)."""

    image: np.ndarray
    prompt: str
    method: str | None = None
    inner_steps: int = 10
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    image_rule: str = ""

    def __post_init__(self):
        _image(self.image, "the image to invert")
        _prompt(self.prompt, "the inversion's prompt")
        if self.method is not None and self.method not in INVERSION_METHODS:
            raise ParameterError(f"inversion method must be one of {', '.join(INVERSION_METHODS)}, got {self.method!r}")
        _whole(self.inner_steps, "inner_steps", 1)
        if self.sampling.seed is not None:
            raise ParameterError("a seed is not used by an inversion (it uses no noise)")
        if self.sampling.negative_prompt is not None:
            raise ParameterError("an inversion takes no negative prompt (DDIM inversion runs at guidance 1, with no "
                                 "unconditional branch); give it to the edit of a ddim or direct inversion")

    def run(self, model, *, progress: bool | str = True):
        """:func:`promptedit.methods.inversion.invert` on ``model``; returns the Inversion."""
        from .methods.inversion import invert

        s = self.sampling
        return invert(model, self.image, self.prompt, method=self.method, num_inference_steps=s.steps,
                      guidance_scale=s.guidance, num_inner_steps=self.inner_steps, allow_large=s.allow_large,
                      progress=progress, image_rule=self.image_rule)


@dataclass(frozen=True)
class EditRequest:
    """A Prompt-to-Prompt edit (:class:`~promptedit.control.edit_spec.EditSpec`: prompts, windows, blend, re-weights) of a
    generated image (from ``sampling``'s seed, 0 unless given), of a real image (``invert``: inverted first) or
    of a saved ``inversion``. An edit of a real image runs at the inversion's steps, guidance and size: its
    ``sampling`` is the InvertRequest's (or the saved inversion's), and its own must be left unset but for a
    negative prompt (every branch's unconditional branch; refused for a null-text or negative-prompt inversion,
    whose unconditional branch is the inversion's).

    ``edit_null`` (edits of an inversion: which branches take its null conditioning, ``all`` or ``source``;
    None: the model's) and ``save_attention`` (record the cross-attention maps) are the edit's own options.
    """

    spec: object
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    invert: InvertRequest | None = None
    inversion: object | None = None
    edit_null: str | None = None
    save_attention: bool = False

    def __post_init__(self):
        from .methods.inversion import Inversion
        from .control.edit_spec import EditSpec

        if not isinstance(self.spec, EditSpec):
            raise ParameterError(f"an edit request takes an EditSpec, got {type(self.spec).__name__}")
        if self.invert is not None and self.inversion is not None:
            raise ParameterError("give an image to invert or a saved inversion, not both")
        if self.invert is not None and not isinstance(self.invert, InvertRequest):
            raise ParameterError(f"invert must be an InvertRequest, got {type(self.invert).__name__}")
        if self.inversion is not None and not isinstance(self.inversion, Inversion):
            raise ParameterError(f"inversion must be an Inversion, got {type(self.inversion).__name__}")
        if self.real and not self.sampling.is_negative_only:
            raise ParameterError("an edit of a real image runs at its inversion's steps, guidance and size: give "
                                 "them to the inversion")
        check_negative_start(self.sampling.negative_prompt,
                             self.invert.method if self.invert is not None else getattr(self.inversion, "method", None))
        if self.edit_null is not None:
            if not self.real:
                raise ParameterError("edit_null applies to edits of a real image (an inversion) only")
            if self.edit_null not in EDIT_NULLS:
                raise ParameterError(f"edit_null must be one of {', '.join(EDIT_NULLS)}, got {self.edit_null!r}")
        if not isinstance(self.save_attention, bool):
            raise ParameterError(f"save_attention must be true or false, got {self.save_attention!r}")

    @property
    def real(self) -> bool:
        """An edit of a real image (inverted here, or a saved inversion)."""
        return self.invert is not None or self.inversion is not None

    def run(self, model, *, progress: bool | str = True):
        """Invert (when asked), then :func:`promptedit.methods.editing.edit` on ``model``; returns its EditResult
        (its ``inversion`` the one edited)."""
        from .methods.editing import edit

        start = self.invert.run(model, progress=progress) if self.invert is not None else self.inversion
        s = self.invert.sampling if self.invert is not None else self.sampling
        if self.real:
            return edit(model, self.spec, start=start, store_attention=self.save_attention, edit_null=self.edit_null,
                        allow_large=s.allow_large, negative_prompt=self.sampling.negative_prompt, progress=progress)
        return edit(model, self.spec, seed=0 if s.seed is None else s.seed, num_inference_steps=s.steps,
                    guidance_scale=s.guidance, height=s.height, width=s.width, store_attention=self.save_attention,
                    allow_large=s.allow_large, negative_prompt=s.negative_prompt, progress=progress)


@dataclass(frozen=True)
class InstantOptions:
    """InstDiffEdit's instant-mask options (None: the model's defaults, else the authors')."""

    anchor: str = "source"
    threshold: float | None = None
    smooth_times: int | None = None
    guided_filter_radius: float | None = None
    region_peak: float | None = None
    object_threshold: float = 0.9
    background_threshold: float = 0.6
    num_seeds: int = 1

    def __post_init__(self):
        if self.anchor not in ANCHORS:
            raise ParameterError(f"anchor must be one of {', '.join(ANCHORS)}, got {self.anchor!r}")
        if self.threshold is not None:
            _finite(self.threshold, "threshold", 0, 1, high_open=True)
        if self.smooth_times is not None:
            _whole(self.smooth_times, "smooth", 0)
        if self.guided_filter_radius is not None:
            _finite(self.guided_filter_radius, "guided-filter radius", 0, 64)
        if self.region_peak is not None:
            _finite(self.region_peak, "region peak", 0, 1)
        _finite(self.object_threshold, "object threshold", -1, 1)
        _finite(self.background_threshold, "background threshold", -1, 1)
        _whole(self.num_seeds, "seeds", 1)

    def kwargs(self) -> dict:
        """As :func:`promptedit.methods.maskedit.instdiffedit`'s keyword arguments."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class KVEditOptions:
    """KV-Edit's options (:func:`promptedit.methods.kvedit.kv_edit`; None: the paper's, scaled to the run)."""

    skip_step: int | None = None
    inversion_guidance: float | None = None
    re_init: bool = False
    attn_mask: bool = False

    def __post_init__(self):
        if self.skip_step is not None:
            _whole(self.skip_step, "skip step", 0)
        if self.inversion_guidance is not None:
            _finite(self.inversion_guidance, "inversion guidance", 0)
        for name in ("re_init", "attn_mask"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def kwargs(self) -> dict:
        """As :func:`promptedit.methods.kvedit.kv_edit`'s keyword arguments."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class MaskEditRequest:
    """A mask-guided edit of ``image`` ((H, W, 3) uint8, prepared by the front-end; None: generated from
    ``source`` with ``sampling``'s seed, 0 unless given) towards ``target``: the source noised to ``strength`` and
    denoised inside a mask made by ``method`` (``instant``: InstDiffEdit, ``diffedit``) or given (``mask``, an
    (H, W) bool array: ``method`` ``mask``). ``kv-edit`` (KV-Edit, FLUX.1) edits inside the given ``mask``, or
    an instant one (made at ``strength`` with the ``instant`` options) when none is given, with the ``kv``
    options."""

    source: str
    target: str
    image: np.ndarray | None = None
    method: str = "instant"
    mask: np.ndarray | None = None
    strength: float = 0.5
    instant: InstantOptions = field(default_factory=InstantOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    kv: KVEditOptions = field(default_factory=KVEditOptions)

    def __post_init__(self):
        _prompt(self.source, "source")
        _prompt(self.target, "target")
        if self.image is not None:
            _image(self.image, "the image to edit")
        if self.method not in MASK_EDIT_METHODS:
            raise ParameterError(f"mask-edit method must be one of {', '.join(MASK_EDIT_METHODS)}, got {self.method!r}")
        if self.mask is not None and self.method not in ("mask", "kv-edit") or self.mask is None and self.method == "mask":
            raise ParameterError("a user mask is method 'mask' (or 'kv-edit'), and method 'mask' needs a mask")
        if self.mask is not None and not (isinstance(self.mask, np.ndarray) and self.mask.ndim == 2):
            raise ParameterError(f"the mask must be an (H, W) array, got {getattr(self.mask, 'shape', self.mask)!r}")
        _finite(self.strength, "strength", 0, 1, low_open=True)
        if not self.instant_mask and self.instant != InstantOptions():
            raise ParameterError(f"the instant-mask options are not used with method {self.method}"
                                 + (" and a mask" if self.mask is not None else "") + " (only with an instant mask)")
        if not isinstance(self.kv, KVEditOptions):
            raise ParameterError(f"kv must be KVEditOptions, got {type(self.kv).__name__}")
        if self.method != "kv-edit" and self.kv != KVEditOptions():
            raise ParameterError(f"the KV-Edit options are not used with method {self.method} (only with kv-edit)")
        if self.method == "kv-edit" and self.mask is not None and self.strength != MaskEditRequest.strength:
            raise ParameterError("strength is not used by kv-edit with a mask (it is the noise level an instant mask "
                                 "is made at; KV-Edit starts from its inversion: see its skip step)")

    @property
    def instant_mask(self) -> bool:
        """Whether the run makes an instant mask (InstDiffEdit's, or KV-Edit's without a given mask)."""
        return self.method == "instant" or self.method == "kv-edit" and self.mask is None

    def run(self, model, *, inpaint_pipeline=None, progress: bool | str = True):
        """Generate the source (without an image), then the method of :mod:`promptedit.methods.maskedit` on ``model``;
        returns its MaskEditResult (``images``: the source and the edit). ``inpaint_pipeline``: instant's final pass
        by a diffusers inpainting pipeline."""
        from .methods.maskedit import diffedit, instdiffedit, masked_edit

        s = self.sampling
        seed = 0 if s.seed is None else s.seed
        image = self.image
        if self.method == "kv-edit":
            from .methods.kvedit import check_kv_edit

            check_kv_edit(model)  # before the source is generated
        if image is None:
            image = GenerateRequest(self.source, s).run(model, progress=progress).images[0]
        common = dict(strength=self.strength, num_inference_steps=s.steps, guidance_scale=s.guidance, seed=seed,
                      allow_large=s.allow_large, negative_prompt=s.negative_prompt, progress=progress)
        if self.method == "mask":
            return masked_edit(model, image, self.mask, self.target, **common)
        if self.method == "instant":
            return instdiffedit(model, image, self.source, self.target, inpaint_pipeline=inpaint_pipeline,
                                **self.instant.kwargs(), **common)
        if self.method == "kv-edit":
            from .methods.kvedit import kv_edit_with_mask

            return kv_edit_with_mask(model, image, self.mask, self.source, self.target,
                                     instant=self.instant.kwargs(), **self.kv.kwargs(), **common)
        return diffedit(model, image, self.source, self.target, **common)


@dataclass(frozen=True)
class FlowOptions:
    """The velocity edits' own options (None: the method's defaults, the papers'): FlowEdit's ``n_max``,
    ``n_min``, ``n_avg`` and ``source_guidance``; UniEdit-Flow's ``alpha``, ``omega`` and ``mask_patch``."""

    n_max: int | None = None
    n_min: int | None = None
    n_avg: int | None = None
    source_guidance: float | None = None
    alpha: float | None = None
    omega: float | None = None
    mask_patch: int | None = None

    FLOWEDIT = ("n_max", "n_min", "n_avg", "source_guidance")
    UNIEDIT = ("alpha", "omega", "mask_patch")

    def __post_init__(self):
        for name in ("n_max", "n_avg", "mask_patch"):
            if getattr(self, name) is not None:
                _whole(getattr(self, name), name.replace("_", "-"), 1)
        if self.n_min is not None:
            _whole(self.n_min, "n-min", 0)
        if self.source_guidance is not None:
            _finite(self.source_guidance, "source guidance", 0)
        if self.alpha is not None:
            _finite(self.alpha, "alpha", 0, 1, low_open=True)
        if self.omega is not None:
            _finite(self.omega, "omega")

    def given(self) -> dict:
        """The options set (not None), by name."""
        return {name: getattr(self, name) for name in self.FLOWEDIT + self.UNIEDIT if getattr(self, name) is not None}


@dataclass(frozen=True)
class FlowEditRequest:
    """A velocity edit of a flow model (FLUX.1, SD3) of ``image`` ((H, W, 3) uint8 at the run's size, prepared by
    the front-end) from ``source`` (its caption) to ``target``: ``flowedit`` (FlowEdit, inversion-free) or
    ``uniedit`` (UniEdit-Flow). ``sampling``: steps and guidance (FlowEdit's target guidance; UniEdit-Flow's
    guidance), and FlowEdit's noise seed (0 unless given); ``options``: the method's own (:class:`FlowOptions`;
    the other method's are refused)."""

    image: np.ndarray
    source: str
    target: str
    method: str = "flowedit"
    options: FlowOptions = field(default_factory=FlowOptions)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)

    def __post_init__(self):
        _image(self.image, "the image to edit")
        _prompt(self.source, "source")
        _prompt(self.target, "target")
        if self.method not in VELOCITY_EDIT_METHODS:
            raise ParameterError(f"flow-edit method must be one of {', '.join(VELOCITY_EDIT_METHODS)}, got "
                                 f"{self.method!r}")
        if not isinstance(self.options, FlowOptions):
            raise ParameterError(f"options must be FlowOptions, got {type(self.options).__name__}")
        other = FlowOptions.UNIEDIT if self.method == "flowedit" else FlowOptions.FLOWEDIT
        unused = [name for name in other if getattr(self.options, name) is not None]
        if unused:
            raise ParameterError(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used by "
                                 f"{self.method}")
        if self.sampling.negative_prompt is not None:
            raise ParameterError(f"{self.method} takes no negative prompt")
        if self.method == "uniedit" and self.sampling.seed is not None:
            raise ParameterError("a seed is not used by uniedit (it draws no noise)")

    def run(self, model, *, progress: bool | str = True):
        """:func:`promptedit.methods.velocityedit.flowedit` or ``uniedit`` on ``model``; returns its
        VelocityEditResult (images: the input, the edit)."""
        from .methods.velocityedit import flowedit, uniedit

        s = self.sampling
        kw = self.options.given()
        if s.steps is not None:
            kw["num_inference_steps"] = s.steps
        if self.method == "flowedit":
            if s.guidance is not None:
                kw["target_guidance"] = s.guidance
            return flowedit(model, self.image, self.source, self.target, seed=0 if s.seed is None else s.seed,
                            allow_large=s.allow_large, progress=progress, **kw)
        if s.guidance is not None:
            kw["guidance_scale"] = s.guidance
        return uniedit(model, self.image, self.source, self.target, allow_large=s.allow_large, progress=progress, **kw)
