"""The shapes-world models shipped inside the package, by the names :func:`promptedit.load_model` and every
command's ``--model`` take: ``embedded`` (SD's architecture, the CLI's default) and ``embedded-xl`` (SDXL's).

Imports nothing heavy: the CLI reads it to answer ``--help``.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelLoadError

ASSETS = Path(__file__).resolve().parent / "assets"
#: name -> folder of each shipped model
EMBEDDED_MODELS = {"embedded": ASSETS / "shapes-model", "embedded-xl": ASSETS / "shapes-model-xl"}
DEFAULT_MODEL = "embedded"


def resolve_model(name: str) -> str:
    """``name`` as a path: a shipped model's folder for its name (``./embedded`` names a folder called so), any
    other name unchanged. A :class:`ModelLoadError` when the installation lacks the shipped model named."""
    if name not in EMBEDDED_MODELS:
        return name
    if not EMBEDDED_MODELS[name].is_dir():
        raise ModelLoadError(f"model {name!r}: this installation lacks that shipped model ({EMBEDDED_MODELS[name]} "
                             "is missing)")
    return str(EMBEDDED_MODELS[name])
