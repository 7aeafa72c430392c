"""The model families promptedit runs, keyed by ``model_index.json``'s ``_class_name`` as diffusers'
``DiffusionPipeline`` dispatches, and the shapes-world models shipped inside the package.

A :class:`Family` owns everything that differs between families: the components a checkpoint holds, how its
text side (:mod:`promptedit.conditioning`) and its backbone (:mod:`promptedit.backbones`) are built, the
sampler it runs, diffusers' pipeline classes over the same components, what ``model_index.json`` records
beyond the components, its own checks, and whether its conditioning has a pooled embedding. A new family is
one more entry in :data:`FAMILIES`; nothing outside this module asks which family a model is.

Imports nothing heavy: the CLI reads the shipped models' names to answer ``--help``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelLoadError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = "embedded"


@dataclass(frozen=True)
class Pipelines:
    """diffusers' pipeline classes (names in the ``diffusers`` namespace) over a family's components; None where
    diffusers has none."""

    txt2img: str
    inpaint: str | None = None
    diffedit: str | None = None


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the family's name, as records and the training recipe's ``--arch`` spell it.
        class_names: the ``model_index.json`` ``_class_name`` s that load as this family.
        components: the components its ``model_index.json`` names (each a subfolder).
        text: builds the text side from the loaded components and the index: ``(parts, index) →``
            :class:`~promptedit.conditioning.TextConditioner`.
        backbone: wraps the loaded denoiser: ``module →`` :class:`~promptedit.backbones.base.Backbone`.
        pipelines: diffusers' pipelines over the same components.
        index_extras: what ``model_index.json`` records beyond the components: ``text → dict``.
        pipeline_extras: what diffusers' pipelines take beyond the components: ``text → dict``.
        pipeline_call: what diffusers' txt2img pipeline of the family takes to make the run promptedit makes at a
            guidance scale, beyond prompts, steps, size and (packed) latents: ``(model, scale) → dict``.
        check: family-specific checks of the loaded components, ``(parts, name) → None`` raising
            :class:`ModelLoadError`.
        pooled: whether the conditioning has a pooled text embedding (null-text inversion may optimise it).
        sampler: makes the sampler of the family's runs from the checkpoint's scheduler configuration and the
            image's latent token count (None where unknown): ``(config, image_seq_len) →``
            :class:`~promptedit.samplers.base.Sampler` (DDIM for SD and SDXL; flow-matching Euler for FLUX.1, whose
            schedule shifts with the image's size).
        guidance: makes the guidance of its runs at a scale: ``(scale, backbone) →``
            :class:`~promptedit.guidance.Guidance` (classifier-free for SD and SDXL; a guidance-distilled FLUX.1
            takes ``EmbeddedGuidance``).
        defaults: the family's defaults for a folder without ``promptedit.json``, in its form (groups of
            :class:`~promptedit.defaults.ModelDefaults`), from the loaded backbone: ``backbone → dict`` (none for SD
            and SDXL: the papers' defaults are theirs).
        denoiser: the component holding the denoiser (``unet``; an MM-DiT family's ``transformer``).
        shipped: the name and folder (under the package's assets) of its shipped shapes-world model, or None.
        trains_from: the other families whose shapes-world models a training run of this family may start from
            (where the shapes agree: :func:`promptedit.train.shapes.init_sdxl_from_sd`).
    """

    name: str
    class_names: tuple[str, ...]
    components: tuple[str, ...]
    text: Callable
    backbone: Callable
    pipelines: Pipelines
    index_extras: Callable = field(default=lambda text: {})
    pipeline_extras: Callable = field(default=lambda text: {})
    pipeline_call: Callable = field(default=lambda model, scale: {"guidance_scale": scale})
    check: Callable = field(default=lambda parts, name: None)
    pooled: bool = False
    sampler: Callable = field(default=lambda config, image_seq_len=None: _ddim(config))
    guidance: Callable = field(default=lambda scale, backbone=None: _classifier_free(scale))
    defaults: Callable = field(default=lambda backbone: {})
    denoiser: str = "unet"
    shipped: tuple[str, str] | None = None
    trains_from: tuple[str, ...] = ()

    @property
    def mmdit(self) -> bool:
        """Whether the denoiser is an MM-DiT transformer trained with rectified flow (SD3, FLUX.1), not a UNet."""
        return self.denoiser == "transformer"


