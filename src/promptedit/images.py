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

from .errors import ImageInputError

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
    """

    image: np.ndarray
    original_size: tuple[int, int]
    original_mode: str
    rule: str


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


def prepare_image(im: Image.Image, size: tuple[int, int], fit: str = "crop") -> PreparedImage:
    """Convert a Pillow image to RGB (height, width) = ``size`` by the module's rule."""
    if fit not in FITS:
        raise ImageInputError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    original_size, original_mode = im.size, im.mode
    steps = []
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        steps.append(f"EXIF orientation {orientation} applied")
    im, conv = _to_rgb(im)
    steps += conv
    h, w = size
    W, H = im.size
    if (W, H) != (w, h):
        if fit == "crop":
            scale = max(w / W, h / H)
            cw, ch = round(w / scale), round(h / scale)
            left, top = (W - cw) // 2, (H - ch) // 2
            if (cw, ch) != (W, H):
                im = im.crop((left, top, left + cw, top + ch))
                steps.append(f"centre-cropped {W}x{H} to {cw}x{ch}")
        else:
            scale = min(w / W, h / H)
            pw, ph = round(w / scale), round(h / scale)
            if (pw, ph) != (W, H):
                canvas = Image.new("RGB", (pw, ph), (255, 255, 255))
                canvas.paste(im, ((pw - W) // 2, (ph - H) // 2))
                im = canvas
                steps.append(f"centre-padded {W}x{H} with white to {pw}x{ph}")
        if im.size != (w, h):
            steps.append(f"resized {im.size[0]}x{im.size[1]} to {w}x{h} (Lanczos)")
            im = im.resize((w, h), Image.LANCZOS)
    return PreparedImage(np.asarray(im, dtype=np.uint8).copy(), original_size, original_mode,
                         "; ".join(steps) or "used as is")


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


def load_image(path: str | os.PathLike, size: tuple[int, int], fit: str = "crop", *, name: str | None = None
               ) -> PreparedImage:
    """Read an image file and prepare it (see :func:`prepare_image`); one-line ImageInputError otherwise."""
    with open_image(path, name=name) as im:
        return prepare_image(im, size, fit)
