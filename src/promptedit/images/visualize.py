"""Pictures: image grids with labels, per-token attention heat maps, self-attention components.

Pure array → PIL functions; saving files is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..text.tokens import tokenize

_LABEL_H = 14


def _font():
    return ImageFont.load_default()


def heat_colormap(x: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (h, w) to an RGB heat colour (h, w, 3) uint8 (a jet-like ramp)."""
    x = np.clip(x, 0, 1)[..., None]
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.concatenate([r, g, b], -1) * 255).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a heat map (h, w), any size, normalised to [0, 1], over an image (H, W, 3) uint8."""
    H, W = image.shape[:2]
    heat = heat.astype(np.float32)
    heat = (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-12)
    up = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize((W, H), Image.BILINEAR)) / 255.0
    return (image * (1 - alpha) + heat_colormap(up) * alpha).astype(np.uint8)


def image_grid(images: Sequence[np.ndarray], labels: Sequence[str] | None = None, cols: int | None = None,
               cell: int | None = None) -> Image.Image:
    """Images (H, W, 3) uint8 in a grid, each with a label strip underneath; ``cell`` resizes each image."""
    if not images:
        raise ValueError("no images for a grid")
    cols = cols or len(images)
    rows = (len(images) + cols - 1) // cols
    tiles = [Image.fromarray(np.asarray(im)) for im in images]
    if cell:
        tiles = [t.resize((cell, cell * t.height // t.width), Image.NEAREST) for t in tiles]
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    label_h = _LABEL_H if labels else 0
    grid = Image.new("RGB", (cols * w, rows * (h + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, tile in enumerate(tiles):
        x, y = (i % cols) * w, (i // cols) * (h + label_h)
        grid.paste(tile, (x, y))
        if labels:
            text = labels[i]
            while text and draw.textlength(text, font=_font()) > w - 2:
                text = text[:-2] + "…" if len(text) > 2 else ""
            draw.text((x + 1, y + h + 1), text, fill="black", font=_font())
    return grid


def token_labels(tokenizer, prompt: str) -> list[str]:
    """The decoded tokens of ``prompt``, start and end tokens included (after truncation)."""
    tokens = tokenize(tokenizer, prompt, warn=False)
    ids = list(tokens.ids[: tokens.max_length])
    return [tokenizer.decode([i]).strip() for i in ids]


def cross_attention_grid(
    image: np.ndarray, maps: torch.Tensor | np.ndarray, labels: Sequence[str], *, cell: int = 128,
    skip_special: bool = True, cols: int | None = None,
) -> Image.Image:
    """One heat map per token over the image, labelled: ``maps`` (h, w, keys), ``labels`` the token texts."""
    maps = np.asarray(maps.cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float32)
    idx = list(range(len(labels)))
    if skip_special and len(idx) > 2:
        idx = idx[1:-1]
    tiles = [np.asarray(Image.fromarray(image).resize((cell, cell), Image.BICUBIC))]
    names = ["image"]
    for i in idx:
        tiles.append(overlay(tiles[0], maps[:, :, i]))
        names.append(f"{i}:{labels[i]}")
    return image_grid(tiles, names, cols=cols or min(len(tiles), 8))


def self_attention_components(maps: torch.Tensor | np.ndarray, k: int = 6) -> list[np.ndarray]:
    """The top-``k`` principal components of the self-attention maps (pixels, pixels), as (h, w) images
    (P2P, Fig. 8). ``maps`` is (h, w, pixels)."""
    maps = np.asarray(maps.cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float64)
    h, w, p = maps.shape
    m = maps.reshape(p, p)
    _, _, vh = np.linalg.svd(m - m.mean(axis=1, keepdims=True))
    comps = []
    for i in range(min(k, vh.shape[0])):
        c = vh[i].reshape(h, w)
        comps.append((c - c.min()) / max(c.max() - c.min(), 1e-12))
    return comps


def self_attention_grid(maps, *, k: int = 6, cell: int = 96) -> Image.Image:
    """Grid of the top self-attention components as heat maps."""
    comps = self_attention_components(maps, k)
    tiles = [np.asarray(Image.fromarray(heat_colormap(c)).resize((cell, cell), Image.NEAREST)) for c in comps]
    return image_grid(tiles, [f"component {i + 1}" for i in range(len(tiles))])


def mask_overlay(image: np.ndarray, mask: np.ndarray, dim: float = 0.45) -> np.ndarray:
    """A mask (any size, resized with nearest) shown over an image (H, W, 3): the outside dimmed towards grey and
    the mask's edge drawn as a black-and-white dashed line, so it reads on any colour (a tint would vanish on
    an object of the same colour)."""
    H, W = image.shape[:2]
    m = np.asarray(Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).resize((W, H), Image.NEAREST)) > 127
    out = image.astype(np.float32).copy()
    out[~m] = out[~m] * (1 - dim) + 128 * dim
    pad = np.pad(m, 1, mode="edge")
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    edge = m & ~inner  # the mask's own pixels that touch the outside
    yy, xx = np.nonzero(edge)
    dash = ((yy + xx) // 2) % 2 == 0
    out[yy[dash], xx[dash]] = 0
    out[yy[~dash], xx[~dash]] = 255
    return out.astype(np.uint8)


def mask_tile(mask: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask as a black-and-white image (H, W, 3) uint8: white = inside."""
    m = np.asarray(mask, dtype=np.uint8) * 255
    if size is not None and m.shape != tuple(size):
        m = np.asarray(Image.fromarray(m).resize((size[1], size[0]), Image.NEAREST))
    return np.repeat(m[..., None], 3, axis=2)


def attention_sheet(model, result, *, cell: int = 128) -> np.ndarray:
    """Every branch's cross-attention maps per token (one row each) from a result that recorded them."""
    maps = result.attention.maps(downsample=result.attention_downsample)
    rows = [cross_attention_grid(result.images[i], maps[i], token_labels(model.tokenizer, p), cell=cell)
            for i, p in enumerate(result.prompts)]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    return np.asarray(sheet)
