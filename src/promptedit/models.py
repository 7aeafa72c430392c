"""Loading Stable Diffusion checkpoints in diffusers format.

A :class:`DiffusionModel` holds the components (VAE, UNet, text encoder,
tokenizer) and the scheduler configuration, on one device and dtype, plus the
sampling defaults: the papers' unless the model folder ships a
``promptedit.json`` with better ones for that model.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import ModelLoadError

COMPONENTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")
DEFAULTS_FILE = "promptedit.json"
EDIT_NULLS = ("all", "source")  # which branches of an inversion's edit take its null embeddings


@dataclass(frozen=True)
class ModelDefaults:
    """Sampling and editing defaults. The papers' values unless a model's ``promptedit.json`` overrides them.

    Attributes:
        num_inference_steps: DDIM steps (P2P and null-text: 50).
        guidance_scale: classifier-free guidance w (7.5).
        cross_replace: cross-attention injection window, fraction of steps (P2P: 0.8).
        self_replace: self-attention injection window (P2P: 0.4).
        self_replace_min_downsample: self-attention injected at layers ≥ this many times smaller than the latent (P2P: 4).
        blend_downsample: resolution of the maps used by local blending, relative to the latent (P2P: 4).
        blend_threshold: local-blend threshold (P2P code: 0.3).
        blend_pool_size: max-pool window over the maps before local blending's threshold (P2P code: 3, i.e. a
            dilation by one map cell).
        blend_start: fraction of steps before local blending starts (P2P null-text notebook: 0.2).
        attention_downsample: resolution of attention-map figures (P2P: 16×16 of 64×64 → 4).
        inversion_steps: DDIM steps of real-image inversion, and so of the edits made from it (null-text: 50;
            fewer steps make DDIM inversion's linearisation coarser and cap every inversion's reconstruction).
        inversion_self_replace: self-attention injection window of the edits made from an inversion (None:
            ``self_replace``). A real image's layout is only in its inversion's self-attention, so a longer
            window keeps more of it; each model measures its own.
        inversion_edit_null: which branches of an edit of an inversion take the inversion's null embeddings
            (null-text's ∅_t, negative-prompt's source prompt): ``all`` (the papers') or ``source``, the
            edited branches then taking the plain empty-prompt null as direct inversion's do (ours).
        inversion_blend_swapped: word swaps of an inversion given no blend words blend locally on the swapped
            words (source's and target's), so the image outside them is kept (ours; the papers blend only on
            words they are given).
        mask_threshold: φ, instant masks' binarisation threshold (InstDiffEdit: 0.2).
        mask_smooth_times: passes of instant masks' 5×5 Gaussian smoothing (InstDiffEdit: 2).
        mask_refine_radius: the final instant mask's edge-aware refinement, a guided filter with the image as
            guide, its radius in attention-map cells (0: none, as InstDiffEdit).
        mask_region_peak: the final instant mask keeps only its connected regions whose peak reaches this
            fraction of the strongest region's (0: every region, as InstDiffEdit).
    """

    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    cross_replace: float = 0.8
    self_replace: float = 0.4
    self_replace_min_downsample: int = 4
    blend_downsample: int = 4
    blend_threshold: float = 0.3
    blend_pool_size: int = 3
    blend_start: float = 0.2
    attention_downsample: int = 4
    inversion_steps: int = 50
    inversion_self_replace: float | None = None
    inversion_edit_null: str = "all"
    inversion_blend_swapped: bool = True
    mask_threshold: float = 0.2
    mask_smooth_times: int = 2
    mask_refine_radius: float = 0.0
    mask_region_peak: float = 0.0

    def __post_init__(self):
        unit = (lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
        checks = (("num_inference_steps", int, lambda v: 1 <= v <= 1000, "in [1, 1000]"),
                  ("guidance_scale", float, lambda v: 0.0 <= v < float("inf"), "a finite number >= 0"),
                  ("cross_replace", float, *unit), ("self_replace", float, *unit),
                  ("self_replace_min_downsample", int, lambda v: v >= 1, ">= 1"),
                  ("blend_downsample", int, lambda v: v >= 1, ">= 1"),
                  ("blend_threshold", float, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
                  ("blend_start", float, *unit),
                  ("attention_downsample", int, lambda v: v >= 1, ">= 1"),
                  ("inversion_steps", int, lambda v: 1 <= v <= 1000, "in [1, 1000]"),
                  ("blend_pool_size", int, lambda v: v >= 1 and v % 2 == 1, "odd and positive"),
                  ("mask_threshold", float, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
                  ("mask_smooth_times", int, lambda v: v >= 0, ">= 0"),
                  ("mask_refine_radius", float, lambda v: 0.0 <= v <= 64.0, "in [0, 64]"),
                  ("mask_region_peak", float, lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))
        if self.inversion_edit_null not in EDIT_NULLS:
            raise ModelLoadError(f"promptedit.json: inversion_edit_null must be one of {', '.join(EDIT_NULLS)}, "
                                 f"got {self.inversion_edit_null!r}")
        if not isinstance(self.inversion_blend_swapped, bool):
            raise ModelLoadError(f"promptedit.json: inversion_blend_swapped must be true or false, "
                                 f"got {self.inversion_blend_swapped!r}")
        if self.inversion_self_replace is not None:
            checks += (("inversion_self_replace", float, *unit),)
        for name, kind, ok, rule in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != kind(value) or not ok(kind(value)):
                raise ModelLoadError(f"promptedit.json: {name} must be {rule}, got {value!r}")

    @classmethod
    def from_file(cls, path: Path) -> "ModelDefaults":
        """The defaults of a ``promptedit.json`` (``{"defaults": {...}}``); an unknown key, or a value of the wrong
        type or out of range, is a ModelLoadError naming it and the file."""
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"cannot read {path}: {e}") from None
        values = data.get("defaults", data) if isinstance(data, dict) else None
        if not isinstance(values, dict):
            raise ModelLoadError(f"{path}: expected a JSON object of defaults")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelLoadError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known))})")
        try:
            return cls(**values)
        except ModelLoadError as e:
            raise ModelLoadError(f"{path}: {str(e).removeprefix('promptedit.json: ')}") from None


@dataclass
class DiffusionModel:
    """A loaded Stable Diffusion model.

    Attributes:
        vae, unet, text_encoder, tokenizer: the components, in eval mode.
        scheduler_config: the checkpoint's scheduler configuration (a fresh DDIM scheduler is made per run).
        name: where the model came from (folder or hub id).
        defaults: sampling and editing defaults for this model.
    """

    vae: torch.nn.Module
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    name: str
    defaults: ModelDefaults = field(default_factory=ModelDefaults)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent position, per side (the VAE's, or the codec's patch size)."""
        patch = getattr(self.vae.config, "patch_size", None)
        if patch:
            return int(patch)
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of x_t: what the UNet predicts (an inpainting UNet takes more in: mask and masked image)."""
        return int(self.unet.config.out_channels)

    @property
    def image_size(self) -> int:
        """Native image side: the UNet's sample size times the VAE's factor."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    def attention_downsamples(self, *, is_cross: bool = True) -> list[int]:
        """Resolutions (factors relative to the latent) of the UNet's down and up attention layers."""
        from .hooks import attention_downsamples

        return attention_downsamples(self.unet, is_cross=is_cross)

    def resolve_downsample(self, requested: int | None, default: int, what: str) -> tuple[int, str]:
        """The cross-attention resolution to read maps at: ``requested`` when given (a ParameterError when the
        UNet has no cross-attention there), else ``default`` or, when the UNet has none at ``default``, the
        nearest it has. Returns (factor, a note saying so when the default was replaced, else "")."""
        from .errors import ParameterError
        from .hooks import nearest_downsample

        have = self.attention_downsamples()
        listed = ", ".join(f"1/{f}" for f in have) or "none"
        if not have:
            raise ParameterError(f"this model's UNet has no cross-attention maps in its down and up blocks; {what} "
                                 "needs them")
        if requested is not None:
            if isinstance(requested, bool) or not isinstance(requested, int) or requested not in have:
                raise ParameterError(f"{what}: no cross-attention maps at 1/{requested} of the latent size in this "
                                     f"model; it has {listed}")
            return requested, ""
        if default in have:
            return default, ""
        f = nearest_downsample(have, default)
        return f, (f"{what}: this model has no cross-attention maps at 1/{default} of the latent size (the default); "
                   f"using 1/{f}, the nearest it has ({listed})")

    def make_scheduler(self, **overrides):
        """A new DDIM scheduler from the checkpoint's configuration (the papers' DDIM: no clipping,
        ``set_alpha_to_one=False``)."""
        from diffusers import DDIMScheduler

        config = dict(self.scheduler_config)
        config.update({"clip_sample": False, "set_alpha_to_one": False})
        config.update(overrides)
        return DDIMScheduler.from_config(config)

    def to(self, device=None, dtype=None) -> "DiffusionModel":
        for m in (self.vae, self.unet, self.text_encoder):
            # torch's own Module.to: diffusers' override warns about fp32 modules on every dtype cast
            torch.nn.Module.to(m, device=device, dtype=dtype)
        return self


def default_device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA with fp16 when present, else CPU with fp32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.float16
    return torch.device("cpu"), torch.float32


def resolve_device(device: str | torch.device) -> torch.device:
    """A device that exists here: ``cpu``, ``cuda``/``cuda:N`` with that GPU present, or ``mps`` where available;
    a ParameterError naming what is wrong otherwise."""
    from .errors import ParameterError

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ParameterError(f"unknown device {device!r} (cpu, cuda, cuda:N or mps)") from None
    if d.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ParameterError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
        if (d.index or 0) >= count:
            raise ParameterError(f"device {device!r} asked for, but torch sees {count} CUDA GPU(s) here")
    elif d.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ParameterError(f"device {device!r} asked for, but MPS is not available here")
    elif d.type != "cpu":
        raise ParameterError(f"device {device!r} is not supported (cpu, cuda, cuda:N or mps)")
    return d


def _is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _load_component(root: str, name: str, spec, local: bool, dtype: torch.dtype | None = None):
    try:
        library, class_name = spec
        module = importlib.import_module(library)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError, TypeError, ValueError):
        raise ModelLoadError(f"{root}: unknown {name} class {spec!r} in model_index.json") from None
    kwargs = {}
    if dtype is not None:
        from diffusers import ModelMixin

        if isinstance(cls, type) and issubclass(cls, ModelMixin):
            kwargs["torch_dtype"] = dtype  # cast while loading (fp16 files on CPU), not afterwards
    try:
        return cls.from_pretrained(root, subfolder=name, local_files_only=local, **kwargs)
    except Exception as e:  # diffusers/transformers raise many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{root}: cannot load the {name}: {first}") from None


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """Load a Stable Diffusion checkpoint in diffusers format from a local folder (or a hub id).

    Raises :class:`ModelLoadError` for a missing folder, a folder that is not a
    diffusers SD checkpoint, or a component that cannot be loaded.
    """
    from diffusers import ConfigMixin  # noqa: F401  (ensures diffusers is importable)

    name = str(name_or_path)
    path = Path(name).expanduser()
    local = path.exists()
    if local:
        if not path.is_dir():
            raise ModelLoadError(f"model path {name} is not a folder")
        index_file = path / "model_index.json"
        if not index_file.is_file():
            raise ModelLoadError(f"{name} is not a diffusers Stable Diffusion folder (no model_index.json)")
        try:
            index = json.loads(index_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"cannot read {index_file}: {e}") from None
        root = str(path)
    elif _is_hub_id(name):
        try:
            from huggingface_hub import hf_hub_download

            index = json.loads(Path(hf_hub_download(name, "model_index.json")).read_text())
        except Exception as e:
            raise ModelLoadError(f"model {name!r} is not a local folder and could not be fetched: {e}".splitlines()[0]) from None
        root = name
    else:
        raise ModelLoadError(f"model folder {name} not found")

    if not isinstance(index, dict):
        raise ModelLoadError(f"{name}: model_index.json is not a JSON object")
    missing = [c for c in COMPONENTS if c not in index]
    if missing:
        raise ModelLoadError(f"{name} lacks {', '.join(missing)}: not a Stable Diffusion checkpoint")
    if local:
        absent = [c for c in COMPONENTS if not (path / c).is_dir()]
        if absent:
            raise ModelLoadError(f"{name} is incomplete: its model_index.json names {', '.join(absent)} but the "
                                 f"folder{'s are' if len(absent) > 1 else ' is'} missing")

    if device is not None:
        device = resolve_device(device)
    if device is None or dtype is None:
        d, t = default_device_and_dtype()
        device = device or d
        dtype = dtype or (t if torch.device(device).type == "cuda" else torch.float32)
    parts = {c: _load_component(root, c, index[c], local, dtype) for c in ("vae", "unet", "text_encoder", "tokenizer")}
    try:
        from diffusers import DDIMScheduler

        scheduler_config = dict(DDIMScheduler.load_config(root, subfolder="scheduler", local_files_only=local))
    except Exception as e:
        raise ModelLoadError(f"{name}: cannot load the scheduler: {str(e).splitlines()[0]}") from None
    if not getattr(parts["tokenizer"], "is_fast", False):
        raise ModelLoadError(f"{name}: the tokenizer is not a fast tokenizer")
    defaults = ModelDefaults.from_file(path / DEFAULTS_FILE) if local and (path / DEFAULTS_FILE).is_file() else ModelDefaults()
    model = DiffusionModel(
        vae=parts["vae"], unet=parts["unet"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
        scheduler_config=scheduler_config, name=name, defaults=defaults,
    )
    for m in (model.vae, model.unet, model.text_encoder):
        m.eval().requires_grad_(False)
    return model.to(torch.device(device), dtype)


def load_inpaint_pipeline(name_or_path: str | os.PathLike, *, device=None, dtype=None, progress: bool = False):
    """A diffusers ``StableDiffusionInpaintPipeline`` from a Stable Diffusion inpainting folder (its UNet takes
    the 4 latent channels, the mask and the masked image's latents: 9 channels), for InstDiffEdit's final pass.

    Raises :class:`ModelLoadError` as :func:`load_model` does, and for a checkpoint that does not inpaint.
    """
    from diffusers import StableDiffusionInpaintPipeline

    model = load_model(name_or_path, device=device, dtype=dtype)
    channels, latent = model.unet.config.in_channels, model.latent_channels
    if channels != 2 * latent + 1:
        raise ModelLoadError(f"{name_or_path} is not an inpainting checkpoint: its UNet takes {channels} input "
                             f"channels, an inpainting UNet {2 * latent + 1}")
    pipe = StableDiffusionInpaintPipeline(
        vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
        scheduler=model.make_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    pipe.register_to_config(_name_or_path=str(name_or_path))  # what result.json names
    return pipe


def save_model(model: DiffusionModel, folder: str | os.PathLike, *, extra_files: dict[str, str] | None = None,
               half: bool = False) -> Path:
    """Write a model as a diffusers folder (safetensors), with its defaults in ``promptedit.json``.

    ``half`` stores the UNet's and text encoder's weights in fp16 (half the size; loading casts them back).
    """
    import copy
    from dataclasses import asdict

    import diffusers
    from diffusers import DDIMScheduler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in (("unet", model.unet), ("text_encoder", model.text_encoder)):
        (copy.deepcopy(module).half() if half else module).save_pretrained(folder / name)
    model.vae.save_pretrained(folder / "vae")
    model.tokenizer.save_pretrained(folder / "tokenizer")
    DDIMScheduler.from_config(model.scheduler_config).save_pretrained(folder / "scheduler")
    vae_cls = type(model.vae)
    vae_lib = "diffusers" if vae_cls.__module__.startswith("diffusers") else vae_cls.__module__
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "vae": [vae_lib, vae_cls.__name__],
        "unet": ["diffusers", type(model.unet).__name__],
        "text_encoder": ["transformers", type(model.text_encoder).__name__],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    (folder / DEFAULTS_FILE).write_text(json.dumps({"defaults": asdict(model.defaults)}, indent=2))
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text)
    return folder
