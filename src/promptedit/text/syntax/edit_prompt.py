"""The entry point: :func:`parse_edit_prompt` picks the syntax (``auto``: the one whose own constructs the
prompt uses), parses, reads and builds the :class:`~promptedit.text.syntax.common.PromptEdit`."""

from __future__ import annotations

import re
from typing import Any

from ...errors import ParameterError, PromptError
from .a1111 import _A1111Reader, _a1111_markers, _a1111_windows, _parse_a1111, _refuse_keywords
from .common import (
    SYNTAXES,
    _NAMES,
    AmbiguousSyntaxError,
    EditPromptError,
    NoEditError,
    PromptEdit,
    _Reading,
    _assemble,
    _check_word_windows,
    _describe_edits,
    _fmt,
    _mode,
    _reweight,
    _short,
    _words,
)
from .compel import _CompelReader, _compel_markers, _compel_module, _compel_windows, _parse_compel


def _build(reading: _Reading, text: str, notes: list[str]) -> PromptEdit:
    """The PromptEdit of a reading."""
    source, _, stags = _assemble(reading.source, reading.tidy)
    target, tweights, ttags = _assemble(reading.target, reading.tidy)
    swords = _words(source, [1.0] * len(source), stags, "source", reading.edits)
    twords = _words(target, tweights, ttags, "target", reading.edits)
    _describe_edits(reading, source, target, swords, twords)
    weights = _reweight(target, twords)
    if not reading.edits and not weights:
        raise NoEditError(f"the prompt has no {_NAMES[reading.syntax]} edit construct (no prompt editing, swap or "
                          f"weight other than 1): {_short(text, 60)!r}")
    for role, prompt in (("source", source), ("target", target)):
        if not prompt:
            raise NoEditError(f"the {role} prompt is empty: {_short(text, 60)!r} edits away every word")
    mode, runs = _mode(reading, source, target, weights)
    windows = (_a1111_windows if reading.syntax == "a1111" else _compel_windows)(reading.edits, runs)
    _check_word_windows(windows.words, twords, reading.edits)
    if mode == "refine":
        notes.append("mode refine: the constructs add or remove words, though the totals match (auto would swap "
                     "word for word)")
    notes.extend(windows.notes)
    if weights:
        listed = ", ".join(f"{w!r} ×{_fmt(c)}" for w, c in weights.items())
        notes.append(f"weights {listed} scale the target's cross-attention (--reweight); the source is drawn "
                     "without weights")
    return PromptEdit(source=source, targets=(target,), mode=mode, cross_replace=windows.cross,
                      cross_replace_words=windows.words, self_replace=windows.self_window, reweight=weights,
                      syntax=reading.syntax, prompt=text, notes=tuple(notes))


def _read(syntax: str, tree, text: str, steps: int | None) -> _Reading:
    """Interpret a parse tree of ``syntax``."""
    return _A1111Reader(text, steps).read(tree) if syntax == "a1111" else _CompelReader(text).read(tree)


def _parse(syntax: str, text: str):
    """The parse tree of ``text`` in ``syntax``."""
    return _parse_a1111(text) if syntax == "a1111" else _parse_compel(text)


def _try_parse(syntax: str, text: str):
    """(tree, None) or (None, the PromptEditError the parse raised)."""
    try:
        return _parse(syntax, text), None
    except EditPromptError as e:
        return None, e


