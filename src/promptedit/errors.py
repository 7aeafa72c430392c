"""Errors raised by promptedit.

Every problem caused by what a user gave us (a prompt, a word, a file, a number)
is a :class:`PromptEditError`, a ``ValueError`` subclass whose message is one
line that names the problem. The CLI turns them into ``error: ...`` and exit 2.
"""

from __future__ import annotations

import math
import numbers


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


class PromptEditWarning(UserWarning):
    """Input that is used, but not as its words or numbers say (the CLI shows one ``warning: ...`` line)."""


class PromptTruncatedWarning(PromptEditWarning):
    """A prompt was longer than the text encoder takes and was truncated."""


class UnknownWordsWarning(PromptEditWarning):
    """A prompt has words the model does not know (they give noise, not what they say)."""


# ----------------------------------------------------------------------------- the checks that raise them


def check_real(name: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
               high_open: bool = False) -> float:
    """``value`` as a finite float within [low, high] (open ends where said); ParameterError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if (low is not None and (v <= low if low_open else v < low)) or (
            high is not None and (v >= high if high_open else v > high)):
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise ParameterError(f"{name} must be in {lo}, {hi}, got {value!r}")
    return v


def check_whole(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a whole number within [low, high]; ParameterError otherwise (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be a whole number, got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ParameterError(f"{name} must be in [{'-inf' if low is None else low}, "
                             f"{'inf' if high is None else high}], got {value!r}")
    return v


def internal_error_line(e: BaseException) -> str:
    """One line for an error that is a defect of ours, not of the input: its type and first line."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"internal error ({type(e).__name__}{': ' + first if first else ''})"
