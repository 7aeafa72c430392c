"""Edit prompts in the syntax users already know: one prompt → a Prompt-to-Prompt edit.

:func:`parse_edit_prompt` reads a single prompt written in AUTOMATIC1111's
prompt-editing syntax (``a [red:blue:0.6] circle``) or in compel / InvokeAI's
(``a red.swap(blue) circle``) and returns a :class:`PromptEdit`: the source
and target prompts and the windows and weights of an :class:`~promptedit.editing.EditSpec`
(``EditSpec(**edit.spec_kwargs())``), the equivalent ``promptedit edit`` flags
(:meth:`PromptEdit.flags`) and a record for result.json (:meth:`PromptEdit.to_dict`).

The parsers are the tools' own: A1111's lark grammar for scheduling (from its
``modules/prompt_parser.py``, run with the ``lark`` package) plus its
``re_attention`` weight scan, and compel's ``PromptParser`` (pyparsing). Both
are pure Python; this module imports neither torch nor diffusers.

Why the edit keeps the layout: A1111 and InvokeAI draw *one* image and switch
its prompt part-way; promptedit draws the source and the target side by side
from the same noise and gives the target the source's cross-attention maps
for the first part of the steps (Hertz et al. 2023). Each construct's timing
therefore becomes an injection window.

Mapping (F: a fraction of the steps). The edit is a *replace* edit when every
construct keeps its number of words, else a *refine* edit; ``mode`` stays
``auto`` (``resolve_mode`` picks the same from the prompts) except where the
word counts happen to balance out, where it is ``refine``:

==============================  ==========================================  ==========================================
construct                       what promptedit does                        how it differs from the original tool
==============================  ==========================================  ==========================================
A1111 ``[from:to:when]`` in a   source has ``from``, target ``to``; ``to``  A1111 draws ``from`` until ``when``, then
replace edit                    takes ``from``'s cross-attention maps for   switches the text to ``to`` in the same
                                the first ``when`` of the steps             image; here the target is a second image
                                (``cross_replace_words {to: when}``); the   that borrows the source's maps
                                other words keep the model's window
A1111 ``[to:when]`` (add),      a refine edit: the kept words take the      A1111 adds or removes the text at ``when``
``[from::when]`` (remove), and  source's maps for the first ``when``
every ``[from:to:when]`` of a   (``cross_replace = when``: one window for
prompt that has them (a swap    all kept words, so every ``when`` of the
is then a removal plus an       prompt must agree, else refused); new
addition)                       words keep their own maps
``when`` as written             with a decimal point: a fraction, at most   the same reading (A1111's current
                                1; without: a step number, which needs      scheduling), but A1111 silently caps a
                                ``num_inference_steps`` (n ≤ steps). Given  value past the end and reads a
                                the steps N, the window is A1111's own      negative one as 0 (both refused here)
                                count of the steps that draw ``from``:
                                s + 1 for s = int(when · N) (or n), as its
                                denoiser draws ``from`` while its step,
                                counted from 0, is ≤ s; all N once s
                                reaches N − 1; none for s = 0. Without N
                                a fraction stays as written (then about one
                                step shorter than A1111's)
A1111 ``(w:1.3)``, ``(w)``      ``reweight {w: c}``: the target's           A1111 scales the token *embeddings* in the
×1.1, ``[w]`` ÷1.1, nesting     cross-attention to ``w`` is scaled by c     one image; here the source is drawn
multiplies                      (P2P re-weighting); the source is drawn     unweighted and the weight is part of the
                                without weights                             edit
A1111 ``\\(`` ``\\)`` ``\\[``   literal brackets (``\\|`` a literal ``|``)  the same
``\\]`` ``\\\\``
compel ``a.swap(b)``, ``(a      as ``[a:b:when]``; options below; a swap    InvokeAI draws the original prompt, then
b).swap(c d)``, ``"a            without options takes the model's windows   the edited one with the original's maps on
b".swap(c)``, ``a.swap()``                                                  the unchanged words only
``.swap(…, t_start=F)``         replace: ``cross_replace_words {b: F}``,    InvokeAI draws the *original* prompt
                                as A1111's ``when``; refine: refused (the   before t_start
                                swapped-in words have no source words)
``.swap(…, t_end=F)``           ``cross_replace = F``: every kept word      InvokeAI switches back to the original
                                takes the source's maps for the first F     prompt after t_end; here the target goes
                                                                            on, only the injection stops
``.swap(…, s_start=A,           ``self_replace (A, B)`` (``B`` alone when   InvokeAI's diffusers code ignores them
s_end=B)``,                     A = 0); compel sets B = 1 − S^(1/3)
``shape_freedom=S``
swap options at compel's        unset: the model's windows                  compel fills in t_start 0.2, t_end 1,
defaults                                                                    s_start = s_end = 0 before promptedit sees
                                                                            them, so a default written out is read as
                                                                            unset too
``t_start`` ≥ ``t_end`` (given  refused                                     InvokeAI injects while t_start ≤ t < t_end:
or compel's default)                                                        an empty window, the swap never edits
options on several swaps        each swap's own                             compel and InvokeAI apply the first
                                                                            swap's options to every swap (compel
                                                                            prints a warning)
compel ``w+``/``w-`` (1.1ⁿ /    ``reweight`` in the target, as A1111's      compel scales the embedding (≥ 1) or
0.9ⁿ), ``(w x)1.3``, ``"w       weights                                     blends it towards the prompt without the
x"-``, ``w.attend(1.3)``,                                                   words (< 1), in the one image
nesting multiplies
==============================  ==========================================  ==========================================

Refused by name, never dropped (:class:`UnsupportedConstructError`): A1111's
``AND``, ``BREAK`` and extra networks ``<lora:…>`` (also in ``auto``), alternation ``[a|b]``, nested
prompt editing ``[a:[b:c:2]:5]``, a weight inside ``from`` (promptedit draws
the source unweighted), prompt editing inside a weight's number; compel's
``.blend()``, ``.and()``/``.add()``, ``withLora()``/``useLora()``, a weight
inside a swap's original words, a swap inside a swap, an unknown swap option;
in both, an edit or weight that covers part of a word. Half-written syntax is
a :class:`PromptSyntaxError` with the column and a caret, where A1111 silently
reads stray brackets as text (or drops all prompt editing) and compel reads an
unparsed ``.swap(`` as words.

Several constructs compose into one source and one target. A weight wrapping
an edit applies to the target's words; ``[a:(b:1.2):0.5]`` weights ``b``.
Weights and per-word windows are by word (or phrase), as ``EditSpec`` takes
them, so a word weighted differently in two places, or a swapped-in word that
also occurs unedited, is refused (:class:`EditConflictError`) rather than
applied to every occurrence.

``syntax="auto"`` looks for constructs only one syntax has (A1111: ``[...]``,
``(w:1.3)``; compel: ``.swap()``, ``.attend()``, ``+``/``-`` and number
weights, ``.blend()``, ``.and()``, loras). A prompt with both, or with only a
plain ``(w)`` (A1111: ×1.1, compel: a group), is refused as ambiguous. A
prompt with none is a :class:`NoEditError`, as is one whose weights are all 1.

Smaller rules: a group whose number A1111 does not read as one (``(red:1e9)``, ``(red:nan)``) weights its
words, colon and all, ×1.1, as A1111 does, with a warning; whitespace runs become one space (the text encoder
ignores them; compel's spaces before punctuation, which it adds, are dropped); weights are rounded to 12
significant digits (1.1 × 1.1 is 1.21); ``AND`` and ``BREAK`` are words in ``syntax="compel"``, where they are
no syntax; where A1111's own grammar is ambiguous (its start rule also reads brackets as text, and its Earley
parser then sometimes drops an edit, as in ``[a[b:c:5]]:d``) promptedit takes the edit.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import os
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from .errors import ParameterError, PromptEditWarning, PromptError
from .tokens import prompt_words, swapped_words

__all__ = [
    "SYNTAXES",
    "AmbiguousSyntaxError",
    "EditConflictError",
    "EditPromptError",
    "NoEditError",
    "PromptEdit",
    "PromptSyntaxError",
    "PromptValueError",
    "UnsupportedConstructError",
    "parse_edit_prompt",
]

SYNTAXES = ("auto", "a1111", "compel")
Window = float | tuple[float, float]

_NAMES = {"a1111": "A1111", "compel": "compel"}


# ----------------------------------------------------------------------------- errors


def _one_line(message: str) -> str:
    """The message with line breaks shown as ``\\n``, so that it stays one line."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


