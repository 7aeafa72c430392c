"""``promptedit bench world``: every method measured against the shapes world's exact ground truth."""

from __future__ import annotations

import time

import click

from ..errors import ParameterError
from ..options import FINITE
from .common import MODEL_HELP, load


@click.group()
def bench():
    """Benchmarks against exact ground truth."""


def _bench_sections():
    from ..bench import SECTIONS

    return SECTIONS


@bench.command("world")
@click.option("--model", "model", metavar="PATH", default=None, help=MODEL_HELP)
@click.option("--out", default="out/bench-world", show_default=True, metavar="DIR",
              help="Writes DIR/bench-world.json, DIR/bench-world.md and DIR/bench-world.png.")
@click.option("--n", "n", type=int, default=50, show_default=True, help="Items per metric.")
@click.option("--seed", type=int, default=0, show_default=True, help="x_T seed of item 0 (item i uses SEED + i).")
@click.option("--steps", type=int, default=None,
              help="Sampling steps (default: the model's; its inversion steps, 50, for the real-image section).")
@click.option("--guidance", type=FINITE, default=None, help="Classifier-free guidance scale (default: the model's).")
@click.option("--only", "only", type=click.Choice(_bench_sections()), multiple=True,
              help="Run only this section (repeat for several).")
@click.option("--examples", type=int, default=2, show_default=True, help="Example items per section in the PNG grid.")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda with fp16 when present).")
@click.option("--threads", type=int, default=None, help="CPU threads (default: the free cores).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench_world(model, out, n, seed, steps, guidance, only, examples, device, threads, quiet):
    """Measure generation and every Prompt-to-Prompt edit against the shapes world's ground truth.

    Prompts are held-out captions; images are read back with the world's reader (images that are
    not 64 x 64 are resized to it, nearest). Every number is reported with its target and n.
    """
    from ..outputs.files import check_output_dir, write_bytes, write_image, write_json
    from ..outputs.records import environment

    started = time.perf_counter()
    if n < 1:
        raise ParameterError(f"--n must be at least 1, got {n}")
    if examples < 0:
        raise ParameterError(f"--examples must be >= 0, got {examples}")
    out = check_output_dir(out)
    from ..bench.world import example_cells, markdown_report, run_world_bench
    from ..images.visualize import image_grid

    loaded = load(model, device, quiet=quiet, threads=threads)

    def save(result, complete: bool) -> None:  # after every section, so a later failure loses nothing
        files = {"json": "bench-world.json", "markdown": "bench-world.md"}
        images, labels, cols = example_cells(result)
        if images:
            write_image(out / "bench-world.png", image_grid(images, labels, cols=cols, cell=128))
            files["examples"] = "bench-world.png"
        write_bytes(out / "bench-world.md", markdown_report(result).encode())
        write_json(out / "bench-world.json", {
            "command": "bench world", "complete": complete, **result.to_dict(), "files": files,
            "timings": {"wall": round(time.perf_counter() - started, 3)}, "environment": environment(),
        })

    result = run_world_bench(loaded, n=n, sections=list(only) or None, seed=seed, steps=steps, guidance=guidance,
                             examples=examples, progress=not quiet, on_section=lambda r: save(r, False))
    save(result, True)
    verdict = "all targets met" if result.passed else "some targets not met"
    click.echo(f"wrote {out / 'bench-world.md'} ({verdict}; {time.perf_counter() - started:.0f} s)")


COMMANDS = [bench]
