"""The ``promptedit`` command line, one module per command.

Every command has ``--help``; bad input ends in one ``error: ...`` line and exit code 2 (``--debug`` shows the
traceback instead); outputs are written atomically, with a ``result.json`` (or ``FILE.json``) beside them.
``main(argv)`` returns the exit code, so tests call it directly. No command imports torch before it runs, so
``promptedit --help`` answers at once.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings

import click

from ..errors import PromptEditError, internal_error_line
from .common import EMBEDDED_MODEL  # noqa: F401  (re-exported)

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="promptedit")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of its one line.")
@click.pass_context
def cli(ctx, debug):
    """Edit images by editing their prompts: Prompt-to-Prompt, null-text inversion and instant attention masks on
    Stable Diffusion (1.x, 2.x, XL) or the embedded shapes-world model."""
    ctx.ensure_object(dict)["debug"] = debug


def _register() -> None:
    from . import (attention, batch, bench, demo, dev, edit, evaluate, flowedit, generate, invert, mask, serve, train,
                   world)

    for module in (generate, edit, mask, flowedit, invert, attention, demo, batch, evaluate, world, train, bench, serve,
                   dev):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _quiet_libraries() -> None:
    """Library chatter off for this command: the verbosity variables are read when diffusers, transformers and
    the hub client are first imported, which the commands do lazily after this; OpenMP's idle threads sleep
    instead of spinning for cores other processes hold (read when torch first starts its thread pool)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for name in ("diffusers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


def _group_options(args: list[str]) -> list[str]:
    """The options before the command's name (``promptedit --debug edit ...``)."""
    out = []
    for a in args:
        if not a.startswith("-"):
            break
        out.append(a)
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds as Ctrl-C does: a file being written is removed,
    never left half-written."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for bad input, with one ``error:`` line; 130 after Ctrl-C, 143 after
    SIGTERM)."""
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():  # the command's process, for the command's time
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    _quiet_libraries()
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in _group_options(args)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.filterwarnings("ignore", category=FutureWarning)  # the libraries' deprecation chatter
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            code = cli.main(args=args, prog_name="promptedit", standalone_mode=False)
            return code if isinstance(code, int) else 0  # a command's ctx.exit(N) comes back as N
        except click.exceptions.Exit as e:
            return e.exit_code
        except click.exceptions.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            return EXIT_USAGE
        except click.exceptions.Abort as e:
            if isinstance(e.__context__, Terminated):
                click.echo("terminated", err=True)
                return 143
            click.echo("aborted", err=True)
            return 130
        except PromptEditError as e:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            return EXIT_USAGE
        except Terminated:
            click.echo("terminated", err=True)
            return 143
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            return 130
        except Exception:
            if debug:
                raise
            click.echo(f"error: {internal_error_line(sys.exc_info()[1])}; run again with --debug for the traceback "
                       "and please report it", err=True)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
