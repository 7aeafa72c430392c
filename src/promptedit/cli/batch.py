"""``promptedit batch``: a manifest of edits (JSONL or a PIE-Bench folder), resumable, in-process or on Ray."""

from __future__ import annotations

import collections
import json
import sys
import time

import click

from ..errors import ParameterError
from ..options import FiniteRange, echo, parse_word_value
from ..requests import INVERSION_METHODS
from .common import MODEL_HELP, load, resolve_model_path

#: the exit code of a batch in which some item failed (2 is bad input of the batch itself, 1 a defect of ours)
EXIT_ITEMS_FAILED = 3


def manifest_help() -> str:
    """The keys of a JSONL item, as `batch --help` lists them: read from the code that takes them."""
    from ..batch import MASK_METHODS, METHODS, PATH_OPTIONS, item_options

    options = item_options()
    masked, velocity = [*MASK_METHODS, "mask"], ["flowedit", "uniedit"]
    return (f"A JSONL item's keys: id (its folder's name, differing from the others by more than case; default "
            f"line-N), method ({', '.join(METHODS)}; default "
            "null-text for an item with an image, else p2p), targets (a list, for target), and the options of the "
            f"command its method runs, by their names: `edit` ({', '.join(m for m in METHODS if m not in masked + velocity)}) "
            f"takes {', '.join(options['edit'])}; `mask-edit` ({', '.join(masked)}) takes "
            f"{', '.join(options['mask-edit'])}; `flow-edit` ({', '.join(velocity)}) takes "
            f"{', '.join(options['flow-edit'])}. Paths ({', '.join(PATH_OPTIONS)}) are relative to the "
            "manifest; true or false turns a flag option on or off, a list repeats an option and {\"WORD\": VALUE} "
            "gives WORD=VALUE options. An example line: {\"id\": \"blue\", \"image\": \"photo.png\", "
            "\"source\": \"a red circle on a white background\", \"target\": \"a blue circle on a white "
            "background\", \"method\": \"direct\", \"cross-replace\": [0.2, 0.8]}")


class BatchCommand(click.Command):
    """`batch`, whose help ends with the manifest's keys (built when the help is asked for)."""

    def format_epilog(self, ctx, formatter):
        formatter.write_paragraph()
        formatter.write_text(manifest_help())
        super().format_epilog(ctx, formatter)


@click.command(cls=BatchCommand)
@click.argument("manifest")
@click.option("--out", required=True, metavar="DIR", help="Output folder: DIR/<id>/ per item, DIR/failures.jsonl, "
                                                          "DIR/batch.json.")
@click.option("--method", type=click.Choice(["p2p", *INVERSION_METHODS, "instant", "diffedit", "kv-edit", "mask",
                                             "flowedit", "uniedit"]), default=None,
              help="The method of items that name none (default: null-text for items with an image, else p2p).")
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="DDIM steps of items that set none.")
@click.option("--guidance", type=FiniteRange(0), default=None, help="Guidance of items that set none.")
@click.option("--cross-replace", default=None, metavar="F | START,END",
              help="Cross-attention window of Prompt-to-Prompt items that set none.")
@click.option("--self-replace", default=None, metavar="F | START,END",
              help="Self-attention window of Prompt-to-Prompt items that set none.")
@click.option("--set", "settings", multiple=True, metavar="OPTION=VALUE",
              help="Any option of `edit` / `mask-edit` for items that set none (repeat), e.g. --set edit-null=all.")
@click.option("--pie-blend", is_flag=True,
              help="PIE-Bench: blend locally on each item's blended_word pair (source word, target word).")
@click.option("--recipe", type=click.Choice(["pie-p2p", "rf-solver-edit", "fireflow"]), default=None,
              help="PIE-Bench: edit every item as the paper's code does. pie-p2p: PnPInversion's run_editing_p2p.py "
                   "(SD 1.4: 50 steps, guidance 7.5, cross-replace 0.4, self-replace 0.6, refine, blended_word's "
                   "words blended in the source and the target and the target's re-weighted x2); rf-solver-edit: "
                   "RF-Solver-Edit's (FLUX.1-dev at 512 px: rf-solver inversion, 15 steps, guidance 2, the source's "
                   "values in blocks 39-56 for the first 2 steps); fireflow: FireFlow's (likewise with fireflow "
                   "inversion, 8 steps, values in blocks 19-56 for the first step). Options given here or per item "
                   "override it.")
@click.option("--layout", type=click.Choice(["pie"]), default=None,
              help="Also write PnPInversion's layout (DIR/pie/<method>/annotation_images/<image_path>) so their "
                   "evaluation scripts run unchanged.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray Data: a local Ray (no ADDRESS) or an existing cluster (ADDRESS, e.g. auto or "
                   "ray://host:10001). Needs pip install 'promptedit[ray]'.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray: workers, each with the model loaded once (default: the cores this machine has).")
