"""AUTOMATIC1111's prompt-editing syntax (``a [red:blue:0.6] circle``, ``(w:1.3)``): its lark scheduling grammar and
``re_attention`` weight scan (from its ``modules/prompt_parser.py``), read into a reading of the edit, and its
windows."""

from __future__ import annotations

import functools
import math
import re
import warnings

from ...errors import PromptEditWarning
from .common import (
    PromptSyntaxError,
    PromptValueError,
    UnsupportedConstructError,
    _Edit,
    _Reading,
    _Windows,
    _agree,
    _edit_words,
    _fmt,
    _short,
    _too_deep,
    _unescaped,
    _where,
    _word_window,
)


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
