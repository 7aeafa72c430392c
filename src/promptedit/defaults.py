"""A model's recommended settings, by concern: sampling, Prompt-to-Prompt, inversion, masks.

The papers' values unless the model folder's ``promptedit.json`` gives better ones for that model::

    {"sampling": {"num_inference_steps": 20, "guidance_scale": 5.0},
     "p2p": {"blend_downsample": 1},
     "inversion": {"edit_null": "source"},
     "masks": {"threshold": 0.2}}

Every group and key is optional; an unknown one, or a value of the wrong type or out of range, is a
:class:`~promptedit.errors.ModelLoadError` naming it (and the file, when read from one).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelLoadError

#: the file of a model folder that holds its defaults
DEFAULTS_FILE = "promptedit.json"
EDIT_NULLS = ("all", "source")  # which branches of an edit of an inversion take its null conditioning


def _unit(v) -> bool:
    return 0.0 <= v <= 1.0


def _validate(group: str, obj, rules: dict) -> None:
    """Check each field of ``obj`` against ``rules``: name -> (type, predicate, rule in words)."""
    for name, (kind, ok, rule) in rules.items():
        value = getattr(obj, name)
        if value is None and kind is not str and name in getattr(obj, "_optional", ()):
            continue
        if kind is str:
            good = isinstance(value, str) and ok(value)
        elif kind is bool:
            good = isinstance(value, bool)
        else:
            good = (not isinstance(value, bool) and isinstance(value, (int, float)) and value == kind(value)
                    and (kind is int or math.isfinite(value) or rule == "any") and ok(kind(value)))
        if not good:
            raise ModelLoadError(f"{group}.{name} must be {rule}, got {value!r}")
        if kind is float:
            object.__setattr__(obj, name, float(value))


@dataclass(frozen=True)
class SamplingDefaults:
    """The denoising loop.

    Attributes:
        num_inference_steps: DDIM steps (Prompt-to-Prompt and null-text inversion: 50).
        guidance_scale: classifier-free guidance w (7.5).
        image_size: the image side in pixels of a run that names none; None: the backbone's native latent side
            times the VAE's factor (a transformer's config may not record the size it was trained at).
    """

    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    image_size: int | None = None
    _optional = ("image_size",)

    def __post_init__(self):
        _validate("sampling", self, {"num_inference_steps": (int, lambda v: 1 <= v <= 1000, "in [1, 1000]"),
                                     "guidance_scale": (float, lambda v: v >= 0, "a finite number >= 0"),
                                     "image_size": (int, lambda v: 8 <= v <= 16384, "null or in [8, 16384]")})


@dataclass(frozen=True)
class P2PDefaults:
    """Prompt-to-Prompt (Hertz et al. 2023): injection windows, local blending and attention-map figures.

    The ``*_downsample`` settings select attention sites by their grid
    (:class:`~promptedit.backbones.base.AttentionSite`: how many times smaller than the latent, per side, a
    layer's maps are: 1, 2, 4, …), in the decoder and encoder (``down`` and ``up`` places); on a UNet the grid
    is the layer's resolution level. Where a backbone has no cross-attention site at the default's grid, the
    nearest it has is used and said.

    Attributes:
        cross_replace: cross-attention injection window, fraction of the steps (0.8).
        self_replace: self-attention injection window (0.4).
        self_replace_min_downsample: self-attention injected at layers at least this many times smaller than the
            latent (P2P code: 16×16 of 64×64 → 4).
        blend_downsample: resolution of the maps local blending reads (P2P code: 4).
        blend_threshold: local-blend threshold on the max-normalised map (P2P code: 0.3).
        blend_pool_size: max-pool window over the maps before the threshold (P2P code: 3).
        blend_start: fraction of the steps before local blending starts (P2P null-text notebook: 0.2).
        blend_propagation: times the blend words' map is carried along the self-attention before the threshold,
            so that it covers whole objects (ours; the paper: 0; see :class:`~promptedit.control.LocalBlend`).
        attention_downsample: resolution of attention-map figures (P2P: 4).
    """

    cross_replace: float = 0.8
    self_replace: float = 0.4
    self_replace_min_downsample: int = 4
    blend_downsample: int = 4
    blend_threshold: float = 0.3
    blend_pool_size: int = 3
    blend_start: float = 0.2
    blend_propagation: int = 0
    attention_downsample: int = 4

    def __post_init__(self):
        positive = (int, lambda v: v >= 1, "a whole number >= 1")
        _validate("p2p", self, {
            "cross_replace": (float, _unit, "in [0, 1]"), "self_replace": (float, _unit, "in [0, 1]"),
            "self_replace_min_downsample": positive, "blend_downsample": positive,
            "blend_threshold": (float, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
            "blend_pool_size": (int, lambda v: v >= 1 and v % 2 == 1, "odd and positive"),
            "blend_start": (float, _unit, "in [0, 1]"),
            "blend_propagation": (int, lambda v: 0 <= v <= 10, "a whole number in [0, 10]"), "attention_downsample": positive})


@dataclass(frozen=True)
class InversionDefaults:
    """Real images: inversion and the edits made from it.

    Attributes:
        num_inference_steps: DDIM steps of inversion, and so of its edits (null-text: 50; fewer steps make DDIM
            inversion's linearisation coarser and cap every method's reconstruction).
        self_replace: self-attention window of edits of an inversion (None: ``p2p.self_replace``); a real
            image's layout is only in its inversion's self-attention, so a longer window keeps more of it.
        edit_null: which branches of an edit take the inversion's null conditioning: ``all`` (the null-text and
            negative-prompt papers') or ``source`` (ours: the edited branches take the empty prompt's).
        blend_swapped: word swaps given no blend words blend locally on the swapped words, so the image outside
            them is kept (ours; the papers blend only on the words they are given).
    """

    num_inference_steps: int = 50
    self_replace: float | None = None
    edit_null: str = "all"
    blend_swapped: bool = True
    _optional = ("self_replace",)

    def __post_init__(self):
        _validate("inversion", self, {
            "num_inference_steps": (int, lambda v: 1 <= v <= 1000, "in [1, 1000]"),
            "self_replace": (float, _unit, "in [0, 1] or null"),
            "edit_null": (str, lambda v: v in EDIT_NULLS, f"one of {', '.join(EDIT_NULLS)}"),
            "blend_swapped": (bool, None, "true or false")})


@dataclass(frozen=True)
class MaskDefaults:
    """Instant attention masks (InstDiffEdit, Zou et al. 2024).

    Attributes:
        downsample: grid of the cross-attention sites the masks are read from (InstDiffEdit: 16×16 of
            64×64 → 4; see :class:`P2PDefaults` on site selection).
        threshold: φ, the binarisation threshold (0.2).
        smooth_times: passes of the 5×5 Gaussian smoothing (2).
        guided_filter_radius: the final mask's edges refined by a guided filter with the image as guide, radius
            in map cells (0: none, as InstDiffEdit; ours).
        region_peak: the final mask keeps only its connected regions whose peak reaches this fraction of the
            strongest region's (0: every region, as InstDiffEdit; ours).
    """

    downsample: int = 4
    threshold: float = 0.2
    smooth_times: int = 2
    guided_filter_radius: float = 0.0
    region_peak: float = 0.0

    def __post_init__(self):
        _validate("masks", self, {
            "downsample": (int, lambda v: v >= 1, "a whole number >= 1"),
            "threshold": (float, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
            "smooth_times": (int, lambda v: v >= 0, "a whole number >= 0"),
            "guided_filter_radius": (float, lambda v: 0.0 <= v <= 64.0, "in [0, 64]"),
            "region_peak": (float, _unit, "in [0, 1]")})


GROUPS = {"sampling": SamplingDefaults, "p2p": P2PDefaults, "inversion": InversionDefaults, "masks": MaskDefaults}


@dataclass(frozen=True)
class ModelDefaults:
    """A model's defaults, one group per concern (each validated on construction)."""

    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    p2p: P2PDefaults = field(default_factory=P2PDefaults)
    inversion: InversionDefaults = field(default_factory=InversionDefaults)
    masks: MaskDefaults = field(default_factory=MaskDefaults)

    @classmethod
    def from_dict(cls, data) -> "ModelDefaults":
        """From ``{"sampling": {...}, "p2p": {...}, ...}``; unknown groups and keys are errors naming them."""
        if not isinstance(data, dict):
            raise ModelLoadError("expected a JSON object of groups (sampling, p2p, inversion, masks)")
        unknown = sorted(set(data) - set(GROUPS))
        if unknown:
            raise ModelLoadError(f"unknown group{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                 f"(known: {', '.join(GROUPS)})")
        groups = {}
        for name, values in data.items():
            kind = GROUPS[name]
            if not isinstance(values, dict):
                raise ModelLoadError(f"{name} must be a JSON object, got {values!r}")
            known = [f.name for f in dataclasses.fields(kind)]
            bad = sorted(set(values) - set(known))
            if bad:
                raise ModelLoadError(f"unknown key{'s' if len(bad) > 1 else ''} {', '.join(f'{name}.{k}' for k in bad)}"
                                     f" (known in {name}: {', '.join(known)})")
            groups[name] = kind(**values)
        return cls(**groups)

    @classmethod
    def from_file(cls, path: Path) -> "ModelDefaults":
        """The defaults of a ``promptedit.json``; every problem is a ModelLoadError naming the file."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"cannot read {path}: {e}") from None
        try:
            return cls.from_dict(data)
        except ModelLoadError as e:
            raise ModelLoadError(f"{path}: {e}") from None

    @classmethod
    def of_folder(cls, folder, fallback: dict | None = None) -> "ModelDefaults":
        """The defaults of a model folder: its ``promptedit.json``; where it has none, ``fallback`` (the model
        family's, in ``promptedit.json``'s form) over the papers'."""
        path = Path(folder) / DEFAULTS_FILE if folder is not None else None
        return cls.from_file(path) if path is not None and path.is_file() else cls.from_dict(fallback or {})

    def to_dict(self) -> dict:
        """As ``promptedit.json`` holds it (every group, every key)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in GROUPS}

    def replace(self, group: str, **changes) -> "ModelDefaults":
        """A copy with some fields of one group changed (validated)."""
        return dataclasses.replace(self, **{group: dataclasses.replace(getattr(self, group), **changes)})
