"""Loading and saving Stable Diffusion checkpoints in diffusers format (SD 1.x / 2.x and SDXL).

A :class:`DiffusionModel` holds the VAE (or the embedded model's codec), the backbone
(:mod:`promptedit.backbones`), the model family's text side (:mod:`promptedit.conditioning`), the scheduler
configuration and the model's defaults (:mod:`promptedit.defaults`), on one device and dtype. The family is
read from ``model_index.json``'s ``_class_name`` (:mod:`promptedit.families`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .backbones.base import Backbone, nearest_grid
from .conditioning import Conditioning, TextConditioner
from .defaults import DEFAULTS_FILE, ModelDefaults
from .errors import ModelLoadError, ParameterError
from .families import FAMILIES, Family, family_of_index, resolve_model
from .guidance import Guidance
from .samplers import Sampler


@dataclass
class DiffusionModel:
    """A loaded text-to-image latent diffusion model.

    Attributes:
        vae: the autoencoder (``encode(x).latent_dist``, ``decode(z).sample``, ``config.scaling_factor``).
        backbone: the denoiser (:class:`~promptedit.backbones.base.Backbone`; its ``module`` in eval mode).
        text: the family's text side: prompts → :class:`~promptedit.conditioning.Conditioning`.
        scheduler_config: the checkpoint's scheduler configuration (a fresh sampler is made per run).
        name: where the model came from (folder or hub id).
        defaults: sampling and editing defaults for this model.
    """

    vae: torch.nn.Module
    backbone: Backbone
    text: TextConditioner
    scheduler_config: dict
    name: str
    defaults: ModelDefaults = field(default_factory=ModelDefaults)

    # ----------------------------------------------------------------- what the stages ask of a model
    @property
    def family(self) -> str:
        """The family's name (``sd``, ``sdxl``), as records keep it."""
        return self.text.family

    @property
    def family_entry(self) -> Family:
        """The family's registry entry (:data:`promptedit.families.FAMILIES`)."""
        return FAMILIES[self.family]

    @property
    def unet(self) -> torch.nn.Module:
        """The backbone's torch module (for training, saving and diffusers' pipelines)."""
        return self.backbone.module

    @property
    def tokenizer(self):
        """The tokenizer whose positions the attention maps' keys are."""
        return self.text.tokenizer

    @property
    def keys(self):
        """Where the attention's text keys come from (:class:`~promptedit.text.tokens.TextKeys`)."""
        return self.text.keys

    @property
    def text_encoder(self) -> torch.nn.Module:
        """The (first) text encoder; for training and saving. The loop goes through :attr:`text`."""
        return self.text.encoders[0]

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.dtype

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent position, per side (the VAE's, or the codec's patch size)."""
        patch = getattr(self.vae.config, "patch_size", None)
        if patch:
            return int(patch)
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_factor(self) -> int:
        """Image sides must be multiples of this (the VAE's factor times the backbone's)."""
        return self.vae_scale_factor * self.backbone.size_factor

    @property
    def latent_channels(self) -> int:
        """Channels of x_t: what the backbone predicts (an inpainting UNet takes more in: mask and masked image)."""
        return self.backbone.latent_channels

    @property
    def image_size(self) -> int:
        """Native image side: the defaults' ``sampling.image_size``, else the backbone's native latent side times
        the VAE's factor."""
        if self.defaults.sampling.image_size is not None:
            return self.defaults.sampling.image_size
        return self.backbone.native_size * self.vae_scale_factor

    def estimate_memory(self, height: int, width: int, batch: int) -> int:
        """A rough estimate of the peak bytes a run on ``height`` × ``width`` images needs beyond the weights: the
        larger of the backbone's activations for ``batch`` branches (:meth:`~promptedit.backbones.base.Backbone.
        estimate_memory`) and the VAE decoder's at full resolution (8 tensors of its first block's width per
        image). Used to refuse runs that cannot fit, not to plan them."""
        f = self.vae_scale_factor
        backbone = self.backbone.estimate_memory(height // f, width // f, batch)
        vae = 0
        channels = getattr(self.vae.config, "block_out_channels", None)
        if channels and not getattr(self.vae.config, "patch_size", None):  # a convolutional VAE, not the codec
            vae_bytes = 4 if getattr(self.vae.config, "force_upcast", False) else torch.finfo(self.dtype).bits // 8
            vae = 8 * batch * height * width * int(channels[0]) * vae_bytes
        return int(max(backbone, vae))

    @property
    def max_length(self) -> int:
        return self.text.max_length

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    def encode(self, prompts, *, size: tuple[int, int]) -> Conditioning:
        """Conditioning of ``prompts`` for images of ``size`` (h, w)."""
        return self.text.encode(prompts, size=size).to(self.device, self.dtype)

    def unconditional(self, n: int, *, size: tuple[int, int]) -> Conditioning:
        """The unconditional branch's conditioning ∅, ``n`` rows."""
        return self.text.unconditional(n, size=size).to(self.device, self.dtype)

    def predict(self, x_t: torch.Tensor, t, cond: Conditioning, *, compiled: bool = False,
                guidance: float | None = None) -> torch.Tensor:
        """The backbone's output for x_t (n, C, h, w) at timestep t under ``cond`` (n rows); ``compiled`` uses the
        compiled backbone when :meth:`compile` made one; ``guidance``: the scale, for a guidance-distilled
        backbone (see :meth:`~promptedit.backbones.base.Backbone.predict`)."""
        return self.backbone.predict(x_t, t, cond, compiled=compiled, guidance=guidance)

    def compile(self, **options) -> "DiffusionModel":
        """Compile the backbone with ``torch.compile(**options)`` for the runs without attention control (plain
        generation, inversion, null-text optimisation's calls); controlled runs stay eager. Off unless asked:
        it pays only where it measures faster (docs/performance.md)."""
        self.backbone = copy.copy(self.backbone)  # the module shared, the compiled one this model's own
        self.backbone.compile(**options)
        return self

    def pipeline_components(self) -> dict:
        """The components as diffusers' pipelines of the family take them (``StableDiffusion*Pipeline`` /
        ``StableDiffusionXL*Pipeline``), with the sampler's fresh scheduler: the same modules, nothing copied."""
        return {"vae": self.vae, self.family_entry.denoiser: self.unet, "scheduler": self.make_sampler().scheduler,
                **self.text.components(), **self.family_entry.pipeline_extras(self.text)}

    def attention_downsamples(self, *, is_cross: bool = True) -> list[int]:
        """Grids (factors relative to the latent) of the backbone's down and up attention sites."""
        return self.backbone.grids(kind="cross" if is_cross else "self")

    def resolve_downsample(self, requested: int | None, default: int, what: str) -> tuple[int, str]:
        """The cross-attention resolution to read maps at: ``requested`` when given (a ParameterError when the
        UNet has no cross-attention there), else ``default`` or, when the UNet has none at ``default``, the
        nearest it has. Returns (factor, a note saying so when the default was replaced, else "")."""
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
        f = nearest_grid(have, default)
        return f, (f"{what}: this model has no cross-attention maps at 1/{default} of the latent size (the default); "
                   f"using 1/{f}, the nearest it has ({listed})")

    def make_sampler(self, latent_size: tuple[int, int] | None = None) -> Sampler:
        """A new sampler over the checkpoint's noise schedule, for latents of ``latent_size`` (h, w) where its
        schedule depends on the image's size (FLUX.1's dynamic shifting)."""
        seq_len = None if latent_size is None else self.backbone.image_seq_len(*latent_size)
        return self.family_entry.sampler(self.scheduler_config, seq_len)

    def make_guidance(self, scale: float) -> Guidance:
        """The guidance of this model's runs at ``scale``: what its family and backbone take."""
        return self.family_entry.guidance(scale, self.backbone)

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.vae, self.backbone.module, *self.text.encoders]

    def to(self, device=None, dtype=None) -> "DiffusionModel":
        for m in self.modules:
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
        from diffusers.utils import is_accelerate_available

        if isinstance(cls, type) and issubclass(cls, ModelMixin):
            kwargs["torch_dtype"] = dtype  # cast while loading (fp16 files on CPU), not afterwards
            # what diffusers falls back to without accelerate, asked for outright: its notice that it fell back
            # would print once per component
            kwargs["low_cpu_mem_usage"] = is_accelerate_available()
    for config_name in ("config.json", "tokenizer_config.json"):  # a broken one would fail inside the libraries
        config = Path(root) / name / config_name
        if local and config.is_file():
            try:
                if not isinstance(json.loads(config.read_text()), dict):
                    raise ValueError("not a JSON object")
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise ModelLoadError(f"{root}: the {name}'s {config_name} is broken ({str(e).splitlines()[0]})"
                                     ) from None
    try:
        return cls.from_pretrained(root, subfolder=name, local_files_only=local, **kwargs)
    except Exception as e:  # diffusers/transformers raise many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{root}: cannot load the {name}: {first}") from None


