"""What the A1111 and compel readers share: the errors, the result (:class:`PromptEdit`), a reading's
types, the bracket-depth check, and the analysis of a reading into words, weights and windows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ...errors import PromptError
from ..tokens import prompt_words, swapped_words


SYNTAXES = ("auto", "a1111", "compel")


Window = float | tuple[float, float]


_NAMES = {"a1111": "A1111", "compel": "compel"}


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


def _unescaped(text: str):
    """(offset, character) of each character of ``text`` that a backslash does not escape."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        yield i, text[i]
        i += 1


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


def _check_word_windows(words: dict[str, Window], twords: list[_Word], edits: list[_Edit]) -> None:
    """Refuse a per-word window whose phrase also occurs where it would time other words."""
    window_of = {k: words.get(e.target) for k, e in enumerate(edits)}
    for phrase, window in words.items():
        for occ in _occurrences(twords, [w for w, _, _ in prompt_words(phrase)]):
            if any(w.edit is None or window_of.get(w.edit) != window for w in occ):
                raise EditConflictError(
                    f"{phrase!r} is swapped in and also occurs elsewhere in the target; its window "
                    f"(--cross-replace {phrase}={_fmt_window(window)}) would time every {phrase!r}: reword one")
