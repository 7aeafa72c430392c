"""Shared fixtures: tiny random-weight SD components built in code, and a model folder of them."""

from __future__ import annotations

import os
import warnings

import pytest

from promptedit.families import FAMILIES  # imports no torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def free_port():
    """A function that finds a TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    def find() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return find


@pytest.fixture(scope="session")
def tiny_model():
    from promptedit.testing import tiny_components

    return tiny_components(0)


_FAMILY_MODELS: dict = {}


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def family_model(request):
    """The tiny random-weight model (:data:`promptedit.testing.TINY_MODELS`, built once per session) of each family
    of the registry (:data:`promptedit.families.FAMILIES`): a test taking it is a contract every family keeps."""
    from promptedit.testing import TINY_MODELS

    if request.param not in _FAMILY_MODELS:
        _FAMILY_MODELS[request.param] = TINY_MODELS[request.param](0)
    return _FAMILY_MODELS[request.param]


@pytest.fixture(scope="session")
def flux_model():
    """The tiny random-weight FLUX.1 model (classifier-free guided, as FLUX.1-schnell), shared with
    ``family_model``'s."""
    from promptedit.testing import TINY_MODELS

    if "flux" not in _FAMILY_MODELS:
        _FAMILY_MODELS["flux"] = TINY_MODELS["flux"](0)
    return _FAMILY_MODELS["flux"]


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    return tiny_model.tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tmp_path_factory):
    from promptedit.testing import save_model

    return save_model(tiny_model, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def disk_full_at(monkeypatch):
    """``disk_full_at(n, inside=None)``: the one atomic writer (promptedit.outputs.files) fails as a full disk does on
    the file it writes after ``n`` others (counted from the call; only files under the folder ``inside``, when
    given): the file system takes part of it, then refuses. Later files are written. Call it again to count
    afresh."""
    import errno
    from pathlib import Path

    from promptedit.outputs import files as outputs

    real = outputs._atomic_write

    def arm(n: int, inside=None):
        written = []

        def atomic_write(path, write):
            if inside is None or Path(inside) in Path(path).parents:
                written.append(path)
                if len(written) == n + 1:
                    def write(f):
                        f.write(b"half a file")
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(path, write)

        monkeypatch.setattr(outputs, "_atomic_write", atomic_write)
        return written

    return arm


def pytest_terminal_summary(terminalreporter):
    """Say in one line when the web app's browser tests were skipped, and how to run them."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "browser" in getattr(r, "keywords", {})]
    if skipped:
        terminalreporter.write_line(
            f"note: {len(skipped)} browser test(s) of the web app skipped: no Chromium on this machine "
            "(apt-get install chromium, or set PROMPTEDIT_CHROMIUM to its path; CI installs it)")