def _read_index(name: str) -> tuple[dict, str, bool, Path]:
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model path {name} is not a folder")
        index_file = path / "model_index.json"
        if not index_file.is_file():
            raise ModelLoadError(f"{name} is not a diffusers Stable Diffusion folder (no model_index.json)")
        try:
            index = json.loads(index_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"cannot read {index_file}: {e}") from None
        return index, str(path), True, path
    if _is_hub_id(name):
        try:
            from huggingface_hub import hf_hub_download

            index = json.loads(Path(hf_hub_download(name, "model_index.json")).read_text())
        except Exception as e:
            raise ModelLoadError(f"model {name!r} is not a local folder and could not be fetched: {e}".splitlines()[0]) from None
        return index, name, False, path
    raise ModelLoadError(f"model folder {name} not found")


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """Load a Stable Diffusion (1.x, 2.x or XL) checkpoint in diffusers format from a local folder (or a hub id,
    where the hub is reachable; nothing here downloads by default), or a shipped shapes-world model by its name:
    ``"embedded"`` (SD's architecture) or ``"embedded-xl"`` (SDXL's); ``"./embedded"`` is a folder of that name.

    Raises :class:`ModelLoadError` for a missing folder, a folder that is not a diffusers SD checkpoint, or a
    component that cannot be loaded, and :class:`ParameterError` for a device that is not here.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ModelLoadError(f"a model is a folder path, a hub id or a shipped model's name, got {name_or_path!r}")
    name = resolve_model(str(name_or_path)) if isinstance(name_or_path, str) else str(name_or_path)
    if device is not None:
        device = resolve_device(device)
    if dtype is not None:
        if isinstance(dtype, str) and isinstance(getattr(torch, dtype.removeprefix("torch."), None), torch.dtype):
            dtype = getattr(torch, dtype.removeprefix("torch."))  # "float16", "torch.bfloat16"
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ParameterError(f"dtype must be a floating torch dtype (torch.float16, torch.float32, "
                                 f"torch.bfloat16), got {dtype!r}")
    index, root, local, path = _read_index(name)
    if not isinstance(index, dict):
        raise ModelLoadError(f"{name}: model_index.json is not a JSON object")
    family = family_of_index(index)
    components = family.components
    missing = [c for c in components if c not in index]
    if missing:
        raise ModelLoadError(f"{name} lacks {', '.join(missing)}: not a Stable Diffusion checkpoint")
    if local:
        absent = [c for c in components if not (path / c).is_dir()]
        if absent:
            raise ModelLoadError(f"{name} is incomplete: its model_index.json names {', '.join(absent)} but the "
                                 f"folder{'s are' if len(absent) > 1 else ' is'} missing")

    if device is None or dtype is None:
        d, t = default_device_and_dtype()
        device = device or d
        dtype = dtype or (t if torch.device(device).type == "cuda" else torch.float32)
    parts = {c: _load_component(root, c, index[c], local, dtype) for c in components if c != "scheduler"}
    try:
        library, class_name = index["scheduler"]  # the checkpoint's scheduler class reads its configuration
        scheduler_class = getattr(importlib.import_module(library), class_name)
        scheduler_config = dict(scheduler_class.load_config(root, subfolder="scheduler", local_files_only=local))
        # the sampler every run makes from it, made once here so that a broken configuration is refused at load
        # time, not as an indexing error mid-run
        family.sampler(scheduler_config)
    except ParameterError as e:
        raise ModelLoadError(f"{name}: the scheduler's configuration is broken ({e})") from None
    except Exception as e:
        raise ModelLoadError(f"{name}: cannot load the scheduler's configuration: {str(e).splitlines()[0]}") from None
    for tok in (parts[c] for c in components if c.startswith("tokenizer")):
        if not getattr(tok, "is_fast", False):
            raise ModelLoadError(f"{name}: the tokenizer is not a fast tokenizer")
    family.check(parts, name)
    text = family.text(parts, index)
    from .codec import PatchCodec

    if isinstance(parts["vae"], PatchCodec):  # a shapes-world model (promptedit train): it knows the world's words
        from .world.spec import VOCABULARY

        text.vocabulary = VOCABULARY
    backbone = family.backbone(parts[family.denoiser])
    defaults = ModelDefaults.of_folder(path if local else None, family.defaults(backbone))
    model = DiffusionModel(vae=parts["vae"], backbone=backbone, text=text,
                           scheduler_config=scheduler_config,
                           name=name, defaults=defaults)
    for m in model.modules:
        m.eval().requires_grad_(False)
    return model.to(torch.device(device), dtype)


def load_inpaint_pipeline(name_or_path: str | os.PathLike, *, device=None, dtype=None, progress: bool = False):
    """A diffusers inpainting pipeline (``StableDiffusionInpaintPipeline``, or ``StableDiffusionXLInpaintPipeline``
    for an SDXL folder) from an inpainting checkpoint (its UNet takes the latent channels, the mask and the
    masked image's latents: 2C + 1 channels), for InstDiffEdit's final pass.

    Raises :class:`ModelLoadError` as :func:`load_model` does, and for a checkpoint that does not inpaint.
    """
    model = load_model(name_or_path, device=device, dtype=dtype)
    channels, latent = model.backbone.in_channels, model.latent_channels
    if channels != 2 * latent + 1:
        raise ModelLoadError(f"{name_or_path} is not an inpainting checkpoint: its UNet takes {channels} input "
                             f"channels, an inpainting UNet {2 * latent + 1}")
    import diffusers

    inpaint = model.family_entry.pipelines.inpaint
    if inpaint is None:
        raise ModelLoadError(f"{name_or_path}: diffusers has no inpainting pipeline for the {model.family} family")
    pipe = getattr(diffusers, inpaint)(**model.pipeline_components())
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    pipe.register_to_config(_name_or_path=str(name_or_path))  # what result.json names
    return pipe


def save_model(model: DiffusionModel, folder: str | os.PathLike, *, extra_files: dict[str, str] | None = None,
               half: bool = False) -> Path:
    """Write a model as a diffusers folder (safetensors), with its defaults in ``promptedit.json``.

    ``half`` stores the UNet's and text encoders' weights in fp16 (half the size; loading casts them back).
    """
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    family = model.family_entry
    text = model.text.components()
    encoders = [(c, text[c]) for c in family.components if c.startswith("text_encoder")]
    tokenizers = [(c, text[c]) for c in family.components if c.startswith("tokenizer")]
    for name, module in ((family.denoiser, model.unet), *encoders):
        (copy.deepcopy(module).half() if half else module).save_pretrained(folder / name)
    model.vae.save_pretrained(folder / "vae")
    for name, tok in tokenizers:
        tok.save_pretrained(folder / name)
    scheduler = model.make_sampler().checkpoint_scheduler()
    scheduler.save_pretrained(folder / "scheduler")
    vae_cls = type(model.vae)
    vae_lib = "diffusers" if vae_cls.__module__.startswith("diffusers") else vae_cls.__module__
    index = {
        "_class_name": family.pipelines.txt2img,
        "_diffusers_version": diffusers.__version__,
        "vae": [vae_lib, vae_cls.__name__],
        family.denoiser: ["diffusers", type(model.unet).__name__],
        "scheduler": ["diffusers", type(scheduler).__name__],
    }
    for name, module in encoders:
        index[name] = ["transformers", type(module).__name__]
    for name, tok in tokenizers:
        index[name] = ["transformers", "CLIPTokenizer" if type(tok).__name__.startswith("CLIP") else type(tok).__name__]
    index.update(family.index_extras(model.text))
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    (folder / DEFAULTS_FILE).write_text(json.dumps(model.defaults.to_dict(), indent=2) + "\n")
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text)
    return folder


def model_fingerprint(model: DiffusionModel) -> str:
    """A short hash of the model's architecture and of a sample of its weights: an inversion made with one
    model is refused by another (another architecture, or the same one with other weights), and batch runs key
    their items by it (a moved folder resumes, other weights rerun)."""
    h = hashlib.sha1()
    h.update(json.dumps({k: v for k, v in dict(model.unet.config).items() if not k.startswith("_")},
                        sort_keys=True, default=str).encode())
    for module in (model.unet, *model.text.encoders):
        first = next(module.parameters()).detach().float().flatten()[:4096].cpu()
        h.update(np.round(first.numpy(), 3).tobytes())  # rounded: the same weights in fp16 or fp32 agree
    return h.hexdigest()[:16]
