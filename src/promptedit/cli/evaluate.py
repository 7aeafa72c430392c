"""``promptedit evaluate``: PIE-Bench's metrics of a batch run, per editing type and overall."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import click

from ..errors import OutputPathError, ParameterError
from ..options import echo


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
    the set has one. Metrics whose network is not given are left out and named. Only the items whose latest run
    succeeded are scored (DIR/run.json), each at its source's size."""
    from ..pie.evaluate import Metrics, aggregate, plot, report
    from ..models import resolve_device
    from ..outputs.files import check_output_file, write_bytes, write_image, write_json
    from ..pie.data import (MAPPING_FILE, RESIZE_FILTER, crop_item, load_output, load_source,
                       load_target, output_at_size, read_pie, read_rgb)

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

    def image_path(item) -> Path:
        return pie_images / item.relative_path if layout == "pie" else run / item.id / "edited.png"

    present, failed, not_run = _latest_run(run, layout, items, data, image_path)
    notes = []
    if failed:
        notes.append(f"{len(failed)} of {len(items)} items failed in the latest run and are left out")
    if not_run:
        notes.append(f"{len(not_run)} of {len(items)} items have no edited image from the latest run (not run, "
                     "or the run was interrupted) and are left out")
    if not present:
        raise ParameterError(f"{run} holds no edited image of the latest run for the {len(items)} items of {data}"
                             + (f" ({'; '.join(notes)})" if notes else ""))
    # the report's three files must not land on anything this command reads (an edited image, the data set's
    # mapping file or images, a network's file)
    read = {Path(data) if Path(data).is_file() else Path(data) / MAPPING_FILE, *(p for p in (lpips_backbone,
            lpips_linear) if p)}
    for item in items:
        read.update(p for p in (item.image_path, item.target_image_path) if p is not None)
    read.update(image_path(i) for i in present)
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
    for note in notes:
        echo(quiet, f"note: {note}")
    from tqdm.auto import tqdm

    results, resized, cropped = [], 0, 0
    for item in tqdm(present, desc="evaluate", unit="item", disable=quiet):
        raw = load_output(pie_images, item) if layout == "pie" else read_rgb(image_path(item))
        edited, box, how = output_at_size(raw, item.size, _fit_of(run / item.id) if layout == "batch" else "crop")
        source, target = load_source(item), load_target(item)
        if box is not None:  # the model saw the source's centre box: measured there
            top, left, h, w = box
            item = crop_item(item, box)
            source = source[top : top + h, left : left + w]
            target = None if target is None else target[top : top + h, left : left + w]
            cropped += 1
        resized += bool(how)
        results.append(metrics.evaluate_item(item, edited, source=source, target=target, extra=extra))
    if resized:
        notes.append(f"{resized} of {len(present)} edited images are not at the data set's size: each was brought "
                     f"to its source's size ({RESIZE_FILTER} filter)"
                     + (f", {cropped} measured over the centre box of the source their model edited (--fit crop)"
                        if cropped else "") + f", e.g. {how}")
        echo(quiet, f"note: {notes[-1]}")
    agg = aggregate(results, skipped=metrics.skipped)
    markdown, summary = report(agg, title=f"PIE-Bench evaluation of {run}", skipped=metrics.skipped, notes=notes)
    write_bytes(prefix.with_suffix(".md"), markdown.encode())
    write_json(prefix.with_suffix(".json"), {"command": "evaluate", "run": str(run), "data": str(data),
                                            "layout": layout, "items": len(items), "evaluated": len(present),
                                            "evaluated_ids": [i.id for i in present],
                                            "failed": [i.id for i in failed], "not_run": [i.id for i in not_run],
                                            "resized": resized, "notes": notes,
                                            **summary, "seconds": round(time.perf_counter() - started, 3)})
    write_image(prefix.with_suffix(".png"), plot(agg))
    overall = agg.overall.means
    shown = ", ".join(f"{k} {v:.3g}" for k, v in overall.items() if k in ("psnr_unedit_part", "psnr_target",
                                                                           "world_check", "ssim_unedit_part"))
    left_out = f", {len(failed)} failed, {len(not_run)} not run" if failed or not_run else ""
    click.echo(f"wrote {prefix.with_suffix('.md')} ({len(present)} of {len(items)} items{left_out}; {shown})")


def _latest_run(run: Path, layout: str, items, data, image_path) -> tuple[list, list, list]:
    """The items the latest run of ``run`` edited (with an edited image at ``image_path(item)``), failed, and did
    not run, by batch's record (DIR/run.json; DIR/pie/<method>/ for --layout pie), or its failures.jsonl (with a
    warning) for a run without one; a record of another data set than ``data`` is refused."""
    from ..batch import FAILURES, RunRecord
    from ..pie.data import fingerprint

    run_root = run.parent.parent if layout == "pie" and run.parent.name == "pie" else run
    record = RunRecord.read(run_root)
    statuses = record["items"] if record is not None else {}
    if record is None:
        failed_before = _failed_ids(run_root / FAILURES)
        warnings.warn(f"{run_root} has no record of its latest run ({run_root / 'run.json'}: a run by an older "
                      "promptedit, or not by promptedit batch): its data set is not checked, and every edited image "
                      f"found is scored but those of the {len(failed_before)} items in {FAILURES}", stacklevel=1)
        statuses = {i.id: "failed" if i.id in failed_before else "done" for i in items}
    elif not record.get("data"):
        warnings.warn(f"{run_root / 'run.json'} records no data set (a run of a JSONL manifest): it is not checked "
                      f"against {data}", stacklevel=1)
    elif record["data"] != (here := fingerprint(data)):
        raise ParameterError(f"{run_root} was run on another data set than {data} (fingerprint {record['data']} in "
                             f"its run.json, {here} here): evaluate it with the --data it was run on")
    present, failed, not_run = [], [], []
    for i in items:
        status = statuses.get(i.id)
        if status == "failed":
            failed.append(i)
        elif status in ("done", "skipped") and image_path(i).is_file():
            present.append(i)
        else:
            not_run.append(i)
    return present, failed, not_run


def _failed_ids(path: Path) -> set[str]:
    """The ids in a failures.jsonl (none where there is no such file; lines that are not JSON are passed over)."""
    ids = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ids
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            ids.add(entry["id"])
    return ids


def _fit_of(folder: Path) -> str:
    """How the item's edit brought its source to the model's size (``--fit``, from its result.json; ``crop``)."""
    try:
        options = json.loads((folder / "result.json").read_text(encoding="utf-8"))["batch"]["options"]
        return options[options.index("--fit") + 1] if "--fit" in options else "crop"
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return "crop"


COMMANDS = [evaluate]
