"""promptedit: edit images by editing their prompts (Prompt-to-Prompt on Stable Diffusion).

The public API: :func:`load_model`, :class:`EditSpec`, :func:`edit`, :func:`generate`,
:func:`attention`. Submodules follow the data flow: ``tokens`` → ``seq_aligner`` →
``control`` → ``hooks`` → ``pipeline`` → ``editing`` → ``visualize`` → ``cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .editing import EditSpec, attention, edit, generate  # noqa: E402
from .errors import PromptEditError  # noqa: E402
from .models import load_model  # noqa: E402

__all__ = ["EditSpec", "PromptEditError", "attention", "edit", "generate", "load_model", "__version__"]
