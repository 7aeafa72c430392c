"""``promptedit demo``: the three papers on one model, as a gallery (the README's main command)."""

from __future__ import annotations

import time

import click

from ..options import echo, sampling_options
from .common import EMBEDDED_MODEL, load, model_options


@click.command()
@click.option("--out", default="out/demo", show_default=True, metavar="DIR", help="Output folder.")
@sampling_options
@model_options
def demo(out, model, device, threads, quiet, steps, guidance, seed, height, width, allow_large):
    """Run a word swap, an added phrase, re-weighting, a real-image edit (null-text inversion) and an
    instant-mask edit; write DIR/gallery.png, DIR/index.html and DIR/result.json."""
    from ..demo import gallery_html, gallery_png, run_demo
    from ..outputs.files import check_output_dir, write_bytes, write_image, write_json
    from ..outputs.records import build_record

    started = time.perf_counter()
    out = check_output_dir(out)
    note = ""
    if model is None and not EMBEDDED_MODEL.is_dir():
        from ..testing import tiny_components
        from .common import set_threads

        note = ("The embedded shapes-world model is not installed: this demo ran on tiny random weights, so the "
                "images are noise. It shows the plumbing only.")
        click.echo(f"warning: {note}", err=True)
        set_threads(threads)
        m = tiny_components(0)
    else:
        m = load(model, device, quiet=quiet, threads=threads)
    items = run_demo(m, seed=0 if seed is None else seed, num_inference_steps=steps, guidance_scale=guidance,
                     height=height, width=width, allow_large=allow_large, progress=not quiet)
    write_image(out / "gallery.png", gallery_png(items))
    write_bytes(out / "index.html", gallery_html(items, m.name, note).encode())
    write_json(out / "result.json", build_record("demo", m, started=started, files={
        "gallery": "gallery.png", "page": "index.html"}, extra={"note": note, "edits": [i.record for i in items]}))
    echo(quiet, f"{len(items)} rows in {time.perf_counter() - started:.1f} s")
    click.echo(f"wrote {out / 'index.html'} and {out / 'gallery.png'} ({time.perf_counter() - started:.1f} s)")


COMMANDS = [demo]
