"""promptedit: edit images by editing their prompts (Prompt-to-Prompt, null-text inversion and instant
attention masks on Stable Diffusion).

The public API: :func:`load_model`, :class:`EditSpec`, :func:`edit`, :func:`generate`, :func:`attention`.
Subpackages follow the data flow: ``text`` → ``conditioning`` → ``control`` → ``backbones`` / ``samplers`` →
``runner`` → ``methods`` → ``images`` / ``outputs`` → front-ends (``cli``, ``app``, ``demo``, ``batch``). Names are
imported on first use, so ``import promptedit.world`` or ``promptedit --help`` do not load torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> submodule that defines it (imported on first access)
_LAZY = {
    "EditSpec": "methods.editing",
    "attention": "methods.editing",
    "edit": "methods.editing",
    "generate": "methods.editing",
    "load_model": "models",
    "PromptEditError": "errors",
}

__all__ = ["EditSpec", "PromptEditError", "attention", "edit", "generate", "load_model", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