def _auto(text: str) -> tuple[str, Any, str]:
    """(syntax, tree, note) for ``syntax="auto"``: the syntax whose own constructs the prompt uses."""
    a_tree, a_err = _try_parse("a1111", text)
    c_tree, c_err = _try_parse("compel", text)
    a_unique, a_shared = _a1111_markers(a_tree, text) if a_tree is not None else ([], [])
    c_unique = _compel_markers(c_tree, _compel_module()) if c_tree is not None else []
    if a_unique and c_unique:
        raise AmbiguousSyntaxError(
            f"the prompt mixes A1111 ({a_unique[0]}) and compel ({c_unique[0]}) constructs; pass syntax='a1111' or "
            "syntax='compel'")
    if a_unique:
        return "a1111", a_tree, f"auto: read as A1111 syntax ({a_unique[0]} is A1111's)"
    if c_unique:
        return "compel", c_tree, f"auto: read as compel syntax ({c_unique[0]} is compel's)"
    compel_hint = re.search(r"\.(swap|attend|blend|and|add)\b|\b(with|use)Lora\b", text)
    if a_err is not None and c_err is not None:
        raise c_err if compel_hint else a_err
    if a_err is not None:  # compel's reading has no construct of its own: A1111's error says more
        raise a_err
    if c_err is not None:
        if a_shared and not compel_hint:
            return "a1111", a_tree, f"auto: read as A1111 syntax (compel cannot read the prompt: {c_err})"
        raise c_err
    if a_shared:
        marker = a_shared[0]
        levels = max(1, min(len(marker) - len(marker.lstrip("(")), len(marker) - len(marker.rstrip(")"))))
        raise AmbiguousSyntaxError(
            f"{marker} scales attention by {1.1 ** levels:.4g} in A1111 but is only a group in compel, and nothing "
            "else in the prompt tells the syntaxes apart; pass syntax='a1111' or syntax='compel'")
    raise NoEditError(f"the prompt has no edit construct (A1111 [from:to:when] or (word:1.3), compel .swap() or "
                      f"word+): {_short(text, 60)!r}")


def _check_arguments(text, syntax, steps) -> None:
    """Refuse arguments of the wrong type or value."""
    if not isinstance(text, str):
        raise PromptError(f"an edit prompt must be text, got {type(text).__name__}")
    if syntax not in SYNTAXES:
        raise ParameterError(f"syntax must be one of {', '.join(SYNTAXES)}, got {syntax!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ParameterError(f"num_inference_steps must be a whole number of at least 1, got {steps!r}")
    if not text.strip():
        raise NoEditError("the edit prompt is empty")


def _other_syntax_hint(syntax: str, text: str) -> str:
    """A hint that the prompt reads as the other syntax, for a NoEditError."""
    other = "compel" if syntax == "a1111" else "a1111"
    tree, err = _try_parse(other, text)
    if err is not None:
        return ""
    markers = _a1111_markers(tree, text)[0] if other == "a1111" else _compel_markers(tree, _compel_module())
    return f"; {markers[0]} is {_NAMES[other]} syntax: pass syntax={other!r} or 'auto'" if markers else ""


def parse_edit_prompt(text: str, syntax: str = "auto", *, num_inference_steps: int | None = None) -> PromptEdit:
    """Read one edit prompt (A1111 or compel syntax) into a Prompt-to-Prompt edit.

    Args:
        text: the prompt, e.g. ``"a [red:blue:0.6] circle on a (white:1.2) background"``.
        syntax: ``auto`` (see the module docstring), ``a1111`` or ``compel``.
        num_inference_steps: the number of steps the edit runs at: needed for A1111 step numbers (``[a:b:10]``),
            and gives every A1111 window A1111's own step count (without it a fraction stays as written).

    Raises:
        EditPromptError (a PromptError, so a ValueError) subclasses, each with a one-line message.
    """
    _check_arguments(text, syntax, num_inference_steps)
    notes: list[str] = []
    if syntax in ("auto", "a1111"):
        _refuse_keywords(text)
    if syntax == "auto":
        syntax, tree, note = _auto(text)
        notes.append(note)
    else:
        tree = _parse(syntax, text)
    reading = _read(syntax, tree, text, num_inference_steps)
    try:
        return _build(reading, text, notes)
    except NoEditError as e:
        hint = _other_syntax_hint(syntax, text) if not notes else ""
        raise NoEditError(str(e) + hint) from None
