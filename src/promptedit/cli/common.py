"""What every command shares: model options, loading, thread policy, refusing unused options (the sampling
options, parsing and input checks are :mod:`promptedit.options`, shared with batch). Nothing here imports torch
at import time."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click

from ..errors import ParameterError, PromptEditError
from ..families import DEFAULT_MODEL, EMBEDDED_MODELS, resolve_model
from ..options import echo, refuse_given

EMBEDDED_MODEL = EMBEDDED_MODELS[DEFAULT_MODEL]
MODEL_HELP = ("A model folder in diffusers format (SD 1.x/2.x, SDXL, SD3/3.5 or FLUX.1, recognised from its "
              "model_index.json), or a shipped shapes-world model: embedded (SD's architecture, the default) or "
              "embedded-xl (SDXL's).")


def resolve_model_path(model: str | None) -> str:
    """--model as a path (:func:`promptedit.families.resolve_model`: a shipped model's name or a folder), or
    nothing for the default shipped one."""
    if model:
        return resolve_model(model)
    if EMBEDDED_MODEL.is_dir():
        return str(EMBEDDED_MODEL)
    raise PromptEditError(
        "no --model given and the embedded shapes-world model is not installed; pass --model PATH (a diffusers "
        "Stable Diffusion folder; `promptedit dev tiny-model DIR` makes a tiny one)"
    )


def busy_cores() -> float:
    """How many cores other processes keep busy now: the runnable processes the kernel counts (``procs_running``
    in /proc/stat, sampled a few times over 40 ms, this process left out), or the 1-minute load average where
    there is no /proc."""
    import time

    samples = []
    for _ in range(5):
        try:
            with open("/proc/stat") as f:
                running = next(int(line.split()[1]) for line in f if line.startswith("procs_running"))
            samples.append(max(0, running - 1))
        except (OSError, StopIteration, ValueError):
            break
        time.sleep(0.01)
    if samples:
        return sorted(samples)[len(samples) // 2]
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def choose_threads(requested: int | None = None) -> int:
    """CPU threads for torch: ``requested``, else the cores this process may use less those other processes keep
    busy, at least one. OpenMP threads that wait for cores other processes hold slow every step of the whole
    team (measured: docs/performance.md, "CPU threads under load")."""
    if requested is not None:
        if requested < 1:
            raise ParameterError(f"--threads must be at least 1, got {requested}")
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, int(cores - busy_cores() + 0.5)))


def set_threads(requested: int | None) -> int:
    """Apply the thread policy to torch (a command-time choice of the CLI, not of the library)."""
    import torch

    n = choose_threads(requested)
    torch.set_num_threads(n)
    return n


def folder_defaults(model: str | None):
    """The defaults of ``model`` (as --model names it) read from its folder before it loads: its
    ``promptedit.json``, the papers' for a folder without one or a hub id."""
    from ..defaults import ModelDefaults

    path = Path(resolve_model_path(model))
    return ModelDefaults.of_folder(path) if path.is_dir() else ModelDefaults()


def load(model: str | None, device: str | None, *, quiet: bool = False, threads: int | None = None):
    """Load ``model`` (default: the embedded one) on ``device``, with the libraries' loading chatter off."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from ..models import load_model

    for lib in (diffusers_logging, transformers_logging):  # their loading bars and notices are not ours to show
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    set_threads(threads)
    path = resolve_model_path(model)
    echo(quiet, f"loading model {path}")
    return load_model(path, device=device)


def model_options(f):
    """--model, --device, --threads, --quiet."""
    @click.option("--model", "model", metavar="PATH", default=None, help=MODEL_HELP)
    @click.option("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda with fp16 when present).")
    @click.option("--threads", type=int, default=None,
                  help="CPU threads (default: the free cores, i.e. the cores less the machine's load; another "
                       "count may change a few pixels by a grey level, so give it for bit-exact reruns).")
    @click.option("--quiet", is_flag=True, help="No progress bars and no informative lines.")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def given() -> dict[str, str]:
    """The options given on the command line (or by environment), ``{name: flag}`` in the command's order."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {p.name: p.opts[0] for p in ctx.command.params
            if ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}


def refuse_unused(names, why: str) -> None:
    """Refuse options given on the command line that would be ignored ``why`` (one line, exit 2)."""
    refuse_given(given(), names, why)
