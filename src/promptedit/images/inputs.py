"""Reading user images: any PNG/JPEG/WebP, mode and size, to RGB at the model's size by a stated rule.

Rule: apply the EXIF orientation; convert to 8-bit RGB (16-bit and 32-bit
greyscale are scaled to 8 bits, palette and greyscale expanded, an alpha channel
composited over white); then ``crop`` (centre crop to the target's aspect ratio,
the default) or ``pad`` (centre pad with white to it); then resize with Lanczos.
Nothing is ever stretched. The rule applied is returned as text for result.json.
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageInputError, PromptEditWarning

FITS = ("crop", "pad")
MAX_PIXELS = 64_000_000  # refuse decompression bombs well before Pillow's own limit


@dataclass(frozen=True)
class PreparedImage:
    """An input image made ready for a model.

    Attributes:
        image: (H, W, 3) uint8 at the model's size.
        original_size: (width, height) as stored, before EXIF rotation.
        original_mode: Pillow mode of the file (``RGB``, ``L``, ``I;16``, ``RGBA`` …).
        rule: what was done, in words.
        oriented_size: (width, height) after the EXIF orientation.
    """

    image: np.ndarray
    original_size: tuple[int, int]
    original_mode: str
    rule: str
    oriented_size: tuple[int, int] | None = None


def _to_rgb(im: Image.Image) -> tuple[Image.Image, list[str]]:
    steps = []
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8), "L")
        steps.append(f"{'16' if top > 255 else '8'}-bit greyscale scaled to 8 bits")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
        steps.append("alpha composited over white")
    elif im.mode != "RGB":
        steps.append(f"{im.mode} converted to RGB")
        im = im.convert("RGB")
    return im, steps


def _orient(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """Apply the EXIF orientation."""
    orientation = im.getexif().get(0x0112, 1)
    if orientation in (1, None):
        return im, []
    return ImageOps.exif_transpose(im), [f"EXIF orientation {orientation} applied"]


def crop_box(image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centre box (left, top, width, height) of an image of (width, height) ``image_size`` with the aspect
    ratio of (width, height) ``size``: what ``crop`` keeps of the image."""
    (W, H), (w, h) = image_size, size
    scale = max(w / W, h / H)
    cw, ch = round(w / scale), round(h / scale)
    return (W - cw) // 2, (H - ch) // 2, cw, ch


def pad_size(image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) ``pad`` brings an image of (width, height) ``image_size`` to (centred) before it is
    resized to (width, height) ``size``."""
    (W, H), (w, h) = image_size, size
    scale = min(w / W, h / H)
    return round(w / scale), round(h / scale)


def _fit(im: Image.Image, size: tuple[int, int], fit: str, *, fill, resample) -> tuple[Image.Image, list[str]]:
    """Bring ``im`` to (height, width) = ``size``: centre crop (``crop``) or centre pad with ``fill`` (``pad``)
    to its aspect ratio, then resize with ``resample``; never stretched."""
    if fit not in FITS:
        raise ImageInputError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    steps = []
    h, w = size
    W, H = im.size
    if (W, H) != (w, h):
        if fit == "crop":
            left, top, cw, ch = crop_box((W, H), (w, h))
            if (cw, ch) != (W, H):
                im = im.crop((left, top, left + cw, top + ch))
                steps.append(f"centre-cropped {W}x{H} to {cw}x{ch}")
        else:
            pw, ph = pad_size((W, H), (w, h))
            if (pw, ph) != (W, H):
                canvas = Image.new(im.mode, (pw, ph), fill)
                canvas.paste(im, ((pw - W) // 2, (ph - H) // 2))
                im = canvas
                steps.append(f"centre-padded {W}x{H} with {'white' if fill == (255, 255, 255) else fill} to {pw}x{ph}")
        if im.size != (w, h):
            steps.append(f"resized {im.size[0]}x{im.size[1]} to {w}x{h} "
                         f"({'Lanczos' if resample == Image.LANCZOS else 'nearest'})")
            im = im.resize((w, h), resample)
    return im, steps


def prepare_image(im: Image.Image, size: tuple[int, int], fit: str = "crop") -> PreparedImage:
    """Convert a Pillow image to RGB (height, width) = ``size`` by the module's rule."""
    if fit not in FITS:
        raise ImageInputError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    original_size, original_mode = im.size, im.mode
    im, steps = _orient(im)
    oriented_size = im.size
    im, conv = _to_rgb(im)
    im, geometry = _fit(im, size, fit, fill=(255, 255, 255), resample=Image.LANCZOS)
    return PreparedImage(np.asarray(im, dtype=np.uint8).copy(), original_size, original_mode,
                         "; ".join(steps + conv + geometry) or "used as is", oriented_size)


