"""Errors raised by promptedit.

Every problem caused by what a user gave us (a prompt, a word, a file, a number)
is a :class:`PromptEditError`, a ``ValueError`` subclass whose message is one
line that names the problem. The CLI turns them into ``error: ...`` and exit 2.
"""

from __future__ import annotations


class PromptEditError(ValueError):
    """Base class for user-facing errors; the message is one line."""


class PromptError(PromptEditError):
    """A prompt or a word in it cannot be used as asked."""


class WordNotInPromptError(PromptError):
    """A word given for an edit does not occur in the prompt."""

    def __init__(self, word: str, prompt: str | list[str], role: str = ""):
        what = f"{role} word" if role else "word"
        where = f"the prompt {prompt!r}" if isinstance(prompt, str) else "any of the prompts " + ", ".join(map(repr, prompt))
        super().__init__(f"{what} {word!r} is not in {where}")
        self.word = word
        self.prompt = prompt


class AlignmentError(PromptError):
    """Source and target prompts cannot be aligned for the chosen edit mode."""


class ParameterError(PromptEditError):
    """A numeric or structural parameter is out of range."""


class ModelLoadError(PromptEditError):
    """A model folder is missing, unreadable or not a Stable Diffusion checkpoint."""


class ImageInputError(PromptEditError):
    """An input image is missing, unreadable or not usable."""


class OutputPathError(PromptEditError):
    """An output path cannot be written."""


class NumericalError(PromptEditError):
    """A run gave NaN or Inf values: a parameter too large for the model's precision, or broken weights."""


class HookError(RuntimeError):
    """Attention hooks could not be installed (e.g. no cross-attention layer found)."""


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the text encoder takes and was truncated."""