def _sd_text(parts: dict, index: dict):
    from .conditioning import SDText

    return SDText(parts["tokenizer"], parts["text_encoder"])


def _sdxl_text(parts: dict, index: dict):
    from .conditioning import SDXLText

    return SDXLText([parts["tokenizer"], parts["tokenizer_2"]], [parts["text_encoder"], parts["text_encoder_2"]],
                    force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", True)))


def _ddim(config: dict):
    from .samplers import DDIMSampler

    return DDIMSampler(config)


def _classifier_free(scale: float):
    from .guidance import ClassifierFree

    return ClassifierFree(scale)


def _flux_text(parts: dict, index: dict):
    from .conditioning import FluxText

    return FluxText([parts["tokenizer"], parts["tokenizer_2"]], [parts["text_encoder"], parts["text_encoder_2"]])


def _flow(config: dict, image_seq_len: int | None = None):
    from .samplers import FlowMatchEulerSampler

    return FlowMatchEulerSampler(config, spacing="linspace", image_seq_len=image_seq_len)


def _flux_guidance(scale: float, backbone=None):
    """FLUX.1-dev takes its (distilled) guidance scale as an input; schnell and undistilled models are guided
    classifier-free (``FluxPipeline``'s ``true_cfg_scale``)."""
    from .guidance import EmbeddedGuidance

    if backbone is not None and backbone.guidance_embeds:
        return EmbeddedGuidance(scale)
    return _classifier_free(scale)


def _flux_pipeline_call(model, scale: float) -> dict:
    """``FluxPipeline``'s arguments for promptedit's run: the embedded scale (``guidance_scale``) of a distilled
    model, else true classifier-free guidance from the empty negative prompt (``true_cfg_scale``); T5's length."""
    if model.backbone.guidance_embeds:
        return {"guidance_scale": scale, "max_sequence_length": model.max_length}
    return {"true_cfg_scale": scale, "negative_prompt": "", "max_sequence_length": model.max_length}


def _flux_defaults(backbone) -> dict:
    """``FluxPipeline``'s sampling defaults (28 steps; FLUX.1-dev's embedded guidance 3.5, an undistilled model's
    no guidance, as the pipeline's ``true_cfg_scale`` 1); attention sites at the packed tokens' grid (2)."""
    return {"sampling": {"num_inference_steps": 28, "guidance_scale": 3.5 if backbone.guidance_embeds else 1.0},
            **_patch_grid_defaults(2)}


def _patch_grid_defaults(grid: int) -> dict:
    """An MM-DiT's attention sites all sit at its patches' grid: maps are read and injected there."""
    return {"p2p": {"self_replace_min_downsample": grid, "blend_downsample": grid, "attention_downsample": grid},
            "masks": {"downsample": grid}}


def _sd3_defaults(backbone) -> dict:
    """``StableDiffusion3Pipeline``'s sampling defaults (28 steps, classifier-free guidance 7.0); attention sites at
    the patches' grid (2)."""
    return {"sampling": {"num_inference_steps": 28, "guidance_scale": 7.0}, **_patch_grid_defaults(backbone.patch_size)}


def _flux_backbone(module):
    from .backbones.mmdit import FluxBackbone

    return FluxBackbone(module)


def _sd3_text(parts: dict, index: dict):
    from .conditioning import SD3Text

    return SD3Text([parts[f"tokenizer{k}"] for k in ("", "_2", "_3")],
                   [parts[f"text_encoder{k}"] for k in ("", "_2", "_3")])


def _sd3_flow(config: dict, image_seq_len: int | None = None):
    """``StableDiffusion3Pipeline``'s schedule: the scheduler's own spacing, shifted (by μ from the image's token
    count where the scheduler shifts dynamically)."""
    from .samplers import FlowMatchEulerSampler

    return FlowMatchEulerSampler(config, spacing="scheduler", image_seq_len=image_seq_len)


def _sd3_backbone(module):
    from .backbones.mmdit import SD3Backbone

    return SD3Backbone(module)


def _unet(module):
    from .backbones.unet import UNetBackbone

    return UNetBackbone(module)


def _check_sdxl(parts: dict, name: str) -> None:
    if getattr(parts["unet"].config, "addition_embed_type", None) != "text_time":
        raise ModelLoadError(f"{name}: an SDXL checkpoint's UNet must take text-time conditioning "
                             "(addition_embed_type 'text_time')")


_SD_NO_CHECKER = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

#: name -> family
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(name="sd",
           class_names=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
                        "StableDiffusionDiffEditPipeline"),
           components=("vae", "unet", "text_encoder", "tokenizer", "scheduler"),
           text=_sd_text, backbone=_unet,
           pipelines=Pipelines("StableDiffusionPipeline", "StableDiffusionInpaintPipeline",
                               "StableDiffusionDiffEditPipeline"),
           index_extras=lambda text: {"safety_checker": [None, None], "feature_extractor": [None, None],
                                      "requires_safety_checker": False},
           pipeline_extras=lambda text: dict(_SD_NO_CHECKER),
           shipped=("embedded", "shapes-model")),
    Family(name="sdxl",
           class_names=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
                        "StableDiffusionXLInpaintPipeline"),
           components=("vae", "unet", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
           text=_sdxl_text, backbone=_unet,
           pipelines=Pipelines("StableDiffusionXLPipeline", "StableDiffusionXLInpaintPipeline", None),
           index_extras=lambda text: {"force_zeros_for_empty_prompt": text.force_zeros_for_empty_prompt},
           pipeline_extras=lambda text: {"force_zeros_for_empty_prompt": text.force_zeros_for_empty_prompt},
           check=_check_sdxl, pooled=True, shipped=("embedded-xl", "shapes-model-xl"), trains_from=("sd",)),
    Family(name="flux",
           class_names=("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
           components=("vae", "transformer", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
                       "scheduler"),
           text=_flux_text, backbone=_flux_backbone,
           pipelines=Pipelines("FluxPipeline", "FluxInpaintPipeline", None),
           pipeline_call=_flux_pipeline_call, pooled=True, sampler=_flow, guidance=_flux_guidance,
           defaults=_flux_defaults, denoiser="transformer", trains_from=("sd",)),
    Family(name="sd3",
           class_names=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline",
                        "StableDiffusion3InpaintPipeline"),
           components=("vae", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer",
                       "tokenizer_2", "tokenizer_3", "scheduler"),
           text=_sd3_text, backbone=_sd3_backbone,
           pipelines=Pipelines("StableDiffusion3Pipeline", "StableDiffusion3InpaintPipeline", None),
           pipeline_call=lambda model, scale: {"guidance_scale": scale,
                                               "max_sequence_length": model.text.max_sequence_length},
           pooled=True, sampler=_sd3_flow, defaults=_sd3_defaults, denoiser="transformer"),
)}

