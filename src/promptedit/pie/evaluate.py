"""PIE-Bench's metrics, as its evaluation code defines them, on numpy images.

Reference: PnPInversion (cure-lab), ``evaluation/evaluate.py`` (which metric on
which pixels, NaN rules) and ``evaluation/matrics_calculator.py`` (each metric).
Images are uint8 (H, W, 3); ``mask`` is the benchmark's decoded mask (bool (H, W),
True = edited, border rows/columns True: :attr:`promptedit.pie.data.PieItem.mask`).

Metrics (keys are the benchmark's metric names, in its default order):

- ``structure_distance``: DINO ViT-B/8, last block's keys, cosine self-similarity
  of all tokens (CLS included), mean squared difference between the two images'
  matrices. Whole images, no mask. Like the benchmark, the images enter as float
  0..255 (never divided by 255), resized (short side 224, long side at most 480,
  bilinear, no antialias) and normalised with ImageNet's mean and std.
- ``psnr_unedit_part``, ``lpips_unedit_part``, ``mse_unedit_part``,
  ``ssim_unedit_part``: both images multiplied by ``1 - mask`` (the edited part set
  to black in both, the pixels still counted), values in [0, 1]; PSNR with data
  range 1, MSE over all H x W x 3 values, SSIM with torchmetrics' defaults
  (Gaussian 11 x 11, sigma 1.5), LPIPS with SqueezeNet on inputs in [-1, 1].
  NaN when ``1 - mask`` is all zero (the mask covers everything).
- ``clip_similarity_source_image`` (source image vs source prompt),
  ``clip_similarity_target_image`` (edited image vs target prompt),
  ``clip_similarity_target_image_edit_part`` (edited image x mask vs target prompt,
  NaN when the mask is empty): torchmetrics' CLIPScore, ``max(100 cos, 0)``.

PSNR of identical images is ``inf``, as in the benchmark (no cap).

Networks are never downloaded: each comes from an explicit local folder or file
(:meth:`Metrics.from_paths`); a metric whose network is not given is skipped and
:attr:`Metrics.skipped` says which network was missing. PSNR, MSE and SSIM need
no weights and always run.

LPIPS: the benchmark uses torchmetrics' ``LearnedPerceptualImagePatchSimilarity(
net_type='squeeze')``, whose backbone comes from torchvision (not usable here).
:class:`SqueezeLpips` re-implements the same computation in plain torch: a
SqueezeNet 1.1 ``features`` stack laid out like torchvision's, so torchvision's
state dict (``squeezenet1_1-b8a52dc0.pth``) loads as is, plus the LPIPS linear
layers (by default the ``squeeze.pth`` file shipped inside the torchmetrics wheel).

Sets with the exact target image (``promptedit.world.pie``) also get
``psnr_target``, ``psnr_target_edit_part`` and ``psnr_target_unedit_part``: PSNR
to the true target over the whole image, inside and outside the annotated mask
(mean over the region's pixels only, unlike the benchmark's zero-filled masks).
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelLoadError, ParameterError
from ..images.metrics import psnr
from .data import EDITING_TYPES, PieItem, load_source, load_target

#: The benchmark's default metrics (``evaluate.py`` ``--metrics`` default), in order.
BENCHMARK_METRICS: tuple[str, ...] = (
    "structure_distance",
    "psnr_unedit_part",
    "lpips_unedit_part",
    "mse_unedit_part",
    "ssim_unedit_part",
    "clip_similarity_source_image",
    "clip_similarity_target_image",
    "clip_similarity_target_image_edit_part",
)
#: Ground-truth figures for sets that carry the exact target image.
TARGET_METRICS: tuple[str, ...] = ("psnr_target", "psnr_target_edit_part", "psnr_target_unedit_part")
#: Which network each metric needs.
NETWORK_OF: Mapping[str, str] = {
    "structure_distance": "dino",
    "lpips_unedit_part": "lpips",
    "clip_similarity_source_image": "clip",
    "clip_similarity_target_image": "clip",
    "clip_similarity_target_image_edit_part": "clip",
}
NETWORK_NAMES: Mapping[str, str] = {
    "dino": "DINO ViT-B/8 (transformers folder)",
    "clip": "CLIP (transformers folder; the benchmark uses openai/clip-vit-large-patch14)",
    "lpips": "LPIPS SqueezeNet 1.1 backbone (torchvision state dict)",
}
#: Factors the paper's tables print the metrics with (Table 1 of the PnP Inversion paper).
DISPLAY_SCALE: Mapping[str, float] = {
    "structure_distance": 1e3,
    "lpips_unedit_part": 1e3,
    "mse_unedit_part": 1e4,
    "ssim_unedit_part": 1e2,
}
#: Whether higher is better, for the report.
HIGHER_IS_BETTER: Mapping[str, bool] = {
    "structure_distance": False,
    "psnr_unedit_part": True,
    "lpips_unedit_part": False,
    "mse_unedit_part": False,
    "ssim_unedit_part": True,
    "clip_similarity_source_image": True,
    "clip_similarity_target_image": True,
    "clip_similarity_target_image_edit_part": True,
    "psnr_target": True,
    "psnr_target_edit_part": True,
    "psnr_target_unedit_part": True,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_SHORT_SIDE = 224  # LossG cfg 'dino_global_patch_size'
DINO_MAX_SIZE = 480  # Resize(..., max_size=480)
#: torchvision 0.13 (the benchmark's pinned version) resizes tensors without antialias.
DINO_ANTIALIAS = False
NAN = float("nan")


# --- Image helpers ------------------------------------------------------------------------


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    for name, x in (("first", a), ("second", b)):
        if x.ndim != 3 or x.shape[2] != 3:
            raise ParameterError(f"the {name} image is {x.shape}, expected (H, W, 3)")
    if a.shape != b.shape:
        raise ParameterError(f"image shapes differ: {a.shape} and {b.shape}")


def _check_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ParameterError(f"mask is {mask.shape}, image is {image.shape[:2]}")
    return mask


def _unit_tensor(image: np.ndarray, keep: np.ndarray | None) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1], multiplied by ``keep`` as the benchmark does."""
    x = np.asarray(image).astype(np.float32) / 255
    if keep is not None:
        x = x * keep.astype(np.float32)[..., None]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).unsqueeze(0)


