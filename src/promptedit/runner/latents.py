"""Images ↔ latents: the VAE's encode and decode, its latent scaling, uint8 conversion."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import NumericalError

def _latent_stats(model, like: torch.Tensor):
    """The VAE's per-channel latent mean and std, (1, C, 1, 1), when its config has them (else None)."""
    mean, std = getattr(model.vae.config, "latents_mean", None), getattr(model.vae.config, "latents_std", None)
    if mean is None or std is None:
        return None
    shape = (1, len(mean), 1, 1)
    return (torch.tensor(mean, device=like.device, dtype=like.dtype).view(shape),
            torch.tensor(std, device=like.device, dtype=like.dtype).view(shape))


def scale_latents(model, z: torch.Tensor) -> torch.Tensor:
    """The VAE's latents as the backbone sees them: ((z − mean) / std when configured, z − shift factor when
    configured: FLUX.1's and SD3's VAEs) · scaling factor."""
    stats = _latent_stats(model, z)
    if stats is not None:
        z = (z - stats[0]) / stats[1]
    shift = getattr(model.vae.config, "shift_factor", None)
    if shift is not None:
        z = z - shift
    return z * getattr(model.vae.config, "scaling_factor", 1.0)


def unscale_latents(model, x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`scale_latents` (what the VAE decodes)."""
    x = x / getattr(model.vae.config, "scaling_factor", 1.0)
    shift = getattr(model.vae.config, "shift_factor", None)
    if shift is not None:
        x = x + shift
    stats = _latent_stats(model, x)
    return x if stats is None else x * stats[1] + stats[0]


@torch.no_grad()
def decode_latents(model, latents: torch.Tensor) -> np.ndarray:
    """VAE decode x_0 → images (n, H, W, 3) float32 in [0, 1].

    The VAE runs in fp32 when its config says ``force_upcast`` (SDXL's VAE overflows in fp16), and a decode that
    gives NaN or Inf in reduced precision is redone in fp32.
    """
    if not bool(torch.isfinite(latents).all()):
        raise NumericalError("the denoising loop gave NaN/Inf latents: the guidance scale is too large for the "
                             "model's precision, or its weights are broken")
    latents = unscale_latents(model, latents)
    vae_dtype = next(model.vae.parameters(), torch.empty(0, dtype=model.dtype)).dtype
    upcast = vae_dtype != torch.float32 and bool(getattr(model.vae.config, "force_upcast", False))

    def decode_fp32():
        model.vae.to(torch.float32)
        try:
            return model.vae.decode(latents.float()).sample
        finally:
            model.vae.to(vae_dtype)

    if upcast:
        images = decode_fp32()
    else:
        images = model.vae.decode(latents.to(vae_dtype)).sample
        if not torch.isfinite(images).all() and vae_dtype != torch.float32:
            warnings.warn("decoded image had NaN/Inf in reduced precision; decoding again in fp32", RuntimeWarning,
                          stacklevel=2)
            images = decode_fp32()
    if not bool(torch.isfinite(images).all()):
        raise NumericalError("the VAE decoded NaN/Inf values in fp32 from finite latents: its weights are broken, "
                             "or the latents are far outside its range (too large a guidance scale)")
    images = (images.float() / 2 + 0.5).clamp(0, 1)
    return images.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode_images(model, images: np.ndarray) -> torch.Tensor:
    """VAE encode images (n, H, W, 3) in [0, 1] → latents z_0 (n, C, h, w) (the posterior mean, scaled)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(model.device, model.dtype)
    vae_dtype = next(model.vae.parameters(), x).dtype
    upcast = vae_dtype != torch.float32 and bool(getattr(model.vae.config, "force_upcast", False))
    if upcast:  # SDXL's VAE overflows in fp16 (its config says so)
        model.vae.to(torch.float32)
    try:
        posterior = model.vae.encode((x * 2 - 1).to(torch.float32 if upcast else vae_dtype)).latent_dist
    finally:
        if upcast:
            model.vae.to(vae_dtype)
    return scale_latents(model, posterior.mean).to(model.dtype)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] → uint8."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