#: name -> folder of each shipped model
EMBEDDED_MODELS = {f.shipped[0]: ASSETS / f.shipped[1] for f in FAMILIES.values() if f.shipped}


def family_of_index(index: dict) -> Family:
    """The family of a checkpoint from its ``model_index.json``: by ``_class_name``; a folder without one (an
    old save) is SDXL when it has a second text encoder, else SD. A :class:`ModelLoadError` names an unknown
    class and the known ones."""
    class_name = index.get("_class_name")
    if class_name is None:
        return FAMILIES["sdxl" if "text_encoder_2" in index else "sd"]
    for family in FAMILIES.values():
        if class_name in family.class_names:
            return family
    known = ", ".join(c for f in FAMILIES.values() for c in f.class_names)
    raise ModelLoadError(f"model_index.json's _class_name {class_name!r} is not a model family promptedit runs "
                         f"(known: {known})")


def resolve_model(name: str) -> str:
    """``name`` as a path: a shipped model's folder for its name (``./embedded`` names a folder called so), any
    other name unchanged. A :class:`ModelLoadError` when the installation lacks the shipped model named."""
    if name not in EMBEDDED_MODELS:
        return name
    if not EMBEDDED_MODELS[name].is_dir():
        raise ModelLoadError(f"model {name!r}: this installation lacks that shipped model ({EMBEDDED_MODELS[name]} "
                             "is missing)")
    return str(EMBEDDED_MODELS[name])
