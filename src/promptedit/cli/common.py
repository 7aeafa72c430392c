"""What every command shares: model and sampling options, loading, thread policy, refusing unused options,
parsing windows and WORD=VALUE pairs, and writing a record. Nothing here imports torch at import time."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click

from ..errors import ParameterError, PromptEditError
from ..shipped import DEFAULT_MODEL, EMBEDDED_MODELS, resolve_model

EMBEDDED_MODEL = EMBEDDED_MODELS[DEFAULT_MODEL]
MODEL_HELP = ("Diffusers Stable Diffusion folder, SD 1.x/2.x or XL, or a shipped shapes-world model: embedded "
              "(SD's architecture, the default) or embedded-xl (SDXL's).")
MAX_SEED = 2**63 - 1


class FiniteRange(click.FloatRange):
    """click's FloatRange that also refuses nan and ±inf (which FloatRange and ``float`` let through)."""

    name = "float"

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


#: any finite number
FINITE = FiniteRange()


def echo(ctx_quiet: bool, message: str) -> None:
    """An informative line on stderr, unless ``--quiet``."""
    if not ctx_quiet:
        click.echo(message, err=True)


def resolve_model_path(model: str | None) -> str:
    """--model as a path (:func:`promptedit.shipped.resolve_model`: a shipped model's name or a folder), or
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


def sampling_options(f):
    """--steps, --guidance, --seed, --height, --width, --allow-large-size."""
    @click.option("--steps", type=click.IntRange(1, 1000), default=None,
                  help="DDIM steps (default: the model's, else the papers' 50).")
    @click.option("--guidance", type=FiniteRange(0), default=None,
                  help="Classifier-free guidance scale (default: the model's, else 7.5).")
    @click.option("--seed", type=click.IntRange(0, MAX_SEED), default=None,
                  help="Seed of the noise; the same seed reproduces, bit for bit at the same --threads (default 0).")
    @click.option("--height", type=click.IntRange(min=1), default=None, help="Image height (default: the model's size).")
    @click.option("--width", type=click.IntRange(min=1), default=None, help="Image width (default: the model's size).")
    @click.option("--allow-large-size", "allow_large", is_flag=True,
                  help="Allow sides above 4x the model's native size (refused by default; memory is still checked).")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def given(*names: str) -> list[str]:
    """The options among ``names`` given on the command line (or by environment), as their flags."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return [p.opts[0] for p in ctx.command.params
            if p.name in names and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE,
                                                                        ParameterSource.ENVIRONMENT)]


def refuse_unused(names, why: str) -> None:
    """Refuse options given on the command line that would be ignored ``why`` (one line, exit 2)."""
    flags = given(*names)
    if flags:
        raise ParameterError(f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} not used {why}")


def parse_window(text: str, what: str):
    """``F`` → F; ``START,END`` → (START, END)."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise ParameterError(f"{what} must be F or START,END with numbers, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise ParameterError(f"{what} must be F or START,END, got {text!r}")


def parse_word_value(text: str, what: str) -> tuple[str, str]:
    if "=" not in text:
        raise ParameterError(f"{what} must be WORD=VALUE, got {text!r}")
    word, value = text.rsplit("=", 1)
    if not word.strip():
        raise ParameterError(f"{what} needs a word before '=', got {text!r}")
    return word.strip(), value.strip()


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_input(path, what: str = "image") -> Path:
    """An input file that exists and is a regular file, checked before the model loads."""
    from ..images import check_input_file

    return check_input_file(path, what)


def check_not_inputs(out: Path, inputs, names) -> None:
    """Refuse an output folder whose outputs (``names``: a set of file names, or a predicate on a name) would
    overwrite an input file, given by its path or through a link."""
    from ..errors import OutputPathError

    if not callable(names):
        names = frozenset(names).__contains__

    for item in inputs:
        if not item:
            continue
        for p in {Path(item).absolute(), Path(item).resolve()}:  # the path given, and the file it links to
            if p.parent.resolve() == Path(out).resolve() and names(p.name):
                raise OutputPathError(f"writing to {out} would overwrite the input {item}")


def run_size(model, sampling) -> tuple[int, int]:
    """(height, width) of a run: the :class:`~promptedit.requests.SamplingOptions`' own, else the model's native
    size."""
    return (model.image_size if sampling.height is None else sampling.height,
            model.image_size if sampling.width is None else sampling.width)


def prepare_image(model, image, fit: str, sampling, *, batch: int):
    """A real image file read by the image rule (:func:`promptedit.images.load_image`) at the run's size
    (:func:`run_size`), checked first for a run of ``batch`` branches."""
    from ..images import load_image
    from ..runner import check_size

    size = run_size(model, sampling)
    check_size(model, *size, batch=batch, allow_large=sampling.allow_large)
    return load_image(image, size, fit)


def read_inversion(path):
    """A saved inversion, read and validated completely."""
    from ..errors import ImageInputError
    from ..inversion import Inversion

    p = check_input(path, "inversion file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageInputError(f"cannot read {p}: {e.strerror or e}") from None
    return Inversion.from_bytes(data, str(p))
