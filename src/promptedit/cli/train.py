"""``promptedit train``: the embedded shapes-world model's recipe (resumable; kept apart from the library in
:mod:`promptedit.train`)."""

from __future__ import annotations

import time

import click

from ..errors import ParameterError
from ..families import FAMILIES
from ..train import ARCHITECTURES
from ..options import FINITE
from .common import load, set_threads


@click.command()
@click.option("--out", default="runs/shapes", show_default=True, metavar="DIR",
              help="Run folder: checkpoint.pt (resumable), config.json, preview.png.")
@click.option("--steps", type=int, default=None,
              help="Optimisation steps (default 4000); a resumed run trains up to them (it cannot be shortened).")
@click.option("--checkpoint-every", type=int, default=None,
              help="Save checkpoint.pt every N steps (default 250); Ctrl-C saves it too, after the step under way.")
@click.option("--batch-size", type=int, default=None, help="Batch size (default 32).")
@click.option("--minutes", type=FINITE, default=None, help="Stop (and export) after this much training time.")
@click.option("--lr", type=FINITE, default=None, help="Peak learning rate (default 7e-4).")
@click.option("--grounding-weight", type=FINITE, default=None,
              help="Weight of the token-grounding loss (default 0.05; 0 turns it off).")
@click.option("--word-mass-weight", type=FINITE, default=None,
              help="Weight of the word-mass term: the words describing a pixel get at least --word-mass-floor "
                   "of its attention (default 0.05; 0 turns it off).")
@click.option("--word-mass-floor", type=FINITE, default=None, help="Floor of the word-mass term (default 0.5).")
@click.option("--identity-weight", type=FINITE, default=None,
              help="Weight of the word-identity term: each word's text-encoder output must name its word "
                   "(default 0.02; 0 turns it off).")
@click.option("--identity-temperature", type=FINITE, default=None,
              help="Temperature τ of the word-identity term's cosine classifier (default 10).")
@click.option("--ema-decay", type=FINITE, default=None, help="EMA decay of the exported weights (default 0.998).")
@click.option("--min-lr-fraction", type=FINITE, default=None,
              help="Where the cosine decay ends, as a fraction of --lr (default 0.1).")
@click.option("--two-object-fraction", type=FINITE, default=None,
              help="Share of two-object captions in the training stream (default 0.4, the world's own).")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default="sd", show_default=True,
              help="The architecture: SD 1.x/2.x's conditioning (one text encoder), SDXL's (two text encoders, "
                   "pooled embedding, time ids; an sdxl run may start --init-from an sd model where shapes agree), "
                   "or FLUX.1's (an MM-DiT transformer with CLIP's pooled vector and T5's keys, trained as a "
                   "rectified flow; its CLIP encoder starts from the embedded SD model's).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the weights' initialisation and of the noise drawn in training.")
@click.option("--data-seed", type=int, default=None,
              help="Seed of the rendered training stream (default 1; a fine-tuning run can take fresh scenes).")
@click.option("--init-from", "init_from", default=None, metavar="MODEL",
              help="Start a new run from this model's weights and tokenizer ('embedded' or 'embedded-xl' for a shipped one; a "
                   "folder exported by this command), with a fresh optimiser. Ignored when DIR has a checkpoint.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming DIR/checkpoint.pt.")
@click.option("--export", "export", default=None, metavar="DIR",
              help="Write the trained model (EMA weights) as a diffusers folder here.")
