"""The demo: a word swap, an added phrase and a re-weighting on one model, as a gallery.

:func:`run_demo` returns the results; :func:`gallery_html` and :func:`gallery_png`
render them. Writing files is the CLI's job.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .editing import EditSpec, GenerationResult, edit
from .models import DiffusionModel
from .visualize import cross_attention_grid, image_grid, token_labels

DEMO_EDITS: tuple[tuple[str, EditSpec], ...] = (
    ("word swap (replace)", EditSpec("a red circle on a white background", ("a blue circle on a white background",))),
    ("added phrase (refine)",
     EditSpec("a red circle on a white background", ("a striped red circle on a white background",))),
    ("re-weighting 'striped' x3",
     EditSpec("a striped red circle on a white background", ("a striped red circle on a white background",),
              mode="reweight", reweight={"striped": 3.0})),
    ("re-weighting 'striped' x-1",
     EditSpec("a striped red circle on a white background", ("a striped red circle on a white background",),
              mode="reweight", reweight={"striped": -1.0})),
)


@dataclass
class DemoItem:
    title: str
    spec: EditSpec
    result: GenerationResult
    attention: list[Image.Image]  # one per prompt


def run_demo(model: DiffusionModel, *, seed: int = 0, progress: bool = True, **kwargs) -> list[DemoItem]:
    """Run every demo edit with attention maps recorded."""
    items = []
    for title, spec in DEMO_EDITS:
        result = edit(model, spec, seed=seed, store_attention=True, progress=progress, **kwargs)
        maps = result.attention.maps(downsample=model.defaults.attention_downsample)
        grids = [cross_attention_grid(result.images[i], maps[i], token_labels(model.tokenizer, p), cell=96)
                 for i, p in enumerate(result.prompts)]
        items.append(DemoItem(title, spec, result, grids))
    return items


def gallery_png(items: list[DemoItem], cell: int = 192) -> Image.Image:
    """All sources and edits in one grid, a row per edit."""
    images, labels = [], []
    for item in items:
        images += [item.result.images[0], item.result.images[1]]
        labels += ["source", item.title]
    return image_grid(images, labels, cols=2, cell=cell)


def _data_uri(image: Image.Image | np.ndarray) -> str:
    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def gallery_html(items: list[DemoItem], model_name: str, note: str = "") -> str:
    """A self-contained HTML page: prompts, images and attention maps of each demo edit."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>promptedit demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "img{image-rendering:pixelated;border:1px solid #ccc;margin:4px}"
        ".row{display:flex;gap:1em;align-items:flex-start}.cap{font-size:90%;color:#555}</style></head><body>",
        f"<h1>promptedit demo</h1><p class='cap'>model: {esc(model_name)}</p>",
    ]
    if note:
        parts.append(f"<p><b>{esc(note)}</b></p>")
    for item in items:
        r = item.result
        parts.append(f"<h2>{esc(item.title)}</h2><p>mode <b>{esc(r.mode or '')}</b>; seed {r.seed}; "
                     f"{r.num_inference_steps} steps; guidance {r.guidance_scale}; {r.timings['total']:.1f} s</p>")
        parts.append("<div class='row'>")
        for i, (prompt, image) in enumerate(zip(r.prompts, r.images)):
            label = "source" if i == 0 else "edit"
            parts.append(f"<figure><img width=256 src='{_data_uri(image)}'>"
                         f"<figcaption>{label}: <i>{esc(prompt)}</i></figcaption></figure>")
        parts.append("</div>")
        for i, grid in enumerate(item.attention):
            parts.append(f"<p class='cap'>cross-attention per token, {'source' if i == 0 else 'edit'}:</p>"
                         f"<img src='{_data_uri(grid)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
