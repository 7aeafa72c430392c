"""An exact, fixed image codec behind the VAE's encode/decode interface.

The embedded shapes-world model denoises 4×4 patches of pixels: ``encode``
folds each 4×4×3 patch of an image in [-1, 1] into 48 channels (space to depth)
and applies a fixed orthonormal 1×1 transform; ``decode`` inverts both exactly.
Reconstruction is lossless up to float rounding, so no autoencoder error caps
what inversion and editing can reach. It speaks the AutoencoderKL interface the
pipeline uses: ``encode(x).latent_dist.mean / .sample()``, ``decode(z).sample``,
``config.scaling_factor``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


@dataclass
class _Posterior:
    """A deterministic 'distribution': the codec has no noise."""

    mean: torch.Tensor

    def sample(self, generator=None) -> torch.Tensor:
        return self.mean

    def mode(self) -> torch.Tensor:
        return self.mean


@dataclass
class _EncoderOutput:
    latent_dist: _Posterior


@dataclass
class _DecoderOutput:
    sample: torch.Tensor


class PatchCodec(ModelMixin, ConfigMixin):
    """Lossless space-to-depth codec: (B, 3, H, W) in [-1, 1] ↔ (B, 3·p², H/p, W/p).

    Args:
        patch_size: p, the side of a patch (the codec's downsampling factor).
        in_channels: image channels.
        scaling_factor: latents are multiplied by this after encoding (as SD's VAE).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, patch_size: int = 4, in_channels: int = 3, scaling_factor: float = 1.0,
                 block_out_channels: tuple[int, ...] | None = None, latent_channels: int | None = None):
        super().__init__()
        c = in_channels * patch_size**2  # latent channels: one per pixel value of a patch
        if latent_channels is not None and latent_channels != c:
            raise ValueError(f"a {patch_size}x{patch_size} patch codec of {in_channels} channels has {c} latent "
                             f"channels, not {latent_channels}")
        # diffusers pipelines derive the VAE factor as 2 ** (len(block_out_channels) - 1); keep that true
        if block_out_channels is None:
            self.register_to_config(block_out_channels=(c,) * (patch_size.bit_length()))
        # and pipelines such as DiffEdit read config.latent_channels (derived, so old config files work too;
        # accepted as an argument so that a saved config loads without a warning)
        self.register_to_config(latent_channels=c)
        # fixed orthonormal transform of the patch vector (identity: plain space to depth)
        self.transform = torch.nn.Parameter(torch.eye(c), requires_grad=False)

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        z = F.pixel_unshuffle(x, self.config.patch_size)  # (B, 3·p², H/p, W/p)
        z = torch.einsum("ij,bjhw->bihw", self.transform.to(z.dtype), z)
        return _EncoderOutput(_Posterior(z)) if return_dict else (_Posterior(z),)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None):
        x = torch.einsum("ji,bjhw->bihw", self.transform.to(z.dtype), z)  # transform is orthonormal
        x = F.pixel_shuffle(x, self.config.patch_size)
        return _DecoderOutput(x) if return_dict else (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).latent_dist.mean).sample