def _pair(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = np.asarray(a), np.asarray(b)
    _check_pair(a, b)
    if keep is not None:
        keep = _check_mask(keep, a)
    return _unit_tensor(a, keep), _unit_tensor(b, keep)


# --- Metrics without weights ----------------------------------------------------------------


def zero_filled_psnr(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> float:
    """``calculate_psnr``: PSNR (data range 1) of the images in [0, 1], each x ``keep`` (the pixels outside
    ``keep`` set to 0 and still counted, unlike :func:`promptedit.images.metrics.psnr`), by torchmetrics in float32."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y = _pair(a, b, keep)
    return float(peak_signal_noise_ratio(x, y, data_range=1.0))


def mse(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> float:
    """``calculate_mse``: mean squared error of the images in [0, 1] over all H x W x 3 values."""
    from torchmetrics.functional.regression import mean_squared_error

    x, y = _pair(a, b, keep)
    return float(mean_squared_error(x[0].contiguous(), y[0].contiguous()))


def ssim(a: np.ndarray, b: np.ndarray, keep: np.ndarray | None = None) -> float:
    """``calculate_ssim``: torchmetrics SSIM with data range 1 and its defaults."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _pair(a, b, keep)
    return float(structural_similarity_index_measure(x, y, data_range=1.0))


def _unedited(fn: Callable[..., float], source: np.ndarray, edited: np.ndarray, mask: np.ndarray, *args) -> float:
    mask = _check_mask(mask, np.asarray(source))
    keep = ~mask
    if not keep.any():  # evaluate.py: (1-src_mask).sum()==0 -> "nan"
        return NAN
    return fn(source, edited, keep, *args)


def unedited_psnr(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """``psnr_unedit_part``; NaN when the mask covers everything."""
    return _unedited(zero_filled_psnr, source, edited, mask)


def unedited_mse(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """``mse_unedit_part``; NaN when the mask covers everything."""
    return _unedited(mse, source, edited, mask)


def unedited_ssim(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """``ssim_unedit_part``; NaN when the mask covers everything."""
    return _unedited(ssim, source, edited, mask)


def region_psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """:func:`promptedit.images.metrics.psnr` over the pixels of ``region`` only (all pixels if None), checked:
    ``inf`` for equal pixels, NaN for an empty region. Used for the ground-truth figures."""
    a, b = np.asarray(a), np.asarray(b)
    _check_pair(a, b)
    if region is not None:
        region = _check_mask(region, a)
    value = psnr(a, b, region)
    return NAN if value is None else value


def target_psnr(edited: np.ndarray, target: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """Ground-truth figures: PSNR of the edited image to the exact target, whole,
    inside ``region`` (the annotated edit) and outside it."""
    region = _check_mask(region, np.asarray(edited))
    return {
        "psnr_target": region_psnr(edited, target),
        "psnr_target_edit_part": region_psnr(edited, target, region),
        "psnr_target_unedit_part": region_psnr(edited, target, ~region),
    }


# --- LPIPS (SqueezeNet) -------------------------------------------------------------------------


class _Fire(nn.Module):
    """torchvision's SqueezeNet Fire module (same parameter names)."""

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1)


def squeezenet1_1_features() -> nn.Sequential:
    """SqueezeNet 1.1's ``features`` with torchvision's layout (indices 0..12)."""
    pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, stride=2),
        nn.ReLU(),
        pool(),
        _Fire(64, 16, 64, 64),
        _Fire(128, 16, 64, 64),
        pool(),
        _Fire(128, 32, 128, 128),
        _Fire(256, 32, 128, 128),
        pool(),
        _Fire(256, 48, 192, 192),
        _Fire(384, 48, 192, 192),
        _Fire(384, 64, 256, 256),
        _Fire(512, 64, 256, 256),
    )


#: LPIPS taps SqueezeNet after these feature indices (torchmetrics/lpips ``SqueezeNet`` slices).
_SQUEEZE_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13))
_SQUEEZE_CHANNELS = (64, 128, 256, 384, 384, 512, 512)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    data = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise ValueError("not a state dict")
    return dict(data)


def default_lpips_linear() -> Path | None:
    """The LPIPS ``squeeze.pth`` linear weights shipped in the torchmetrics wheel, if installed."""
    try:
        import torchmetrics.functional.image.lpips as tm_lpips
    except ImportError:  # pragma: no cover
        return None
    path = Path(inspect.getfile(tm_lpips)).parent / "lpips_models" / "squeeze.pth"
    return path if path.is_file() else None


class SqueezeLpips(nn.Module):
    """LPIPS with the SqueezeNet 1.1 backbone, computed as torchmetrics 1.x does.

    Inputs in [-1, 1] are shifted and scaled (shift -0.030, -0.088, -0.188; scale
    0.458, 0.448, 0.450), the 7 feature maps are unit-normalised over channels
    (``x / sqrt(1e-8 + sum x^2)``), squared differences weighted by the 1 x 1 linear
    layers (no bias), averaged over space and summed over layers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = squeezenet1_1_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _SQUEEZE_CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def load_backbone(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load torchvision's SqueezeNet 1.1 state dict (``features.N...``; ``classifier.*`` ignored)."""
        own = self.features.state_dict()
        picked = {}
        for key in own:
            for candidate in (f"features.{key}", key):
                if candidate in state:
                    picked[key] = state[candidate]
                    break
            else:
                raise KeyError(f"features.{key}")
        self.features.load_state_dict(picked)

    def load_linear(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load LPIPS linear layers (``linK.model.1.weight``, as in lpips / torchmetrics files)."""
        for k, lin in enumerate(self.lins):
            for candidate in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight", f"lins.{k}.weight"):
                if candidate in state:
                    lin.weight.copy_(state[candidate].reshape(lin.weight.shape))
                    break
            else:
                raise KeyError(f"lin{k}.model.1.weight")

    @classmethod
    def from_files(cls, backbone: str | os.PathLike, linear: str | os.PathLike | None = None) -> "SqueezeLpips":
        """Build from a torchvision SqueezeNet 1.1 state dict and LPIPS linear weights
        (default: torchmetrics' shipped ``squeeze.pth``). Raises ModelLoadError."""
        net = cls()
        linear = Path(linear) if linear is not None else default_lpips_linear()
        if linear is None:
            raise ModelLoadError("no LPIPS linear weights given and torchmetrics' squeeze.pth is not installed")
        for kind, path, load in (("backbone", Path(backbone), net.load_backbone), ("linear layers", linear, net.load_linear)):
            if not path.is_file():
                raise ModelLoadError(f"{path}: LPIPS {kind} file not found")
            try:
                with torch.no_grad():
                    load(_read_state_dict(path))
            except KeyError as exc:
                raise ModelLoadError(f"{path}: not an LPIPS SqueezeNet {kind} file (no {exc.args[0]!r})") from None
            except Exception as exc:  # noqa: BLE001 - any unreadable file is a load error
                raise ModelLoadError(f"{path}: cannot read the LPIPS {kind} ({exc.__class__.__name__})") from None
        return net

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS of (N, 3, H, W) inputs in [-1, 1]; returns (N,)."""
        x, y = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device)
        for (lo, hi), lin in zip(_SQUEEZE_SLICES, self.lins):
            for i in range(lo, hi):
                x, y = self.features[i](x), self.features[i](y)
            fx = x / torch.sqrt(1e-8 + (x**2).sum(1, keepdim=True))
            fy = y / torch.sqrt(1e-8 + (y**2).sum(1, keepdim=True))
            total = total + lin((fx - fy) ** 2).mean((2, 3))[:, 0]
        return total


def lpips(a: np.ndarray, b: np.ndarray, net: SqueezeLpips, keep: np.ndarray | None = None) -> float:
    """``calculate_lpips``: images in [0, 1] x ``keep``, mapped to [-1, 1], LPIPS-squeeze."""
    x, y = _pair(a, b, keep)
    device = next(net.parameters()).device
    return float(net(x.to(device) * 2 - 1, y.to(device) * 2 - 1)[0])


def unedited_lpips(source: np.ndarray, edited: np.ndarray, mask: np.ndarray, net: SqueezeLpips) -> float:
    """``lpips_unedit_part``; NaN when the mask covers everything."""
    return _unedited(lambda a, b, keep: lpips(a, b, net, keep), source, edited, mask)


# --- Structure distance (DINO) ----------------------------------------------------------------


def dino_size(h: int, w: int, short: int = DINO_SHORT_SIDE, max_size: int = DINO_MAX_SIZE) -> tuple[int, int]:
    """Output (H, W) of torchvision ``Resize(short, max_size=max_size)`` for an (h, w) image."""
    s, l = (w, h) if w <= h else (h, w)
    new_s, new_l = short, int(short * l / s)
    if new_l > max_size:
        new_s, new_l = int(max_size * new_s / new_l), max_size
    return (new_l, new_s) if w <= h else (new_s, new_l)


def _last_key_projection(model: nn.Module) -> nn.Module:
    """The key projection of a ViT's last block (``k_proj`` in transformers 5, ``key`` in 4)."""
    found = [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.split(".")[-1] in ("k_proj", "key")]
    if not found:
        raise ModelLoadError(f"{type(model).__name__} has no attention key projection (k_proj / key)")
    return found[-1]


class DinoStructure:
    """Structure distance of the benchmark (``LossG.calculate_global_ssim_loss``) on a
    transformers ViT holding DINO ViT-B/8 weights (e.g. ``facebook/dino-vitb8``)."""

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.key_layer = _last_key_projection(model)
        self.image_size = getattr(getattr(model, "config", None), "image_size", None)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "DinoStructure":
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"{path}: DINO folder not found")
        try:
            from transformers import ViTModel

            model = ViTModel.from_pretrained(str(path), local_files_only=True, add_pooling_layer=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{path}: cannot load a ViT (DINO) model ({exc.__class__.__name__})") from None
        return cls(model, device)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """(1, 3, h, w): float 0..255 (as the benchmark, not /255), resized, ImageNet-normalised."""
        x = torch.from_numpy(np.asarray(image).astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
        h, w = dino_size(x.shape[2], x.shape[3])
        if (h, w) != tuple(x.shape[2:]):
            x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=DINO_ANTIALIAS)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    @torch.no_grad()
    def keys(self, image: np.ndarray) -> torch.Tensor:
        """Last block's keys of all tokens, heads concatenated: (T, D)."""
        x = self.preprocess(image)
        store: list[torch.Tensor] = []
        handle = self.key_layer.register_forward_hook(lambda _m, _i, out: store.append(out))
        try:
            kwargs = {}
            if self.image_size is not None and tuple(x.shape[2:]) != (self.image_size, self.image_size):
                kwargs["interpolate_pos_encoding"] = True
            self.model(pixel_values=x, **kwargs)
        finally:
            handle.remove()
        return store[-1][0].float()

    def self_similarity(self, image: np.ndarray, eps: float = 1e-8) -> torch.Tensor:
        """Cosine self-similarity of the keys, (T, T); norms' product clamped at ``eps``."""
        k = self.keys(image)
        norm = k.norm(dim=1, keepdim=True)
        return (k @ k.T) / torch.clamp(norm @ norm.T, min=eps)

    def distance(self, source: np.ndarray, edited: np.ndarray) -> float:
        a, b = np.asarray(source), np.asarray(edited)
        _check_pair(a, b)
        return float(torch.nn.functional.mse_loss(self.self_similarity(b), self.self_similarity(a)))


def structure_distance(source: np.ndarray, edited: np.ndarray, dino: DinoStructure) -> float:
    """``structure_distance``: whole images, no mask."""
    return dino.distance(source, edited)


# --- CLIP ------------------------------------------------------------------------------------------


def _embedding(out: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose
    ``pooler_output`` holds the projected embedding (transformers 5)."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"cannot find an embedding in {type(out).__name__}")
    return pooled


class ClipScorer:
    """torchmetrics' CLIPScore (``_clip_score_update``) with a local CLIP:
    ``max(100 * cos(image embedding, text embedding), 0)``; the text is tokenised with
    padding and cut to the text model's ``max_position_embeddings``."""

    def __init__(self, model: nn.Module, tokenizer: Any, image_processor: Any, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "ClipScorer":
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"{path}: CLIP folder not found")
        try:
            from transformers import AutoTokenizer, CLIPModel

            try:
                from transformers import CLIPImageProcessorPil as processor_class  # transformers 5, no torchvision
            except ImportError:  # pragma: no cover - transformers 4
                from transformers import CLIPImageProcessor as processor_class
            model = CLIPModel.from_pretrained(str(path), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            image_processor = processor_class.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{path}: cannot load a CLIP model ({exc.__class__.__name__})") from None
        return cls(model, tokenizer, image_processor, device)

    @torch.no_grad()
    def score(self, image: np.ndarray, text: str) -> float:
        chw = torch.from_numpy(np.ascontiguousarray(np.asarray(image, dtype=np.uint8))).permute(2, 0, 1)
        pixels = self.image_processor(images=[chw], return_tensors="pt")["pixel_values"].to(self.device)
        tokens = self.tokenizer([text], padding=True, return_tensors="pt")
        ids, attention = tokens["input_ids"], tokens["attention_mask"]
        text_config = getattr(self.model.config, "text_config", None)
        limit = getattr(text_config, "max_position_embeddings", None)
        if limit is not None and ids.shape[-1] > limit:
            ids, attention = ids[..., :limit], attention[..., :limit]
        img = _embedding(self.model.get_image_features(pixel_values=pixels))
        txt = _embedding(self.model.get_text_features(input_ids=ids.to(self.device), attention_mask=attention.to(self.device)))
        img = img / img.norm(p=2, dim=-1, keepdim=True)
        txt = txt / txt.norm(p=2, dim=-1, keepdim=True)
        return max(float(100 * (img * txt).sum(-1)[0]), 0.0)


def clip_similarity(image: np.ndarray, prompt: str, clip: ClipScorer, mask: np.ndarray | None = None) -> float:
    """``calculate_clip_similarity``: CLIP score of ``image`` (x ``mask`` if given:
    pixels outside set to 0) with ``prompt``. NaN for an empty mask."""
    image = np.asarray(image, dtype=np.uint8)
    if mask is not None:
        mask = _check_mask(mask, image)
        if not mask.any():
            return NAN
        image = np.where(mask[..., None], image, 0).astype(np.uint8)
    return clip.score(image, prompt)


# --- All metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    """Metric values of one item (NaN where the benchmark writes "nan")."""

    id: str
    type_id: int
    values: Mapping[str, float]


class Metrics:
    """The benchmark's metrics with whichever networks were given.

    Args:
        dino, clip, lpips: the networks, or None to skip their metrics.
        metrics: which metrics to compute (default: :data:`BENCHMARK_METRICS`).
    """

    def __init__(
        self,
        *,
        dino: DinoStructure | None = None,
        clip: ClipScorer | None = None,
        lpips: SqueezeLpips | None = None,
        metrics: Sequence[str] = BENCHMARK_METRICS,
    ):
        unknown = [m for m in metrics if m not in BENCHMARK_METRICS]
        if unknown:
            raise ParameterError(f"unknown metric {unknown[0]!r}; expected one of {', '.join(BENCHMARK_METRICS)}")
        self.dino, self.clip, self.lpips = dino, clip, lpips
        self.requested = tuple(metrics)
        have = {"dino": dino is not None, "clip": clip is not None, "lpips": lpips is not None}
        #: metric -> why it is skipped ("no ... given").
        self.skipped: dict[str, str] = {
            m: f"no {NETWORK_NAMES[NETWORK_OF[m]]} given"
            for m in self.requested
            if m in NETWORK_OF and not have[NETWORK_OF[m]]
        }
        self.metrics = tuple(m for m in self.requested if m not in self.skipped)

    @classmethod
    def from_paths(
        cls,
        *,
        dino: str | os.PathLike | None = None,
        clip: str | os.PathLike | None = None,
        lpips_backbone: str | os.PathLike | None = None,
        lpips_linear: str | os.PathLike | None = None,
        device: str = "cpu",
        metrics: Sequence[str] = BENCHMARK_METRICS,
    ) -> "Metrics":
        """Load the networks that are given from local paths (never downloads).

        Raises:
            ModelLoadError: a path is given but is missing or holds no such network.
        """
        lp = None
        if lpips_backbone is not None:
            lp = SqueezeLpips.from_files(lpips_backbone, lpips_linear).to(device)
        return cls(
            dino=DinoStructure.from_pretrained(dino, device) if dino is not None else None,
            clip=ClipScorer.from_pretrained(clip, device) if clip is not None else None,
            lpips=lp,
            metrics=metrics,
        )

    @property
    def missing_networks(self) -> dict[str, str]:
        """Network -> description, for the networks some requested metric lacks."""
        return {NETWORK_OF[m]: NETWORK_NAMES[NETWORK_OF[m]] for m in self.skipped}

    def compute(
        self,
        source: np.ndarray,
        edited: np.ndarray,
        mask: np.ndarray,
        source_prompt: str = "",
        target_prompt: str = "",
        *,
        target: np.ndarray | None = None,
        region: np.ndarray | None = None,
    ) -> dict[str, float]:
        """All available metrics of one edit (``evaluate.py`` ``calculate_metric``).

        ``mask`` is the benchmark's decoded mask; with ``target`` (the exact edit
        result) the ground-truth PSNRs are added, inside/outside ``region``
        (default ``mask``).
        """
        source, edited = np.asarray(source, dtype=np.uint8), np.asarray(edited, dtype=np.uint8)
        _check_pair(source, edited)
        mask = _check_mask(mask, source)
        out: dict[str, float] = {}
        for m in self.metrics:
            if m == "structure_distance":
                out[m] = structure_distance(source, edited, self.dino)
            elif m == "psnr_unedit_part":
                out[m] = unedited_psnr(source, edited, mask)
            elif m == "lpips_unedit_part":
                out[m] = unedited_lpips(source, edited, mask, self.lpips)
            elif m == "mse_unedit_part":
                out[m] = unedited_mse(source, edited, mask)
            elif m == "ssim_unedit_part":
                out[m] = unedited_ssim(source, edited, mask)
            elif m == "clip_similarity_source_image":
                out[m] = clip_similarity(source, source_prompt, self.clip)
            elif m == "clip_similarity_target_image":
                out[m] = clip_similarity(edited, target_prompt, self.clip)
            elif m == "clip_similarity_target_image_edit_part":
                out[m] = clip_similarity(edited, target_prompt, self.clip, mask)
        if target is not None:
            target = np.asarray(target, dtype=np.uint8)
            _check_pair(edited, target)
            out.update(target_psnr(edited, target, mask if region is None else region))
        return out

    def evaluate_item(
        self,
        item: PieItem,
        edited: np.ndarray,
        *,
        source: np.ndarray | None = None,
        target: np.ndarray | None = None,
        extra: Mapping[str, Callable[[PieItem, np.ndarray], float]] | None = None,
    ) -> ItemResult:
        """Metrics of ``edited`` for a PIE item. Source (and, for sets that carry it,
        the exact target) are loaded from the item's paths unless given; ``extra``
        adds named per-item measures (e.g. the shapes world's reader check)."""
        src = load_source(item) if source is None else source
        tgt = target if target is not None else (load_target(item) if item.target_image_path else None)
        values = self.compute(
            src, edited, item.mask, item.source_prompt, item.target_prompt, target=tgt, region=item.annotated_mask
        )
        for name, fn in (extra or {}).items():
            values[name] = float(fn(item, edited))
        return ItemResult(item.id, item.type_id, values)

    def evaluate(
        self,
        items: Iterable[PieItem],
        edited: Callable[[PieItem], np.ndarray],
        *,
        extra: Mapping[str, Callable[[PieItem, np.ndarray], float]] | None = None,
        progress: Callable[[PieItem], None] | None = None,
    ) -> list[ItemResult]:
        """Evaluate every item; ``edited(item)`` returns the method's output for it
        (e.g. ``lambda it: pie.load_output(folder, it)``)."""
        results = []
        for item in items:
            results.append(self.evaluate_item(item, edited(item), extra=extra))
            if progress is not None:
                progress(item)
        return results


# --- Aggregation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupMeans:
    """Means of one group of items. ``counts``: values averaged (not NaN); ``nans``: NaN values; ``exact``:
    infinite values (PSNR of parts equal to the pixel), which make a mean ``inf``; ``finite_means``: the mean of
    the other values, so that such a mean still says something."""

    n_items: int
    means: Mapping[str, float]
    counts: Mapping[str, int]
    nans: Mapping[str, int]
    exact: Mapping[str, int] = field(default_factory=dict)
    finite_means: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Aggregate:
    metrics: tuple[str, ...]
    per_type: Mapping[int, GroupMeans]
    overall: GroupMeans
    skipped: Mapping[str, str] = field(default_factory=dict)


def _group_means(results: Sequence[ItemResult], metrics: Sequence[str]) -> GroupMeans:
    means, counts, nans, exact, finite_means = {}, {}, {}, {}, {}
    for m in metrics:
        vals = np.array([r.values[m] for r in results if m in r.values], dtype=np.float64)
        ok = vals[~np.isnan(vals)]
        means[m] = float(ok.mean()) if ok.size else NAN
        counts[m] = int(ok.size)
        nans[m] = int(vals.size - ok.size)
        finite = ok[np.isfinite(ok)]
        exact[m] = int(ok.size - finite.size)
        finite_means[m] = float(finite.mean()) if finite.size else NAN
    return GroupMeans(len(results), means, counts, nans, exact, finite_means)


def aggregate(
    results: Sequence[ItemResult], metrics: Sequence[str] | None = None, skipped: Mapping[str, str] | None = None
) -> Aggregate:
    """Mean of each metric per editing type and over all items.

    The benchmark's ``evaluate.py`` writes one CSV row per image ("nan" where a
    metric is undefined) and the paper reports means over the images; here a NaN
    is left out of its mean (and counted in ``nans``), the overall mean pools all
    items (so types weigh by their number of images, as in the paper's whole-set
    numbers), a group whose values are all NaN has a NaN mean, and ``inf`` (PSNR of
    identical images) is kept, so it makes its mean ``inf``.
    """
    if metrics is None:
        seen: dict[str, None] = {}
        for r in results:
            for m in r.values:
                seen.setdefault(m, None)
        order = list(BENCHMARK_METRICS) + list(TARGET_METRICS)
        metrics = sorted(seen, key=lambda m: (order.index(m) if m in order else len(order), m))
    metrics = tuple(metrics)
    per_type = {
        t: _group_means([r for r in results if r.type_id == t], metrics)
        for t in sorted({r.type_id for r in results})
    }
    return Aggregate(metrics, per_type, _group_means(list(results), metrics), dict(skipped or {}))


# --- Report ----------------------------------------------------------------------------------------


def _json_float(x: float) -> float | str | None:
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _fmt(x: float, scale: float = 1.0) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x * scale:.2f}"


def _column(m: str, ascii_only: bool = False) -> str:
    scale = DISPLAY_SCALE.get(m, 1.0)
    times, up, down = ("x", " (higher is better)", " (lower is better)") if ascii_only else ("×", " ↑", " ↓")
    arrow = {True: up, False: down}.get(HIGHER_IS_BETTER.get(m), "")
    return f"{m}{f' {times}1e{int(round(math.log10(scale)))}' if scale != 1 else ''}{arrow}"


def _as_aggregate(data: Aggregate | Sequence[ItemResult], skipped: Mapping[str, str] | None) -> Aggregate:
    if isinstance(data, Aggregate):
        if skipped:
            return Aggregate(data.metrics, data.per_type, data.overall, {**data.skipped, **skipped})
        return data
    return aggregate(list(data), skipped=skipped)


def report(
    data: Aggregate | Sequence[ItemResult],
    *,
    title: str = "PIE-Bench evaluation",
    skipped: Mapping[str, str] | None = None,
    include_items: bool = True,
    notes: Sequence[str] = (),
) -> tuple[str, dict[str, Any]]:
    """Markdown text and a JSON-able dict of the aggregated results; ``notes`` (e.g. which items were left out
    and why) are printed under the table.

    In the dict, NaN is ``None`` and infinity the string ``"inf"``; values are raw
    (not scaled). The Markdown table prints them with the paper's scales.
    """
    agg = _as_aggregate(data, skipped)
    items = [] if isinstance(data, Aggregate) or not include_items else list(data)
    lines = [f"# {title}", ""]
    head = ["editing type", "n"] + [_column(m) for m in agg.metrics]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")

    def cell(s: GroupMeans, m: str) -> str:
        text = _fmt(s.means[m], DISPLAY_SCALE.get(m, 1.0))
        if math.isinf(s.means[m]) and s.exact.get(m):  # say how many were exact, and what the others averaged
            text += f" ({s.exact[m]} exact; others {_fmt(s.finite_means[m], DISPLAY_SCALE.get(m, 1.0))})"
        return text

    def row(name: str, s: GroupMeans) -> str:
        return "| " + " | ".join([name, str(s.n_items)] + [cell(s, m) for m in agg.metrics]) + " |"

    for t, s in agg.per_type.items():
        lines.append(row(f"{t} {EDITING_TYPES.get(t, '?')}", s))
    lines.append(row("**all**", agg.overall))
    if any(agg.overall.exact.get(m) for m in agg.metrics):
        lines += ["", "inf: a PSNR of parts equal to the pixel, as the benchmark computes it (no cap); such a mean "
                  "says how many items were exact and what the others averaged."]
    nan_notes = [f"{m}: {agg.overall.nans[m]}" for m in agg.metrics if agg.overall.nans[m]]
    if nan_notes:
        lines += ["", "NaN values left out of the means (a part with no pixels, e.g. a mask covering the whole image): "
                  + ", ".join(nan_notes) + "."]
    if notes:
        lines += [""] + [f"Note: {n}." for n in notes]
    if agg.skipped:
        lines += ["", "Skipped metrics:"] + [f"- {m}: {why}" for m, why in agg.skipped.items()]
    text = "\n".join(lines) + "\n"

    def summary_dict(s: GroupMeans) -> dict[str, Any]:
        return {
            "n_items": s.n_items,
            "means": {m: _json_float(s.means[m]) for m in agg.metrics},
            "counts": dict(s.counts),
            "nans": dict(s.nans),
            "exact": dict(s.exact),
            "finite_means": {m: _json_float(v) for m, v in s.finite_means.items()},
        }

    out: dict[str, Any] = {
        "title": title,
        "metrics": list(agg.metrics),
        "display_scale": {m: DISPLAY_SCALE.get(m, 1.0) for m in agg.metrics},
        "per_type": {
            str(t): {"name": EDITING_TYPES.get(t, "?"), **summary_dict(s)} for t, s in agg.per_type.items()
        },
        "overall": summary_dict(agg.overall),
        "skipped": dict(agg.skipped),
    }
    if items:
        out["items"] = [
            {"id": r.id, "editing_type_id": r.type_id, **{m: _json_float(v) for m, v in r.values.items()}} for r in items
        ]
    return text, out


def plot(
    data: Aggregate | Sequence[ItemResult],
    metrics: Sequence[str] | None = None,
    *,
    panel_size: tuple[int, int] = (420, 260),
    columns: int = 2,
):
    """A PNG-ready bar chart (PIL image, drawn with Pillow alone): one panel per metric,
    one bar per editing type plus the overall mean (darker). NaN bars are left empty
    and labelled "nan"; an infinite mean is drawn at the panel's top and labelled "inf"."""
    from PIL import Image, ImageDraw, ImageFont

    agg = _as_aggregate(data, None)
    metrics = tuple(metrics) if metrics is not None else agg.metrics
    if not metrics:
        raise ParameterError("nothing to plot: no metric values")
    groups = [(str(t), agg.per_type[t]) for t in agg.per_type] + [("all", agg.overall)]
    pw, ph = panel_size
    cols = max(1, min(columns, len(metrics)))
    rows = math.ceil(len(metrics) / cols)
    img = Image.new("RGB", (cols * pw, rows * ph), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    palette = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188),
               (0, 172, 193), (255, 112, 67), (158, 157, 36), (92, 107, 192), (240, 98, 146)]
    for k, m in enumerate(metrics):
        ox, oy = (k % cols) * pw, (k // cols) * ph
        scale = DISPLAY_SCALE.get(m, 1.0)
        draw.text((ox + 8, oy + 6), _column(m, ascii_only=True), fill="black", font=font)
        left, right, top, bottom = ox + 40, ox + pw - 10, oy + 28, oy + ph - 36
        vals = [s.means.get(m, NAN) * scale for _, s in groups]
        finite = [v for v in vals if math.isfinite(v)]
        hi = max([0.0] + finite)
        lo = min([0.0] + finite)
        if hi == lo:
            hi = lo + 1.0
        y_of = lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top)  # noqa: E731
        draw.line([(left, y_of(0.0)), (right, y_of(0.0))], fill=(120, 120, 120))
        draw.line([(left, top), (left, bottom)], fill=(120, 120, 120))
        draw.text((ox + 2, top - 4), f"{hi:.3g}", fill=(90, 90, 90), font=font)
        if lo < 0:
            draw.text((ox + 2, bottom - 8), f"{lo:.3g}", fill=(90, 90, 90), font=font)
        slot = (right - left) / len(groups)
        for i, ((name, _), v) in enumerate(zip(groups, vals)):
            x0 = left + i * slot + slot * 0.15
            x1 = left + (i + 1) * slot - slot * 0.15
            colour = (60, 60, 60) if name == "all" else palette[int(name) % len(palette)]
            if math.isnan(v):
                label = "nan"
            else:
                vv = hi if math.isinf(v) else v
                y0, y1 = sorted((y_of(0.0), y_of(vv)))
                draw.rectangle([x0, y0, x1, max(y1, y0 + 1)], fill=colour)
                label = "inf" if math.isinf(v) else f"{v:.3g}"
            draw.text((x0, bottom + 4), name, fill="black", font=font)
            draw.text((x0, bottom + 18), label, fill=(90, 90, 90), font=font)
    return img


__all__ = [
    "BENCHMARK_METRICS",
    "TARGET_METRICS",
    "DISPLAY_SCALE",
    "Aggregate",
    "ClipScorer",
    "DinoStructure",
    "GroupMeans",
    "ItemResult",
    "Metrics",
    "SqueezeLpips",
    "aggregate",
    "clip_similarity",
    "dino_size",
    "lpips",
    "mse",
    "plot",
    "region_psnr",
    "report",
    "squeezenet1_1_features",
    "ssim",
    "structure_distance",
    "target_psnr",
    "unedited_lpips",
    "unedited_mse",
    "unedited_psnr",
    "unedited_ssim",
    "zero_filled_psnr",
]
