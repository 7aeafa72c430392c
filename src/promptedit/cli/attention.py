"""``promptedit attention``: a prompt's cross-attention maps per token, and its self-attention components."""

from __future__ import annotations

import time

import click

from ..options import echo, sampling_options
from .common import load, model_options


@click.command()
@click.argument("prompt")
@click.option("--out", required=True, metavar="FILE.png", help="Output grid of per-token maps.")
@click.option("--resolution", "downsample", type=click.IntRange(min=1), default=None,
              help="Maps of layers this many times smaller than the latent (default: the model's, 4 for SD, or "
                   "the nearest the model has).")
@click.option("--components", type=click.IntRange(min=0), default=6, show_default=True,
              help="Top self-attention components written to FILE-self.png (0: none).")
@sampling_options
@model_options
def attention(prompt, out, downsample, components, model, device, threads, quiet, steps, guidance, seed, height, width,
              allow_large):
    """Generate PROMPT and show its cross-attention maps per token (and self-attention components)."""
    from ..methods.editing import attention as run
    from ..outputs.files import check_output_file, file_set, write_image, write_json
    from ..outputs.records import build_record
    from ..images.visualize import cross_attention_grid, self_attention_grid, token_labels

    started = time.perf_counter()
    out = check_output_file(out)
    m = load(model, device, quiet=quiet, threads=threads)
    result = run(m, prompt, downsample=downsample, self_attention=components > 0, seed=0 if seed is None else seed,
                 num_inference_steps=steps, guidance_scale=guidance, height=height, width=width,
                 allow_large=allow_large, progress=not quiet)
    for note in result.notes:
        echo(quiet, note)
    f = result.attention_downsample
    maps = result.attention.maps(downsample=f)[0]
    self_out = out.with_name(out.stem + "-self.png")
    files = {"cross": out.name}
    with file_set(out, self_out) as staged:  # complete or not at all
        write_image(staged / out.name, cross_attention_grid(result.images[0], maps, token_labels(m.tokenizer, prompt)))
        if components > 0 and result.attention.self_attention:
            self_maps = result.attention.maps(is_cross=False, downsample=f)[0]
            write_image(staged / self_out.name, self_attention_grid(self_maps, k=components))
            files["self"] = self_out.name
        write_json(staged / out.with_suffix(".json").name,
                   build_record("attention", m, result, started=started, files=files))
    click.echo(f"wrote {out} (maps at 1/{f} of the latent)")


COMMANDS = [attention]