class EditPromptError(PromptError):
    """An edit prompt cannot be turned into a Prompt-to-Prompt edit; the message is one line."""

    def __init__(self, message: str):
        super().__init__(_one_line(message))


class PromptSyntaxError(EditPromptError):
    """The prompt does not follow the syntax: names the column and marks it with a caret."""

    def __init__(self, syntax: str, prompt: str, pos: int, problem: str):
        pos = max(0, min(pos, len(prompt)))
        super().__init__(f"{_NAMES.get(syntax, syntax)} syntax error ({problem}) at {_where(prompt, pos)}: "
                         f"{prompt[:pos]}^{prompt[pos:]}")
        self.syntax, self.prompt, self.pos = syntax, prompt, pos
        self.column = pos - (prompt.rfind("\n", 0, pos) + 1) + 1


class UnsupportedConstructError(EditPromptError):
    """A construct of the syntax has no Prompt-to-Prompt meaning; ``construct`` names it."""

    def __init__(self, construct: str, message: str):
        super().__init__(message)
        self.construct = construct


class PromptValueError(EditPromptError):
    """A number in the prompt (weight, ``when``, swap option) cannot be used."""


class EditConflictError(EditPromptError):
    """Constructs ask for different things where an ``EditSpec`` has room for one."""


class NoEditError(EditPromptError):
    """The prompt has no edit construct (or only ones that change nothing)."""


class AmbiguousSyntaxError(EditPromptError):
    """``syntax="auto"`` cannot tell A1111 from compel, and the readings differ."""


def _where(text: str, pos: int) -> str:
    """``column C`` (or ``line L, column C`` in a multi-line prompt) of offset ``pos``."""
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {text.count(chr(10), 0, pos) + 1}, column {col}" if "\n" in text else f"column {col}"


