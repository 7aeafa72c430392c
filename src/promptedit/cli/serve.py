"""``promptedit serve``: the web app (Gradio), on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import click

from ..errors import ParameterError, PromptEditError
from .common import MODEL_HELP, load


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (127.0.0.1: this machine only).")
@click.option("--port", type=int, default=7860, show_default=True)
@click.option("--model", "model", metavar="PATH", default=None, help=MODEL_HELP)
@click.option("--device", default=None, help="cpu, cuda, cuda:N or mps.")
@click.option("--threads", type=int, default=None, help="CPU threads (default: the free cores).")
def serve(host, port, model, device, threads):
    """Start the web app (Gradio) for editing in a browser."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise PromptEditError("the web app needs Gradio: pip install 'promptedit[app]'") from None
    if not 0 < port < 65536:
        raise ParameterError(f"--port must be in 1..65535, got {port}")
    from ..app import serve as run

    m = load(model, device, threads=threads)
    click.echo(f"serving {m.name} on http://{host}:{port}", err=True)
    run(m, host=host, port=port)


COMMANDS = [serve]
