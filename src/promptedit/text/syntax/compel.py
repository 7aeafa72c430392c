"""compel / InvokeAI's prompt syntax (``a red.swap(blue) circle``, ``w+``): compel's own ``PromptParser``
(pyparsing, loaded without torch), read into a reading of the edit, and its windows."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Mapping
from types import MappingProxyType, ModuleType

from .common import (
    PromptSyntaxError,
    PromptValueError,
    UnsupportedConstructError,
    Window,
    _Edit,
    _Reading,
    _Windows,
    _agree,
    _edit_words,
    _fmt,
    _fmt_window,
    _one_line,
    _short,
    _too_deep,
    _word_window,
)


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