@click.option("--half", is_flag=True, help="Export the weights in fp16 (how the embedded model ships).")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: the free cores).")
@click.option("--device", default="cpu", show_default=True, help="Where to train: cpu, cuda, cuda:1, ...")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes that render batches ahead (0: render in the training process, about 40 ms per "
                   "batch of 32 on one core, which a GPU step then waits for).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(out, steps, checkpoint_every, batch_size, minutes, lr, grounding_weight, word_mass_weight, word_mass_floor,
          identity_weight, identity_temperature, ema_decay, min_lr_fraction, two_object_fraction, arch, seed, data_seed,
          init_from, fresh, export, half, threads, device, workers, quiet):
    """Train the embedded shapes-world model (resumable); see MODEL_CARD.md for the shipped run."""
    from ..models import resolve_device
    from ..outputs.files import check_output_dir, make_output_dir, write_image
    from ..train.shapes import TrainConfig, check_architecture, train as run_train

    overrides = {k: v for k, v in dict(steps=steps, checkpoint_every=checkpoint_every, batch_size=batch_size,
                                       max_minutes=minutes, lr=lr, grounding_weight=grounding_weight,
                                       word_mass_weight=word_mass_weight, word_mass_floor=word_mass_floor,
                                       identity_weight=identity_weight,
                                       identity_temperature=identity_temperature, ema_decay=ema_decay,
                                       min_lr_fraction=min_lr_fraction, two_object_fraction=two_object_fraction,
                                       data_seed=data_seed).items()
                 if v is not None}
    run_path = check_output_dir(out)
    saved = _saved_config(run_path) if not fresh and (run_path / "checkpoint.pt").exists() else None
    try:
        if saved is None:
            config = TrainConfig(seed=seed, arch=arch, **overrides)
        else:  # a resumed run keeps its settings: only its budgets (--steps, --minutes) may change
            from click.core import ParameterSource

            ctx = click.get_current_context()
            given = {k: v for k, v in {**overrides, "seed": seed, "arch": arch}.items()
                     if k in overrides or ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
            budgets = ("steps", "max_minutes", "checkpoint_every")
            changed = sorted(k for k, v in given.items() if k not in budgets and saved.get(k) != v)
            if changed:
                raise ParameterError(
                    f"{run_path} is a run with {', '.join(f'{k} {saved.get(k)!r}' for k in changed)}; a resumed run "
                    f"keeps its settings (read from its config.json): give only --steps, --minutes or "
                    f"--checkpoint-every, or start over with --fresh")
            config = TrainConfig(**{**saved, **given})
    except ValueError as e:
        raise ParameterError(str(e)) from None
    set_threads(threads)
    device = resolve_device(device)
    if export:
        check_output_dir(export)
    start_model = None  # loaded before the run folder is made, so that a bad model leaves nothing behind
    new_run = fresh or not (run_path / "checkpoint.pt").exists()
    if init_from is None and new_run and FAMILIES[config.arch].mmdit and config.clip_from_sd:
        init_from = "embedded"  # the CLIP text encoder (pooled vector) starts from the SD model's
    if init_from is not None and new_run:
        start_model = load(init_from, "cpu", quiet=quiet, threads=threads)
        try:
            check_architecture(config, start_model)
        except ValueError as e:
            raise ParameterError(str(e)) from None
    run_dir = make_output_dir(run_path)
    started = time.perf_counter()
    with StopOnSignal() as stop:
        model = run_train(config, run_dir, resume=not fresh, progress=not quiet, log=lambda m: click.echo(m, err=True),
                          device=device, workers=workers, init_from=start_model, stop=stop.requested)
    if stop.signal is not None:  # stopped at a step boundary, its checkpoint saved: no preview, no export
        import signal

        how, code = ("terminated", 143) if stop.signal == signal.SIGTERM else ("interrupted", 130)
        click.echo(f"{how} at step {model.training_info['steps']}: saved {run_dir / 'checkpoint.pt'} (the same "
                   "command resumes)", err=True)
        click.get_current_context().exit(code)
    from ..methods.editing import generate as gen
    from ..images.visualize import image_grid

    prompts = ["a red circle on a white background", "a blue square on a black background",
               "a big striped yellow star on a gray background", "a green heart and a purple triangle on a white background",
               "a sketch of a cyan circle on a white background", "a pixel art of an orange heart on a gray background".replace("an ", "a "),
               "a blurry photo of a pink star on a black background", "a dotted blue triangle on a white background at night"]
    result = gen(model, prompts, seed=0, progress=False)
    write_image(run_dir / "preview.png", image_grid(list(result.images), [p[:40] for p in prompts], cols=4, cell=160))
    if export:
        from ..models import save_model

        save_model(model, export, half=half)
        click.echo(f"exported {export}")
    click.echo(f"trained {model.training_info['steps']} steps in {model.training_info['minutes']:.1f} min; "
               f"preview {run_dir / 'preview.png'} ({time.perf_counter() - started:.0f} s)")


class StopOnSignal:
    """For its ``with`` block in the main thread: the first Ctrl-C or SIGTERM is only noted (``requested()``
    answers True, ``signal`` says which), so that training stops at a step boundary and saves; a second one
    stops at once, as without it (the last checkpoint, written atomically, stays). The handlers before it are
    put back after."""

    def __init__(self):
        self.signal, self._previous = None, {}

    def requested(self) -> bool:
        return self.signal is not None

    def _note(self, signum, frame):
        import signal

        if self.signal is not None:
            from . import Terminated

            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        self.signal = signum

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        import signal

        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False


def _saved_config(run_path) -> dict:
    """The settings a run folder was trained with (its config.json), as TrainConfig takes them."""
    import dataclasses
    import json

    from ..train.shapes import TrainConfig

    try:
        saved = json.loads((run_path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ParameterError(f"{run_path} has a checkpoint but no readable config.json ({e}); start over with "
                             "--fresh") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(saved, dict) or set(saved) - known:
        raise ParameterError(f"{run_path}/config.json is not this recipe's configuration; start over with --fresh")
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    try:
        TrainConfig(**saved)  # validated as the run's own settings, before any option is laid over them
    except (TypeError, ValueError) as e:
        raise ParameterError(f"{run_path}/config.json is damaged ({e}); start over with --fresh") from None
    return saved


COMMANDS = [train]
