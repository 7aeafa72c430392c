"""``promptedit evaluate``: PIE-Bench's metrics of a batch run, per editing type and overall."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..errors import OutputPathError, ParameterError
from .common import echo


@click.command()
@click.argument("run_dir", metavar="DIR")
@click.option("--data", required=True, metavar="PIE_DIR", help="The PIE-Bench folder (or a `world pie` set) the run "
                                                                "edited.")
@click.option("--layout", type=click.Choice(["batch", "pie"]), default="batch", show_default=True,
              help="Where the edited images are: DIR/<id>/edited.png (promptedit batch), or PnPInversion's "
                   "DIR/annotation_images/<image_path> (DIR then being one method's folder).")
@click.option("--dino", default=None, metavar="PATH", help="DINO ViT-B/8 in transformers format (structure distance).")
@click.option("--clip", default=None, metavar="PATH",
              help="CLIP in transformers format (CLIP similarity; the benchmark uses clip-vit-large-patch14).")
@click.option("--lpips-backbone", default=None, metavar="FILE",
              help="torchvision's SqueezeNet 1.1 state dict (LPIPS; its linear layers ship with torchmetrics).")
@click.option("--lpips-linear", default=None, metavar="FILE", help="LPIPS linear layers (default: torchmetrics').")
@click.option("--device", default="cpu", show_default=True, help="Where the networks run.")
@click.option("--out", "report_out", default=None, metavar="PREFIX",
              help="Write PREFIX.md, PREFIX.json and PREFIX.png (default: DIR/evaluation).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(run_dir, data, layout, dino, clip, lpips_backbone, lpips_linear, device, report_out, quiet):
    """Measure a run's edits with PIE-Bench's metrics (structure distance; PSNR, LPIPS, MSE, SSIM outside the
    edit mask; CLIP similarity of the edited image and of its edited part), and against the exact target where
    the set has one. Metrics whose network is not given are left out and named."""
    from ..evaluate import Metrics, aggregate, plot, report
    from ..models import resolve_device
    from ..outputs import check_output_file, write_bytes, write_image, write_json
    from ..pie import MAPPING_FILE, load_image, load_output, read_pie

    started = time.perf_counter()
    run = Path(run_dir)
    if not run.is_dir():
        raise ParameterError(f"run folder {run} not found")
    prefix = Path(report_out) if report_out else run / "evaluation"
    check_output_file(prefix.with_suffix(".md"), suffixes=(".md",))
    items = read_pie(data)
    world_set = any("world" in item.extra for item in items)
    extra = {}
    if world_set:
        from ..world.pie import world_check

        extra["world_check"] = world_check

    pie_images = run / "annotation_images"  # PnPInversion's layout: <method>/annotation_images/<image_path>

    def edited(item):
        if layout == "pie":
            return load_output(pie_images, item)
        return load_image(run / item.id / "edited.png", item.size)

    present = [i for i in items if (pie_images / i.relative_path).is_file()] if layout == "pie" else [
        i for i in items if (run / i.id / "edited.png").is_file()]
    missing = len(items) - len(present)
    if not present:
        raise ParameterError(f"{run} holds no edited image of the {len(items)} items of {data}")
    # the report's three files must not land on anything this command reads (an edited image, the data set's
    # mapping file or images, a network's file)
    read = {Path(data) if Path(data).is_file() else Path(data) / MAPPING_FILE, *(p for p in (lpips_backbone,
            lpips_linear) if p)}
    for item in items:
        read.update(p for p in (item.image_path, item.target_image_path) if p is not None)
    read.update((pie_images / i.relative_path) if layout == "pie" else (run / i.id / "edited.png") for i in present)
    read = {Path(p).resolve() for p in read}
    if layout == "batch" and prefix.parent.resolve() in {(run / i.id).resolve() for i in items}:
        raise OutputPathError(f"--out {report_out} would write into an item's folder of the run ({prefix.parent}), "
                              "beside its edited image and result.json")
    for suffix in (".md", ".json", ".png"):
        if prefix.with_suffix(suffix).resolve() in read:
            raise OutputPathError(f"--out {report_out or prefix} would overwrite the input "
                                  f"{prefix.with_suffix(suffix)}")
    metrics = Metrics.from_paths(dino=dino, clip=clip, lpips_backbone=lpips_backbone, lpips_linear=lpips_linear,
                                 device=str(resolve_device(device)))
    for network, what in metrics.missing_networks.items():
        echo(quiet, f"note: no {what} given (--{'lpips-backbone' if network == 'lpips' else network}): its metrics "
                    "are left out")
    if missing:
        echo(quiet, f"note: {missing} of {len(items)} items have no edited image in {run} (failed or not run); "
                    "they are left out")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(present), desc="evaluate", unit="item", disable=quiet)
    results = metrics.evaluate(present, edited, extra=extra, progress=lambda _: bar.update(1))
    bar.close()
    agg = aggregate(results, skipped=metrics.skipped)
    markdown, summary = report(agg, title=f"PIE-Bench evaluation of {run}", skipped=metrics.skipped)
    write_bytes(prefix.with_suffix(".md"), markdown.encode())
    write_json(prefix.with_suffix(".json"), {"command": "evaluate", "run": str(run), "data": str(data),
                                            "layout": layout, "items": len(items), "evaluated": len(present),
                                            **summary, "seconds": round(time.perf_counter() - started, 3)})
    write_image(prefix.with_suffix(".png"), plot(agg))
    overall = agg.overall.means
    shown = ", ".join(f"{k} {v:.3g}" for k, v in overall.items() if k in ("psnr_unedit_part", "psnr_target",
                                                                           "world_check", "ssim_unedit_part"))
    click.echo(f"wrote {prefix.with_suffix('.md')} ({len(present)} items; {shown})")


COMMANDS = [evaluate]