def prepare_mask(im: Image.Image, size: tuple[int, int], fit: str = "crop", *,
                 like: tuple[int, int] | None = None, name: str = "mask") -> np.ndarray:
    """A mask image (white = edit) as bool (height, width) = ``size``, by the image rule's steps (EXIF
    orientation; 16-bit scaled, alpha over white; the same crop or pad, padding not edited) and a nearest
    resize, thresholded at half grey. ``like``: the (width, height) of the image it masks, after its EXIF
    orientation; the mask must have its aspect ratio (default: ``size``'s)."""
    im, _ = _orient(im)
    rgb = _to_rgb(im)[0]
    im = rgb.convert("L")
    W, H = im.size
    ref_w, ref_h = like if like is not None else (size[1], size[0])
    if abs(W * ref_h - H * ref_w) > 0.01 * H * ref_w:
        raise ImageInputError(f"{name} is {W}x{H} but the image it masks is {ref_w}x{ref_h}: the mask must have "
                              "the image's shape")
    kind = _not_black_and_white(np.asarray(rgb), np.asarray(im))
    im, _ = _fit(im, size, fit, fill=0, resample=Image.NEAREST)
    mask = np.asarray(im) > 127
    if kind:
        how = "converted to greyscale and thresholded" if kind == "colour" else "thresholded"
        warnings.warn(f"{name} is a {kind} image, not black and white: {how} at half grey (above 127 of 255 is "
                      f"edited), it covers {100 * mask.mean():.0f} % of the image", PromptEditWarning, stacklevel=2)
    return mask


def _not_black_and_white(rgb: np.ndarray, grey: np.ndarray) -> str:
    """``colour`` or ``greyscale`` for a mask that is more than a black-and-white drawing (whose anti-aliased or
    JPEG edges may be grey and tinted); '' for one that is. ``rgb``: (H, W, 3) uint8; ``grey``: (H, W) uint8."""
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)  # (H, W): 0 for a grey pixel
    if (spread > 32).mean() > 0.05:
        return "colour"
    if ((grey > 32) & (grey < 223)).mean() > 0.10:
        return "greyscale"
    return ""


def check_input_file(path: str | os.PathLike, what: str = "image", name: str | None = None) -> Path:
    """An input path that exists and is a regular file (a folder, FIFO or device is refused: reading one could
    hang or read forever); ``name`` replaces the path in messages (e.g. an upload's own file name)."""
    p = Path(path)
    shown = name or str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageInputError(f"{what} {shown} not found") from None
    except OSError as e:
        raise ImageInputError(f"cannot read {what} {shown}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageInputError(f"{what} {shown} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageInputError(f"{what} {shown} is not a regular file")
    if not os.access(p, os.R_OK):
        raise ImageInputError(f"cannot read {what} {shown}: permission denied")
    return p


def open_image(path: str | os.PathLike, *, what: str = "image", name: str | None = None,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and decode an image file, refusing non-files, non-images, truncated files and images of more than
    ``max_pixels`` pixels (checked from the header, before decoding); one-line ImageInputError otherwise.
    Every reader of user images (images, masks, uploads) goes through here."""
    p = check_input_file(path, what, name)
    shown = name or str(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(p)
        try:
            if im.size[0] * im.size[1] > max_pixels:
                raise ImageInputError(f"{what} {shown} is {im.size[0]}x{im.size[1]}: more than {max_pixels:,} pixels")
            im.load()
        except BaseException:
            im.close()
            raise
        return im
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f"{what} {shown} has more than {max_pixels:,} pixels") from None
    except UnidentifiedImageError as e:
        raise ImageInputError(f"{what} {shown} is not an image that can be read ({type(e).__name__})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageInputError(f"cannot read {what} {shown}: {reason}") from None


def load_mask(path: str | os.PathLike, size: tuple[int, int], fit: str = "crop", *,
              like: tuple[int, int] | None = None, name: str | None = None) -> np.ndarray:
    """Read a mask file and prepare it (see :func:`prepare_mask`); one-line ImageInputError otherwise."""
    with open_image(path, what="mask", name=name) as im:
        return prepare_mask(im, size, fit, like=like, name=f"mask {name or path}")


def load_image(path: str | os.PathLike, size: tuple[int, int], fit: str = "crop", *, name: str | None = None
               ) -> PreparedImage:
    """Read an image file and prepare it (see :func:`prepare_image`); one-line ImageInputError otherwise."""
    with open_image(path, name=name) as im:
        return prepare_image(im, size, fit)
