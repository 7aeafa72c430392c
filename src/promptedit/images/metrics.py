"""Image measures shared by every front-end: squared error and PSNR over an optional mask.

Pure numpy on uint8 images (H, W, 3). The house's one PSNR convention (:func:`psnr`): 8-bit peak (255), the mean
squared error taken over the masked pixels only (not over a zero-filled image), in float64; inf for equal pixels
unless capped, None for an empty mask. PIE-Bench's own metrics (its zero-filled PSNR, LPIPS, SSIM, structure
distance, CLIP) are in :mod:`promptedit.pie.evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def squared_error(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Mean squared error between two uint8 images, over ``mask`` (H, W) when given (None for an empty mask)."""
    if mask is None:
        return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    return float(np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2))


def psnr_db(mse: float | None, cap: float | None = None) -> float | None:
    """A mean squared error of uint8 images as PSNR in dB: 10·log10(255² / MSE); infinite for MSE 0, or ``cap``
    when given (so that means stay finite); None stays None."""
    if mse is None:
        return None
    value = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return value if cap is None else min(cap, value)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, cap: float | None = None) -> float | None:
    """PSNR in dB between two uint8 images (H, W, 3), 10·log10(255² / MSE) with the MSE over the pixels of
    ``mask`` (H, W) when given (None for an empty mask); inf for equal pixels, or ``cap`` when given."""
    return psnr_db(squared_error(a, b, mask), cap)


def pooled_psnr(errors: Sequence[float | None], cap: float | None = None) -> float | None:
    """PSNR in dB of the mean of per-item squared errors: unlike a mean of per-item PSNRs, items that are exact
    (infinite PSNR) cannot hide the others' errors."""
    vals = [e for e in errors if e is not None]
    return psnr_db(float(np.mean(vals)), cap) if vals else None
