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
    import os
    import tempfile
    from unittest import mock

    # Gradio keeps uploads and the images it serves in GRADIO_TEMP_DIR, by default a folder under the system's
    # temporary folder that every Gradio app shares and none empties: for this process's time it is the app's
    # own temporary folder (with the app's records), set before Gradio is imported (which makes a folder there)
    # and removed when the server stops, after Ctrl-C too
    with tempfile.TemporaryDirectory(prefix="promptedit-serve-", ignore_cleanup_errors=True) as folder, \
            mock.patch.dict(os.environ, {"GRADIO_TEMP_DIR": folder}):
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise PromptEditError("the web app needs Gradio: pip install 'promptedit[app]'") from None
        if not 0 < port < 65536:
            raise ParameterError(f"--port must be in 1..65535, got {port}")
        check_address(host, port)  # before the model loads
        from ..app import serve as run

        m = load(model, device, threads=threads)
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host  # an IPv6 address, as URLs write it
        click.echo(f"serving {m.name} on http://{shown}:{port}", err=True)
        try:
            run(m, host=host, port=port, out_dir=folder)
        except OSError:  # Gradio could not bind after all (taken since the check): say why in one line
            check_address(host, port)
            raise


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on: a host that does not resolve or is not
    this machine's, a port in use or reserved. Every address the host resolves to is bound as the server binds
    it (SO_REUSEADDR: a port that a closed server has just left is free) and released at once."""
    import errno
    import socket

    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1], as in a URL
    if not name.strip():
        raise ParameterError("--host must be an address or a host name, got ''")
    try:
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as e:  # socket.gaierror is an OSError
        raise ParameterError(f"--host {host} does not resolve ({getattr(e, 'strerror', None) or e})") from None
    foreign = []  # addresses this machine lacks: skipped where another binds, as asyncio's server skips them
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    foreign.append(address[0])
                    continue
                if e.errno == errno.EADDRINUSE:
                    raise ParameterError(f"port {port} on {host} is in use (another server?); choose another with "
                                         "--port") from None
                if e.errno == errno.EACCES:
                    raise ParameterError(f"port {port} needs privileges to bind; choose one above 1023 with "
                                         "--port") from None
                raise ParameterError(f"cannot listen on {host} port {port} ({e.strerror or e})") from None
    if len(foreign) == len(found):
        raise ParameterError(f"--host {host} is not an address of this machine ({', '.join(foreign)})")

COMMANDS = [serve]