def _short(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- result


def _fmt(x: float) -> str:
    """A number as the CLI reads it back exactly: short when that is exact."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def _fmt_window(window: Window) -> str:
    """A window as the CLI writes it: ``F`` or ``START,END``."""
    if isinstance(window, tuple):
        return f"{_fmt(window[0])},{_fmt(window[1])}"
    return _fmt(window)


def _json_window(window: Window | None):
    """A window for JSON: a number, a [start, end] list or None."""
    return list(window) if isinstance(window, tuple) else window


@dataclass(frozen=True)
class PromptEdit:
    """A Prompt-to-Prompt edit read from one edit prompt.

    Attributes:
        source: the prompt of the image to edit.
        targets: the edited prompt (one).
        mode: ``auto`` (``resolve_mode`` picks replace or refine), ``refine`` where the
            constructs change the number of words but auto would pick replace, or
            ``reweight`` when the prompt only has weights.
        cross_replace: the window of every word (None: the model's default).
        cross_replace_words: phrase → window of the swapped-in words.
        self_replace: self-attention window (None: the model's default).
        reweight: phrase → attention scale in the target.
        syntax: the syntax the prompt was read in (``a1111`` or ``compel``).
        prompt: the edit prompt as given.
        notes: one line per construct saying what promptedit does with it.
    """

    source: str
    targets: tuple[str, ...]
    mode: str = "auto"
    cross_replace: Window | None = None
    cross_replace_words: Mapping[str, Window] = field(default_factory=dict)
    self_replace: Window | None = None
    reweight: Mapping[str, float] = field(default_factory=dict)
    syntax: str = ""
    prompt: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        """Store the mappings as read-only views, so that the frozen edit is frozen all the way down."""
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "cross_replace_words", MappingProxyType(dict(self.cross_replace_words)))
        object.__setattr__(self, "reweight", MappingProxyType(dict(self.reweight)))
        object.__setattr__(self, "notes", tuple(self.notes))

    def spec_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``EditSpec(**kwargs)``."""
        return {
            "source": self.source,
            "targets": tuple(self.targets),
            "mode": self.mode,
            "cross_replace": self.cross_replace,
            "cross_replace_words": dict(self.cross_replace_words),
            "self_replace": self.self_replace,
            "reweight": dict(self.reweight),
        }

    def flags(self) -> list[str]:
        """The equivalent ``promptedit edit`` flags (``--mode reweight`` needs no ``--target``)."""
        out = ["--source", self.source]
        if self.mode == "reweight":
            out += ["--mode", "reweight"]
        else:
            for t in self.targets:
                out += ["--target", t]
            if self.mode != "auto":
                out += ["--mode", self.mode]
        if self.cross_replace is not None:
            out += ["--cross-replace", _fmt_window(self.cross_replace)]
        for word, window in self.cross_replace_words.items():
            out += ["--cross-replace", f"{word}={_fmt_window(window)}"]
        if self.self_replace is not None:
            out += ["--self-replace", _fmt_window(self.self_replace)]
        for word, c in self.reweight.items():
            out += ["--reweight", f"{word}={_fmt(c)}"]
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: the prompt, the syntax used, the edit and the notes."""
        return {
            "prompt": self.prompt,
            "syntax": self.syntax,
            "source": self.source,
            "targets": list(self.targets),
            "mode": self.mode,
            "cross_replace": _json_window(self.cross_replace),
            "cross_replace_words": {w: _json_window(v) for w, v in self.cross_replace_words.items()},
            "self_replace": _json_window(self.self_replace),
            "reweight": dict(self.reweight),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- readings


@dataclass
class _Edit:
    """One edit construct: its text, timing, and (after analysis) the words it changes."""

    label: str
    when: float | None = None  # A1111: the fraction `when` stands for
    when_note: str = ""  # how a step number became that fraction
    options: dict[str, float] = field(default_factory=dict)  # compel: swap options not at their defaults
    source: str = ""
    target: str = ""
    kind: str = ""  # swap, add or remove
    keeps_count: bool = True


@dataclass
class _Reading:
    """A prompt read in one syntax: source and target as tagged pieces, and the edits."""

    syntax: str
    source: list[tuple[str, float, int | None]]  # (text, weight (ignored), edit index)
    target: list[tuple[str, float, int | None]]  # (text, weight, edit index)
    edits: list[_Edit]
    tidy: bool = False  # compel loses the spacing: drop the spaces it puts before punctuation


@dataclass
class _Word:
    """A word of the source or target with the weight and edit of its characters."""

    text: str  # lower-cased, as tokens.prompt_words gives it
    start: int
    end: int
    weight: float
    edit: int | None


# ----------------------------------------------------------------------------- A1111

# A1111's scheduling grammar (modules/prompt_parser.py), rules unchanged except
# `start`: A1111 also accepts stray brackets there as text, which would hide a
# half-written edit, so only stray colons (ordinary text) are kept.
_A1111_GRAMMAR = r"""
!start: (prompt | /:+/)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""

# A1111's re_attention and its AND / BREAK keywords, as in modules/prompt_parser.py.
_RE_ATTENTION = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)
_RE_AND = re.compile(r"\bAND\b")
_RE_BREAK = re.compile(r"\bBREAK\b")
_RE_EXTRA_NETWORK = re.compile(r"<(lora|lyco|hypernet):[^<>]*>", re.IGNORECASE)  # A1111 extra networks
_ROUND, _SQUARE = 1.1, 1 / 1.1


@functools.lru_cache(maxsize=1)
def _a1111_parser():
    """The lark Earley parser of A1111's grammar (built once)."""
    import lark

    return lark.Lark(_A1111_GRAMMAR, propagate_positions=True)


def _refuse_keywords(text: str) -> None:
    """Refuse A1111's AND (composable diffusion), BREAK (new token chunk) and extra networks (``<lora:…>``)."""
    m = _RE_AND.search(text)
    if m:
        raise UnsupportedConstructError(
            "AND", f"AND at {_where(text, m.start())} (A1111 composable diffusion: several prompts drawn at once) has "
                   "no Prompt-to-Prompt meaning; promptedit edits one prompt into another")
    m = _RE_BREAK.search(text)
    if m:
        raise UnsupportedConstructError(
            "BREAK", f"BREAK at {_where(text, m.start())} (A1111: start a new 75-token chunk) has no Prompt-to-Prompt "
                     "meaning; the text encoder takes one chunk")
    m = _RE_EXTRA_NETWORK.search(text)
    if m:
        raise UnsupportedConstructError(
            m.group(1).lower(), f"{m.group(0)} at {_where(text, m.start())} (A1111: load extra network weights) is "
                                 "not text, and promptedit loads no LoRA or hypernetwork: the text encoder would "
                                 "read it as words; remove it")


def _unescaped(text: str):
    """(offset, character) of each character of ``text`` that a backslash does not escape."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        yield i, text[i]
        i += 1


def _unclosed_bracket(text: str, brackets: str = "([") -> int | None:
    """Offset of the innermost of ``brackets`` never closed (backslash escapes skipped), or None."""
    closing = {"(": ")", "[": "]"}
    stack: list[int] = []
    for i, ch in _unescaped(text):
        if ch in brackets:
            stack.append(i)
        elif stack and ch == closing[text[stack[-1]]]:
            stack.pop()
    return stack[-1] if stack else None


#: the deepest bracket nesting each parser is given: compel's pyparsing grammar takes about 3.5x longer per level
#: of parentheses (measured: depth 4 0.6 s, 5 2.1 s, 6 8.2 s), and both parsers recurse once per level
MAX_DEPTH = {"a1111": 32, "compel": 4}


def _too_deep(syntax: str, text: str, brackets: str) -> None:
    """Refuse brackets nested deeper than ``MAX_DEPTH[syntax]`` (backslash escapes skipped), at the first one."""
    depth = 0
    for i, ch in _unescaped(text):
        if ch in brackets:
            depth += 1
            if depth > MAX_DEPTH[syntax]:
                raise PromptSyntaxError(syntax, text, i, f"brackets are nested more than {MAX_DEPTH[syntax]} deep "
                                                         f"here, more than {_NAMES[syntax]}'s parser is given")
        elif ch in ")]":
            depth = max(0, depth - 1)


def _a1111_problem(text: str, pos: int) -> str:
    """What is wrong with the character at ``pos``, in words."""
    ch = text[pos]
    if ch == "|":
        return "'|' only separates alternatives inside [a|b]; write \\| for a literal |"
    if ch in ")]" and _unclosed_bracket(text[:pos], "(" if ch == ")" else "[") is None:
        return f"{ch!r} is never opened; write \\{ch} for a literal bracket"
    if ch == "]":
        return "']' ends a [...] that is neither [from:to:when] (when is a number) nor [words] nor [a|b]"
    return f"unexpected {ch!r}"


def _end_error(text: str) -> PromptSyntaxError:
    """The error for a prompt that ends too soon: at the bracket left open, if any."""
    pos = _unclosed_bracket(text)
    if pos is None:
        return PromptSyntaxError("a1111", text, len(text), "unexpected end")
    return PromptSyntaxError("a1111", text, pos, f"{text[pos]!r} is never closed")


def _parse_a1111(text: str):
    """A1111's parse tree of ``text``; PromptSyntaxError where the grammar does not fit."""
    import lark

    _too_deep("a1111", text, "([")
    try:
        return _a1111_parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        pos = getattr(e, "pos_in_stream", None)
        if isinstance(e, lark.exceptions.UnexpectedEOF) or pos is None or not 0 <= pos < len(text):
            raise _end_error(text) from None
        raise PromptSyntaxError("a1111", text, pos, _a1111_problem(text, pos)) from None


def _span(text: str, tree) -> str:
    """The text a parse-tree node came from."""
    return text[tree.meta.start_pos:tree.meta.end_pos]


def _a1111_markers(tree, text: str) -> tuple[list[str], list[str]]:
    """Constructs only A1111 has, and plain ``(words)``, which compel reads as a mere group."""
    unique, shared = [], []
    for node in tree.iter_subtrees_topdown():
        if node.data in ("scheduled", "alternate"):
            unique.append(_span(text, node))
        elif node.data == "emphasized":
            first = node.children[0]
            plain_group = first == "(" and not any(getattr(c, "type", "") == "COLON" for c in node.children)
            (shared if plain_group else unique).append(_span(text, node))
    return unique, shared


def _a1111_when(edit: _Edit, number: str, steps: int | None) -> None:
    """Set ``edit.when`` from A1111's ``when``: a fraction with a decimal point, else a step number.

    Given the number of steps, the window is A1111's own count of the steps that draw ``from``
    (:func:`_a1111_first_steps`); without it a fraction stays as written.
    """
    value = float(number)
    if not math.isfinite(value):
        raise PromptValueError(f"when {_short(number, 20)} of {edit.label} is not a finite number")
    if value < 0:
        raise PromptValueError(f"when {number} of {edit.label} is negative; A1111 reads it as 0 (the second text "
                               "from the first step): write 0")
    fraction = "." in number
    if fraction and value > 1:
        raise PromptValueError(
            f"when {number} of {edit.label} has a decimal point, so A1111 reads it as a fraction of the steps, "
            "which must be at most 1 (a step number is written without one)")
    if not fraction and value != int(value):
        raise PromptValueError(f"when {number} of {edit.label} is a step number (no decimal point) and must be whole")
    if steps is None:
        if fraction or value == 0:
            edit.when = value
            return
        raise PromptValueError(
            f"when {number} of {edit.label} is a step number (no decimal point); pass num_inference_steps to turn it "
            "into a fraction of the steps, or write a fraction such as 0.5")
    if not fraction and value > steps:
        raise PromptValueError(f"when {number} of {edit.label} is past the last of the {steps} steps")
    k = _a1111_first_steps(value * steps if fraction else value, steps)
    edit.when = k / steps  # control.step_window gives back exactly k steps
    edit.when_note = f" ({k} of {steps} steps, A1111's count)"


def _a1111_first_steps(when_steps: float, steps: int) -> int:
    """How many of ``steps`` sampling steps A1111 draws ``from`` of ``[from:to:when]``, ``when_steps`` being
    ``when`` in steps (``when · steps`` for a fraction).

    A1111's prompt_parser switches at ``s = min(steps, int(when_steps))`` and its denoiser, counting steps from
    0, draws ``from`` while the step is at most ``s``: ``s + 1`` steps (all of them once ``s`` reaches the last),
    none where ``s`` < 1 (the schedule then has no switch and ``to`` is drawn throughout).
    """
    switch = min(steps, int(when_steps))
    return 0 if switch < 1 else min(switch + 1, steps)


class _A1111Reader:
    """Walks A1111's parse tree into tagged source and target markup, then applies re_attention."""

    def __init__(self, text: str, steps: int | None):
        self.text, self.steps = text, steps
        self.edits: list[_Edit] = []
        self.sides: dict[str, list[tuple[str, int | None, int]]] = {"source": [], "target": []}

    def read(self, tree) -> _Reading:
        """The reading of the whole tree."""
        self._walk(tree, ("source", "target"), None, False)
        return _Reading("a1111", self._attention(self.sides["source"]),
                        self._attention(self.sides["target"], warn=True), self.edits)

    def _walk(self, node, sides: tuple[str, ...], edit: int | None, in_from: bool) -> None:
        """Emit the markup text of ``node`` to ``sides``, tagged with ``edit``."""
        if node is None:
            return
        if not hasattr(node, "data"):  # a token: text as written, brackets included
            for side in sides:
                self.sides[side].append((str(node), edit, node.start_pos))
            return
        if node.data == "scheduled":
            self._scheduled(node, sides, edit)
            return
        if node.data == "alternate":
            raise UnsupportedConstructError(
                "alternation", f"alternation {_span(self.text, node)} (A1111 switches the words every step) has no "
                               "Prompt-to-Prompt meaning")
        if node.data == "emphasized" and in_from:
            label = self.edits[edit].label if edit is not None else _span(self.text, node)
            raise UnsupportedConstructError(
                "weight in from", f"{label} weights words only the source has ({_span(self.text, node)}); promptedit "
                                  "draws the source without weights, so weight the new words or the whole edit")
        for child in node.children:
            self._walk(child, sides, edit, in_from)

    def _scheduled(self, node, sides: tuple[str, ...], edit: int | None) -> None:
        """A ``[from:to:when]``: ``from`` to the source, ``to`` to the target, as one edit."""
        label = _span(self.text, node)
        inner = [n for n in node.iter_subtrees() if n is not node and n.data == "scheduled"]
        if edit is not None or inner:
            outer = self.edits[edit].label if edit is not None else label
            raise UnsupportedConstructError(
                "nested prompt editing", f"nested prompt editing {outer} switches the text more than once; promptedit "
                                         "edits one source into one target")
        before, after, _, number, _ = node.children
        new = _Edit(label)
        _a1111_when(new, str(number), self.steps)
        self.edits.append(new)
        k = len(self.edits) - 1
        self._walk(before, tuple(s for s in sides if s == "source"), k, True)
        self._walk(after, tuple(s for s in sides if s == "target"), k, False)

    def _attention(self, segments: list[tuple[str, int | None, int]], warn: bool = False
                   ) -> list[tuple[str, float, int | None]]:
        """A1111's parse_prompt_attention on the markup, keeping each character's edit tag; ``warn``: say where a
        group's number is not one."""
        markup = "".join(s for s, _, _ in segments)
        tags = [e for s, e, _ in segments for _ in s]
        origin = [start + i for s, _, start in segments for i in range(len(s))]
        res: list[list] = []
        rounds: list[int] = []
        opened: list[int] = []  # where each open round bracket is in the markup
        squares: list[int] = []
        for m in _RE_ATTENTION.finditer(markup):
            tok, weight = m.group(0), m.group(1)
            if tok.startswith("\\"):
                res.append([tok[1:], 1.0, tags[m.end() - 1]])
            elif tok == "(":
                rounds.append(len(res))
                opened.append(m.start())
            elif tok == "[":
                squares.append(len(res))
            elif weight is not None and rounds:
                self._check_untagged(tags, m)
                _multiply(res, rounds.pop(), self._weight(weight, origin[m.start(1)]))
                opened.pop()
            elif tok == ")" and rounds:
                start = opened.pop()
                if warn:
                    self._warn_words_as_weight(markup[start:m.end()], origin[start])
                _multiply(res, rounds.pop(), _ROUND)
            elif tok == "]" and squares:
                _multiply(res, squares.pop(), _SQUARE)
            else:
                res.extend([piece, 1.0, tag] for piece, tag in _split_tags(tok, tags[m.start():m.end()]))
        for pos in rounds:  # unreachable with the strict grammar; kept as A1111 has it
            _multiply(res, pos, _ROUND)
        for pos in squares:
            _multiply(res, pos, _SQUARE)
        return [(t, w, e) for t, w, e in res]

    def _warn_words_as_weight(self, group: str, pos: int) -> None:
        """Warn where ``(words:x)`` ends in something A1111 does not read as a weight (``1e9``, ``nan``): it then
        weights the words, colon and all, ×1.1, as promptedit does after it."""
        inner = group[1:-1]
        words, colon, after = inner.rpartition(":")
        if colon and not any(ch in after for ch in "()[]"):
            warnings.warn(f"{group} at {_where(self.text, pos)}: A1111 reads {after.strip() or 'nothing'!r} after "
                          "the colon as words, not as a weight (a weight is digits and a point, such as 1.3), so "
                          f"the words {inner.strip()!r} are weighted as a group (×1.1); write ({words.strip()}:1.3) "
                          "for a weight",
                          PromptEditWarning, stacklevel=2)

    def _check_untagged(self, tags: list[int | None], m: re.Match) -> None:
        """Refuse a weight whose number is (partly) prompt edited, as in ``(w:[1.2:1.5:5])``."""
        inside = set(tags[m.start():m.end()])
        if len(inside) > 1:
            label = self.edits[next(t for t in inside if t is not None)].label
            raise UnsupportedConstructError(
                "edit in weight", f"prompt editing {label} changes an attention weight's number; promptedit has one "
                                  "weight per word")

    def _weight(self, number: str, pos: int) -> float:
        """An attention weight from its text; A1111 would fail on ``1.2.3`` too."""
        try:
            value = float(number)
        except ValueError:
            raise PromptSyntaxError("a1111", self.text, pos, f"attention weight {number!r} is not a number") from None
        if not math.isfinite(value):
            raise PromptValueError(f"attention weight {_short(number, 20)} at {_where(self.text, pos)} is not a "
                                   "finite number")
        return value


def _multiply(res: list[list], start: int, factor: float) -> None:
    """Multiply the weights of ``res[start:]``, as A1111's multiply_range."""
    for item in res[start:]:
        item[1] *= factor


def _split_tags(text: str, tags: list[int | None]) -> list[tuple[str, int | None]]:
    """Split ``text`` where its characters' edit tags change."""
    out: list[tuple[str, int | None]] = []
    for ch, tag in zip(text, tags):
        if out and out[-1][1] == tag:
            out[-1] = (out[-1][0] + ch, tag)
        else:
            out.append((ch, tag))
    return out


# ----------------------------------------------------------------------------- compel

_COMPEL_OPERATORS = (".swap(", ".attend(", ".blend(", ".and(", ".add(", "withLora(", "useLora(")
_SWAP_OPTIONS = ("t_start", "t_end", "s_start", "s_end")


@functools.lru_cache(maxsize=1)
def _compel_module() -> ModuleType:
    """compel's prompt_parser module, without running compel's package ``__init__``.

    ``import compel`` imports torch, transformers and diffusers (about 10 s, and
    warnings); the parser module itself needs only pyparsing, so its file is run
    on its own unless compel is already imported.
    """
    if "compel.prompt_parser" in sys.modules:
        return sys.modules["compel.prompt_parser"]
    spec = importlib.util.find_spec("compel")
    if spec is None:
        raise ModuleNotFoundError("the compel syntax needs the compel package: pip install 'compel>=2.5,<3'")
    for folder in spec.submodule_search_locations or ():
        path = os.path.join(folder, "prompt_parser.py")
        sub = importlib.util.spec_from_file_location("promptedit._compel_prompt_parser", path)
        if not os.path.isfile(path) or sub is None or sub.loader is None:
            continue
        module = importlib.util.module_from_spec(sub)
        sys.modules[sub.name] = module  # as importing would, for what looks itself up by module name
        sub.loader.exec_module(module)
        return module
    return importlib.import_module("compel.prompt_parser")


@functools.lru_cache(maxsize=1)
def _compel_parser():
    """compel's PromptParser (built once)."""
    return _compel_module().PromptParser()


@functools.lru_cache(maxsize=1)
def _compel_defaults() -> Mapping[str, float]:
    """compel's swap options when none are given."""
    m = _compel_module()
    return MappingProxyType(dict(m.CrossAttentionControlSubstitute([], [], None).options))


def _compel_commas(text: str) -> tuple[str, list[int]]:
    """compel's ``re.sub(r',(\\S)', r', \\1', prompt)``, with each character's offset in ``text``."""
    inserted = {m.start() for m in re.finditer(r",(\S)", text)}
    out, origin = [], []
    for i, ch in enumerate(text):
        out.append(ch)
        origin.append(i)
        if i in inserted:
            out.append(" ")
            origin.append(i + 1)
    origin.append(len(text))
    return "".join(out), origin


def _compel_balance(text: str) -> None:
    """Refuse unbalanced parentheses or quotes, which compel would silently read as words."""
    stack: list[int] = []
    quote, i = None, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            quote = i if quote is None else None
        elif ch == "(":
            stack.append(i)
        elif ch == ")":
            if not stack:
                raise PromptSyntaxError("compel", text, i, "')' is never opened; write \\) for a literal bracket")
            stack.pop()
        i += 1
    if quote is not None:
        raise PromptSyntaxError("compel", text, quote, "'\"' is never closed")
    if stack:
        raise PromptSyntaxError("compel", text, stack[-1], "'(' is never closed")


def _compel_nodes(node, m: ModuleType):
    """Every node of compel's parse tree, depth first."""
    yield node
    if isinstance(node, (list, m.pp.ParseResults)):
        children = list(node)
    elif isinstance(node, m.CrossAttentionControlSubstitute):
        children = [node.original, node.edited]
    elif isinstance(node, m.Conjunction):
        children = list(node.prompts)
    elif isinstance(node, m.Blend):
        children = list(node.prompts)
    else:
        children = list(getattr(node, "children", []))
    for child in children:
        yield from _compel_nodes(child, m)


def _compel_text(node, m: ModuleType) -> str:
    """The words of a compel node, weights and swaps left out (for messages)."""
    return " ".join(n.text for n in _compel_nodes(node, m) if isinstance(n, m.Fragment) and n.text)


def _parse_compel(text: str):
    """compel's raw parse tree (a Conjunction); PromptSyntaxError where compel would read syntax as words."""
    m = _compel_module()
    _compel_balance(text)
    _too_deep("compel", text, "(")
    normalized, origin = _compel_commas(text)
    try:
        root = _compel_parser().conjunction.parse_string(normalized)[0]
    except m.pp.ParseBaseException as e:
        pos = origin[min(e.loc, len(origin) - 1)]
        raise PromptSyntaxError("compel", text, pos, "compel cannot parse this") from None
    except m.PromptParser.ParsingException as e:
        if "Blend" in str(e):
            raise UnsupportedConstructError(".blend()", ".blend() (a mix of several prompts' embeddings) has no "
                                                        "Prompt-to-Prompt meaning") from None
        raise PromptSyntaxError("compel", text, 0, _short(_one_line(str(e)), 80)) from None
    for node in _compel_nodes(root, m):
        if isinstance(node, m.Fragment):
            for op in _COMPEL_OPERATORS:
                if op in node.text:
                    start = text.find(node.text)
                    pos = start + node.text.find(op) if start >= 0 else max(text.find(op), 0)
                    raise PromptSyntaxError(
                        "compel", text, pos, f"{op[:-1]}() is not attached to a word, (group) or \"quote\" here, so "
                                             "compel reads it as words")
    return root


def _compel_markers(root, m: ModuleType) -> list[str]:
    """Constructs compel gives a meaning to (swaps, weights, blends, conjunctions, loras)."""
    found = []
    if len(root.prompts) > 1 or list(root.weights) != [1.0]:
        found.append(".and()")
    for node in _compel_nodes(root, m):
        if isinstance(node, m.CrossAttentionControlSubstitute):
            found.insert(0, _swap_label(_compel_text(node.original, m), _compel_text(node.edited, m)))
        elif isinstance(node, m.Attention):
            found.append(f"a weight on {_compel_text(node, m)!r}")
        elif isinstance(node, m.Blend):
            found.append(".blend()")
        elif isinstance(node, m.LoraWeight):
            found.append("withLora()")
    return found


class _CompelReader:
    """Walks compel's parse tree into tagged source and target pieces."""

    def __init__(self, text: str):
        self.text = text
        self.m = _compel_module()
        self.defaults = _compel_defaults()
        self.edits: list[_Edit] = []
        self.source: list[tuple[str, float, int | None]] = []
        self.target: list[tuple[str, float, int | None]] = []

    def read(self, root) -> _Reading:
        """The reading of the whole prompt."""
        m = self.m
        if len(root.prompts) > 1 or list(root.weights) != [1.0] or re.search(r"\)\s*\.(and|add)\(", self.text):
            raise UnsupportedConstructError(".and()", ".and() (several prompts drawn at once) has no Prompt-to-Prompt "
                                                      "meaning; promptedit edits one prompt into another")
        if root.lora_weights:
            raise _lora_error()
        for prompt in root.prompts:
            if isinstance(prompt, m.Blend):
                raise UnsupportedConstructError(".blend()", ".blend() (a mix of several prompts' embeddings) has no "
                                                            "Prompt-to-Prompt meaning")
            self._visit(prompt, 1.0, ("source", "target"), None)
        return _Reading("compel", self.source, self.target, self.edits, tidy=True)

    def _visit(self, node, weight: float, sides: tuple[str, ...], edit: int | None) -> None:
        """Emit ``node``'s words to ``sides`` with its weight and edit tag."""
        m = self.m
        if isinstance(node, (list, m.pp.ParseResults)):
            for child in node:
                self._visit(child, weight, sides, edit)
        elif isinstance(node, m.Fragment):
            self._emit(node.text, weight * node.weight, sides, edit)
        elif isinstance(node, m.Attention):
            self._attention(node, weight, sides, edit)
        elif isinstance(node, m.CrossAttentionControlSubstitute):
            self._swap(node, weight, sides, edit)
        elif isinstance(node, m.Prompt):
            for child in node.children:
                self._visit(child, weight, sides, edit)
        elif isinstance(node, m.Blend):
            raise UnsupportedConstructError(".blend()", ".blend() (a mix of several prompts' embeddings) has no "
                                                        "Prompt-to-Prompt meaning")
        elif isinstance(node, m.LoraWeight):
            raise _lora_error()
        else:
            raise UnsupportedConstructError(type(node).__name__, f"compel's {type(node).__name__} has no "
                                                                 "Prompt-to-Prompt meaning")

    def _emit(self, text: str, weight: float, sides: tuple[str, ...], edit: int | None) -> None:
        """One fragment, preceded by the space compel joins fragments with."""
        if not text:
            return
        out = {"source": self.source, "target": self.target}
        for side in sides:
            out[side].append((" ", 1.0, None))
            out[side].append((text, weight, edit))

    def _attention(self, node, weight: float, sides: tuple[str, ...], edit: int | None) -> None:
        """A weight: multiplies into the words it covers; refused on words only the source has."""
        words = _compel_text(node, self.m)
        if sides == ("source",):
            raise UnsupportedConstructError(
                "weight in swap original", f"{self.edits[edit].label} weights {words!r}, which only the source has; "
                                           "promptedit draws the source without weights, so weight the replacement "
                                           "or the whole swap")
        if not math.isfinite(node.weight):
            raise PromptValueError(f"compel weight {node.weight} on {words!r} is not a finite number")
        for child in node.children:
            self._visit(child, weight * node.weight, sides, edit)

    def _swap(self, node, weight: float, sides: tuple[str, ...], edit: int | None) -> None:
        """A ``.swap()``: original words to the source, edited words to the target, as one edit."""
        m = self.m
        label = _swap_label(_compel_text(node.original, m), _compel_text(node.edited, m))
        if edit is not None:
            raise UnsupportedConstructError(
                "swap in swap", f"{label} inside {self.edits[edit].label}: a swap inside a swap switches the text "
                                "more than once; promptedit edits one source into one target")
        options = self._options(node.options, label)
        if options:
            label = label[:-1] + ", " + ", ".join(f"{k}={_fmt(v)}" for k, v in options.items()) + ")"
        self.edits.append(_Edit(label, options=options))
        k = len(self.edits) - 1
        self._visit(node.original, weight, tuple(s for s in sides if s == "source"), k)
        self._visit(node.edited, weight, tuple(s for s in sides if s == "target"), k)

    def _options(self, options: dict, label: str) -> dict[str, float]:
        """The swap's options that differ from compel's defaults, checked."""
        out = {}
        for key, value in options.items():
            if key not in _SWAP_OPTIONS:
                raise UnsupportedConstructError(
                    f"swap option {key}", f"{label} has the option {key!r}, which is not a swap option "
                                          "(s_start, s_end, t_start, t_end, shape_freedom)")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PromptValueError(f"{key}={value!r} of {label} is not a number{_shape_hint(key, self.text)}")
            value = float(value)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise PromptValueError(f"{key}={_fmt(value)} of {label} must be between 0 and 1"
                                       f"{_shape_hint(key, self.text)}")
            if value != self.defaults.get(key):
                out[key] = value
        start, end = float(options.get("t_start", 0.0)), float(options.get("t_end", 1.0))
        if start >= end:
            said = {k: f"{k}={_fmt(v)}" + ("" if k in out else " (compel's default)")
                    for k, v in (("t_start", start), ("t_end", end))}
            raise PromptValueError(
                f"{label}: {said['t_start']} is not before {said['t_end']}; InvokeAI injects while t_start ≤ t < "
                "t_end, an empty window, so the swap would never edit: give t_start < t_end")
        return out


def _swap_label(original: str, edited: str) -> str:
    """A swap as compel writes it, for messages."""
    target = f"({original})" if " " in original or not original else original
    return f"{target}.swap({edited})"


def _shape_hint(key: str, text: str) -> str:
    """A note that compel derives s_end from shape_freedom, when the prompt uses it."""
    return " (compel sets s_end = 1 - shape_freedom^(1/3))" if key == "s_end" and "shape_freedom" in text else ""


def _lora_error() -> UnsupportedConstructError:
    """The refusal of compel's lora syntax."""
    return UnsupportedConstructError("withLora()", "withLora()/useLora() (load a LoRA) has no Prompt-to-Prompt "
                                                   "meaning; promptedit loads no LoRA")


# ----------------------------------------------------------------------------- analysis


def _assemble(pieces: list[tuple[str, float, int | None]], tidy: bool) -> tuple[str, list[float], list[int | None]]:
    """The prompt text with single spaces, and each character's weight and edit tag."""
    out: list[tuple[str, float, int | None]] = []
    for text, weight, edit in pieces:
        for ch in text:
            if ch.isspace():
                if out and out[-1][0] != " ":
                    out.append((" ", 1.0, None))
                continue
            if tidy and ch in ",.;:!?" and out and out[-1][0] == " ":
                out.pop()
            out.append((ch, _round(weight), edit))
    if out and out[-1][0] == " ":
        out.pop()
    return "".join(c for c, _, _ in out), [w for _, w, _ in out], [e for _, _, e in out]


def _round(weight: float) -> float:
    """A weight to 12 significant digits: 1.1 × 1.1 is 1.21, not 1.2100000000000002."""
    return float(f"{weight:.12g}")


def _words(text: str, weights: list[float], tags: list[int | None], role: str, edits: list[_Edit]) -> list[_Word]:
    """The words of a prompt with their weight and edit; refuses constructs that cover part of a word."""
    out = []
    for word, a, b in prompt_words(text):
        tags_in, weights_in = set(tags[a:b]), set(weights[a:b])
        if len(tags_in) > 1:
            label = edits[next(t for t in tags_in if t is not None)].label
            raise UnsupportedConstructError(
                "partial word", f"{label} edits part of the word {text[a:b]!r} of the {role}; put spaces around it")
        if len(weights_in) > 1:
            raise UnsupportedConstructError(
                "partial word", f"a weight covers part of the word {text[a:b]!r}; weight whole words")
        out.append(_Word(word, a, b, weights_in.pop(), tags_in.pop()))
    return out


def _phrase(text: str, words: list[_Word]) -> str:
    """The text from the first to the last of ``words``."""
    return text[words[0].start:words[-1].end] if words else ""


def _describe_edits(reading: _Reading, source: str, target: str, swords: list[_Word], twords: list[_Word]) -> None:
    """Fill each edit's source and target words and kind; refuse edits that change nothing."""
    for k, edit in enumerate(reading.edits):
        src = [w for w in swords if w.edit == k]
        tgt = [w for w in twords if w.edit == k]
        edit.source, edit.target = _phrase(source, src), _phrase(target, tgt)
        edit.keeps_count = len(src) == len(tgt)
        if not src and not tgt:
            raise NoEditError(f"{edit.label} changes nothing: it has no words on either side")
        if [w.text for w in src] == [w.text for w in tgt]:
            raise NoEditError(f"{edit.label} changes nothing: it replaces {edit.source!r} with itself")
        edit.kind = "swap" if src and tgt else "add" if tgt else "remove"


def _occurrences(words: list[_Word], phrase: list[str]) -> list[list[_Word]]:
    """Every run of ``words`` spelling ``phrase`` (lower-case words), as tokens.word_token_indices finds it."""
    n = len(phrase)
    return [words[i:i + n] for i in range(len(words) - n + 1) if [w.text for w in words[i:i + n]] == phrase]


def _reweight(target: str, twords: list[_Word]) -> dict[str, float]:
    """Phrase → weight: each run of neighbouring words weighted alike (≠ 1), checked at every occurrence."""
    runs: list[list[_Word]] = []
    for i, w in enumerate(twords):
        if w.weight == 1.0:
            continue
        if runs and i > 0 and runs[-1][-1] is twords[i - 1] and twords[i - 1].weight == w.weight:
            runs[-1].append(w)
        else:
            runs.append([w])
    out: dict[str, float] = {}
    seen: set[str] = set()
    for run in runs:
        key, c = _phrase(target, run), run[0].weight
        for occ in _occurrences(twords, [w.text for w in run]):
            other = {w.weight for w in occ} - {c}
            if other:
                raise EditConflictError(
                    f"{key!r} is weighted {_fmt(c)} in one place and {_fmt(other.pop())} in another; promptedit "
                    "re-weights a word (or phrase) everywhere it occurs in the target")
        if key.lower() not in seen:
            seen.add(key.lower())
            out[key] = c
    return out


def _mode(reading: _Reading, source: str, target: str, weights: dict[str, float]) -> tuple[str, str]:
    """(the mode for EditSpec, the mode promptedit will run: replace, refine or reweight)."""
    if not reading.edits:
        return "reweight", "reweight"
    if all(e.keeps_count for e in reading.edits):
        return "auto", "replace"
    # auto chooses refine from the word counts; where they balance out it would swap the wrong words
    return ("auto" if swapped_words(source, target) is None else "refine"), "refine"


# ----------------------------------------------------------------------------- windows


@dataclass
class _Windows:
    """The windows an edit prompt asks for, and notes on each construct."""

    cross: Window | None = None
    words: dict[str, Window] = field(default_factory=dict)
    self_window: Window | None = None
    notes: list[str] = field(default_factory=list)


def _agree(values: list[tuple[str, Window]], what: str, flag: str) -> Window | None:
    """The one window several constructs ask for; refuses different ones."""
    distinct = {v for _, v in values}
    if len(distinct) > 1:
        listed = ", ".join(f"{label} → {_fmt_window(v)}" for label, v in values)
        raise EditConflictError(f"the constructs give {what} different windows ({listed}); promptedit has one "
                                f"({flag}): give them the same value")
    return values[0][1] if values else None


def _word_window(words: dict[str, Window], edit: _Edit, window: Window) -> None:
    """Give ``edit``'s swapped-in words ``window``; refuses a second, different window for the same words."""
    if words.get(edit.target, window) != window:
        raise EditConflictError(f"{edit.target!r} is swapped in twice with different windows "
                                f"({_fmt_window(words[edit.target])} and {_fmt_window(window)}); a per-word window "
                                f"(--cross-replace {edit.target}=F) times every {edit.target!r}")
    words[edit.target] = window


def _edit_words(edit: _Edit) -> str:
    """What an edit does, in words."""
    if edit.kind == "swap":
        return f"swaps {edit.source!r} for {edit.target!r}"
    return f"adds {edit.target!r}" if edit.kind == "add" else f"removes {edit.source!r}"


def _a1111_windows(edits: list[_Edit], mode: str) -> _Windows:
    """A1111: ``when`` times the swapped-in words (replace) or all kept words (refine)."""
    out = _Windows()
    if mode == "replace":
        for e in edits:
            _word_window(out.words, e, e.when)
            out.notes.append(f"{e.label}: {_edit_words(e)}; {e.target!r} takes the source's cross-attention maps for "
                             f"the first {_fmt(e.when)}{e.when_note} of the steps "
                             f"(--cross-replace {e.target}={_fmt(e.when)})")
        return out
    out.cross = _agree([(e.label, e.when) for e in edits], "the kept words", "--cross-replace F")
    for e in edits:
        out.notes.append(f"{e.label}: {_edit_words(e)} (a refine edit); the kept words take the source's "
                         f"cross-attention maps for the first {_fmt(e.when)}{e.when_note} of the steps "
                         f"(--cross-replace {_fmt(e.when)})")
    return out


def _compel_windows(edits: list[_Edit], mode: str) -> _Windows:
    """compel: t_start times the swapped-in words, t_end all words, s_start/s_end self-attention."""
    out = _Windows()
    for e in edits:
        if "t_start" in e.options and mode == "refine":
            raise UnsupportedConstructError(
                "t_start in refine", f"t_start of {e.label}: the prompt adds or removes words, so promptedit makes a "
                                     "refine edit, whose new words have no source words to take maps from; leave "
                                     "t_start out or swap word for word")
        if "t_start" in e.options:
            _word_window(out.words, e, e.options["t_start"])
    out.cross = _agree([(e.label, e.options["t_end"]) for e in edits if "t_end" in e.options],
                       "all words", "--cross-replace F")
    selfs = [(e.label, _self_window(e)) for e in edits if {"s_start", "s_end"} & set(e.options)]
    out.self_window = _agree(selfs, "self-attention", "--self-replace")
    for e in edits:
        out.notes.append(_compel_note(e, mode))
    return out


def _self_window(edit: _Edit) -> Window:
    """The self-attention window of a swap's s_start and s_end (compel's default s_end is 0)."""
    start, end = edit.options.get("s_start", 0.0), edit.options.get("s_end", 0.0)
    if end < start:
        raise PromptValueError(f"{edit.label}: s_start={_fmt(start)} is after s_end={_fmt(end)} (compel's default "
                               "s_end is 0, no self-attention injection); give s_end too")
    return end if start == 0.0 else (start, end)


def _compel_note(edit: _Edit, mode: str) -> str:
    """What promptedit does with one swap."""
    parts = [f"{edit.label}: {_edit_words(edit)}" + (" (a refine edit)" if mode == "refine" else "")]
    if "t_start" in edit.options:
        parts.append(f"{edit.target!r} takes the source's maps for the first {_fmt(edit.options['t_start'])} of the "
                     f"steps (--cross-replace {edit.target}={_fmt(edit.options['t_start'])})")
    if "t_end" in edit.options:
        parts.append(f"every kept word for the first {_fmt(edit.options['t_end'])} "
                     f"(--cross-replace {_fmt(edit.options['t_end'])})")
    if {"s_start", "s_end"} & set(edit.options):
        parts.append(f"self-attention injected over {_fmt_window(_self_window(edit))} (--self-replace)")
    if len(parts) == 1:
        parts.append("the model's windows")
    return "; ".join(parts)


def _check_word_windows(words: dict[str, Window], twords: list[_Word], edits: list[_Edit]) -> None:
    """Refuse a per-word window whose phrase also occurs where it would time other words."""
    window_of = {k: words.get(e.target) for k, e in enumerate(edits)}
    for phrase, window in words.items():
        for occ in _occurrences(twords, [w for w, _, _ in prompt_words(phrase)]):
            if any(w.edit is None or window_of.get(w.edit) != window for w in occ):
                raise EditConflictError(
                    f"{phrase!r} is swapped in and also occurs elsewhere in the target; its window "
                    f"(--cross-replace {phrase}={_fmt_window(window)}) would time every {phrase!r}: reword one")


# ----------------------------------------------------------------------------- entry point


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