@click.option("--gpus-per-worker", type=FiniteRange(0), default=0.0, show_default=True, help="Ray: GPUs per worker.")
@click.option("--model", "model", metavar="PATH", default=None, help=MODEL_HELP)
@click.option("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda with fp16 when present).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per process (default: the free cores, shared among Ray workers).")
@click.option("--strict", is_flag=True, help="Stop at the first item that fails (exit code 3).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def batch(manifest, out, method, steps, guidance, cross_replace, self_replace, settings, pie_blend, recipe, layout,
          ray_address, workers, gpus_per_worker, model, device, threads, strict, quiet):
    """Run every edit of MANIFEST (a JSONL file, one edit a line, or a PIE-Bench folder) into DIR/<id>/.

    Each item runs through the same code as `promptedit edit` (or `mask-edit`), with the same option names.
    Running the same command again resumes: items already done with the same options are skipped, changed
    ones rerun; a failed item's reason is printed as it fails and listed in DIR/failures.jsonl, and the run
    goes on (--strict: stops there).

    \b
    Exit codes:
      0         every item done, or skipped as done before
      2         bad input of the batch itself (manifest, --out, --set, model), before any item runs
      3         some item failed (the others ran; DIR/failures.jsonl lists them)
      130, 143  Ctrl-C, SIGTERM (the items done are kept: a rerun resumes)
    """
    from ..batch import (FAILURES, SUMMARY, Runner, RunRecord, Summary, check_defaults, flag_options, read_manifest,
                         run_in_process, run_on_ray)
    from ..outputs.files import append_line, check_output_dir, make_output_dir, write_bytes, write_json

    started = time.perf_counter()
    if ray_address is None and (workers is not None or gpus_per_worker):
        raise ParameterError("--workers and --gpus-per-worker are for --ray")
    out = check_output_dir(out)
    defaults: dict = {}
    flags = flag_options()
    for item in settings:
        key, value = parse_word_value(item, "--set")
        flag = {"true": True, "yes": True, "false": False, "no": False}.get(value.lower()) if key in flags else None
        defaults[key] = value if flag is None else flag  # a flag option: --set no-blend-swapped=true
    for key, value in (("method", method), ("steps", steps), ("guidance", guidance),
                       ("cross-replace", cross_replace), ("self-replace", self_replace)):
        if value is not None:
            defaults[key] = value
    check_defaults(defaults)  # once for the whole batch, not as a failure of every item
    items, kind = read_manifest(manifest, defaults, pie_blend=pie_blend, recipe=recipe)
    if layout == "pie" and kind != "pie":
        raise ParameterError("--layout pie writes PIE-Bench's layout: the manifest must be a PIE-Bench folder")
    from ..pie.data import fingerprint

    data = fingerprint(manifest) if kind == "pie" else None
    make_output_dir(out)
    run_record = RunRecord(out, manifest, kind, items, data)
    write_bytes(out / FAILURES, b"")  # this run's failures, one line appended as each happens
    summary = Summary("ray" if ray_address is not None else "in-process")
    counts = collections.Counter()

    def record(outcome) -> None:
        summary.outcomes.append(outcome)
        run_record.update(outcome)
        counts[outcome.status] += 1
        if outcome.status == "failed":
            append_line(out / FAILURES, json.dumps({"id": outcome.id, "error": outcome.error}))
            line = f"failed {outcome.id}: {outcome.error}"
            if bar is not None:
                bar.write(line, file=sys.stderr)
            else:
                click.echo(line, err=True)
        if bar is not None:
            rate = 60 * counts["done"] / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{rate:.1f} items/min, {counts['failed']} failed", refresh=False)
            bar.update(1)

    from tqdm.auto import tqdm

    m = load(model, device, quiet=quiet, threads=threads) if ray_address is None else None
    bar = None if quiet else tqdm(total=len(items), desc="batch", unit="item", dynamic_ncols=True)
    try:
        if m is not None:
            model_name = m.name
            for outcome in run_in_process(items, Runner(m, out, layout=layout), on_outcome=record):
                if strict and outcome.status == "failed":
                    break
        else:
            import os

            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            workers = workers or max(1, cores)
            per_worker = threads or max(1, cores // workers)
            model_name = resolve_model_path(model)
            import functools

            loader = functools.partial(load, model_name, device, quiet=True, threads=per_worker)
            for outcome in run_on_ray(items, load=loader, out=out, layout=layout, address=ray_address,
                                      workers=workers, gpus_per_worker=gpus_per_worker, threads=per_worker):
                record(outcome)
                if strict and outcome.status == "failed":
                    break
    finally:
        run_record.flush()  # the outcomes of the last second too, also after an interrupt
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - started
    not_run = len(items) - len(summary.outcomes)
    write_json(out / SUMMARY, {"command": "batch", "manifest": str(manifest), "kind": kind, "data": data,
                               "model": model_name, "layout": layout, "recipe": recipe, "defaults": defaults,
                               **summary.to_dict(), "not_run": not_run})
    echo(quiet, f"failures: {out / FAILURES}" if counts["failed"] else "no failures")
    stopped = f"; stopped at the first failure (--strict), {not_run} not run" if not_run else ""
    click.echo(f"wrote {out}: {summary.line()}{stopped}")
    if counts["failed"]:
        click.get_current_context().exit(EXIT_ITEMS_FAILED)


COMMANDS = [batch]
