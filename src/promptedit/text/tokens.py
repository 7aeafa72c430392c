"""Prompts as tokens: words → token indices, word-level diffs, length checks.

Pure functions on a Hugging Face tokenizer (duck-typed: it must be a *fast*
tokenizer that returns ``offset_mapping``, as ``CLIPTokenizer`` is); no
diffusers import, so this module is tested on its own.

Token positions are the text encoder's, special tokens included: with CLIP's start token at 0, in
``<|startoftext|> a cat <|endoftext|>`` the word ``cat`` is token 2; a T5 tokenizer has no start token, so in
``▁a ▁cat </s>`` it is token 1.

The attention's text keys are one or more encoders' sequences one after another (:class:`TextKeys`): SD's and
SDXL's are CLIP's 77 positions; SD3's are CLIP's 77, then T5's, so a word has keys in both (``cat`` above is
keys 2 and 77 + 1). A model's text side says so (``TextConditioner.keys``); the controllers ask it, not which
family the model is.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import PromptError, PromptTruncatedWarning, WordNotInPromptError

# A "word" of a prompt: a run of letters/digits, or one run of punctuation.
_WORD_RE = re.compile(r"[^\W_]+|[^\w\s]+|_+")


@dataclass(frozen=True)
class PromptTokens:
    """A prompt as the text encoder sees it.

    Attributes:
        prompt: the prompt text.
        ids: token ids with start and end tokens, untruncated.
        offsets: (start, end) character span in ``prompt`` of each id; (0, 0) for specials.
        max_length: the text encoder's length (77 for CLIP), start and end tokens included.
    """

    prompt: str
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    max_length: int

    @property
    def truncated(self) -> bool:
        return len(self.ids) > self.max_length

    @property
    def n_tokens(self) -> int:
        """Number of positions used, start and end tokens included, after truncation."""
        return min(len(self.ids), self.max_length)


def tokenize(tokenizer, prompt: str, *, warn: bool = True, max_length: int | None = None) -> PromptTokens:
    """Tokenize ``prompt`` for a text encoder of ``max_length`` positions (default: the tokenizer's
    ``model_max_length``); warn (``PromptTruncatedWarning``) when it is too long."""
    if not isinstance(prompt, str):
        raise PromptError(f"a prompt must be text, got {type(prompt).__name__}")
    max_length = int(tokenizer.model_max_length) if max_length is None else int(max_length)
    enc = tokenizer(prompt, return_offsets_mapping=True, truncation=False, add_special_tokens=True)
    if "offset_mapping" not in enc:
        raise PromptError("the tokenizer gives no character offsets (a fast tokenizer is needed)")
    tokens = PromptTokens(prompt, tuple(enc["input_ids"]), tuple(map(tuple, enc["offset_mapping"])), max_length)
    if tokens.truncated and warn:
        kept = tokens.offsets[max_length - 2][1]
        warnings.warn(
            f"prompt is {len(tokens.ids)} tokens, longer than the text encoder's {max_length}; "
            f"truncated after {prompt[:kept]!r}",
            PromptTruncatedWarning,
            stacklevel=2,
        )
    return tokens


def unknown_words(tokenizer, tokens: PromptTokens, vocabulary: frozenset[str] | None = None) -> list[str]:
    """The words of ``tokens.prompt`` a model does not know, each once, in order: those the tokenizer maps to
    its unknown token (where it has one of its own: CLIP's is its end token, and its byte-level BPE spells
    every word in subword tokens, so never), and, for a model of a closed ``vocabulary``, the words outside it.
    Runs of digits or punctuation are not words."""
    unk = getattr(tokenizer, "unk_token_id", None)
    specials = {getattr(tokenizer, f"{name}_token_id", None) for name in ("bos", "eos", "pad")}
    unk_spans = [] if unk is None or unk in specials else [
        span for i, span in zip(tokens.ids, tokens.offsets) if i == unk]
    out: list[str] = []
    for word, a, b in prompt_words(tokens.prompt):
        if word in out or not any(ch.isalpha() for ch in word):
            continue
        if (vocabulary is not None and word not in vocabulary) or any(x < b and y > a for x, y in unk_spans):
            out.append(word)
    return out


def prompt_words(prompt: str) -> list[tuple[str, int, int]]:
    """Split a prompt into words and punctuation runs: (lower-cased text, start, end)."""
    return [(m.group(0).lower(), m.start(), m.end()) for m in _WORD_RE.finditer(prompt)]


def span_token_indices(tokens: PromptTokens, start: int, end: int) -> list[int]:
    """Positions of the tokens whose character span overlaps [start, end)."""
    out = []
    for i, (a, b) in enumerate(tokens.offsets):
        if b > a and a < end and b > start:
            out.append(i)
    return out


def word_token_indices(tokenizer, prompt: str, word: str, *, tokens: PromptTokens | None = None) -> list[int]:
    """Token positions of every occurrence of ``word`` (a word or phrase) in ``prompt``.

    Matching is case-insensitive and on whole words; a word split into several
    tokens gives all of them; a repeated word gives every occurrence. A word that
    is not in the prompt, or lies past the text encoder's limit, raises.
    """
    tokens = tokens or tokenize(tokenizer, prompt, warn=False)
    target = [w for w, _, _ in prompt_words(word)]
    if not target:
        raise PromptError(f"empty word {word!r}")
    words = prompt_words(prompt)
    found: list[int] = []
    for i in range(len(words) - len(target) + 1):
        if [w for w, _, _ in words[i : i + len(target)]] == target:
            found.extend(span_token_indices(tokens, words[i][1], words[i + len(target) - 1][2]))
    if not found:
        raise WordNotInPromptError(word, prompt)
    limit = tokens.max_length - 1  # the last position holds the end token
    kept = [i for i in found if i < limit]
    if not kept:
        raise PromptError(
            f"word {word!r} lies past the text encoder's {tokens.max_length}-token limit in {prompt!r}"
        )
    return sorted(set(kept))


def swapped_words(source: str, target: str) -> list[int] | None:
    """Indices of the words that differ when ``target`` only swaps words of ``source``.

    Returns None when the prompts do not have the same number of words (then
    they differ by more than swapped words and need a refinement edit).
    """
    a = [w for w, _, _ in prompt_words(source)]
    b = [w for w, _, _ in prompt_words(target)]
    if len(a) != len(b):
        return None
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


@dataclass(frozen=True)
class KeySpan:
    """A run of the attention's text keys that is one text encoder's sequence: keys ``start`` … ``start + length
    − 1`` are ``tokenizer``'s positions 0 … ``length − 1`` (the prompt's tokens, truncated and padded to
    ``length``)."""

    tokenizer: Any
    start: int
    length: int

    def tokenize(self, prompt: str, *, warn: bool = False) -> PromptTokens:
        """The prompt as this encoder sees it (truncated at ``length``)."""
        return tokenize(self.tokenizer, prompt, warn=warn, max_length=self.length)


@dataclass(frozen=True)
class TextKeys:
    """Where the attention's text keys come from: spans of encoders' positions one after another, covering keys
    0 … ``length − 1`` (SD, SDXL: CLIP's 77; SD3: CLIP's 77, then T5's). A word's key positions are its token
    positions in every span, each offset by the span's start."""

    spans: tuple[KeySpan, ...]

    def __post_init__(self):
        if not self.spans or [s.start for s in self.spans] != [0, *(s.start + s.length for s in self.spans[:-1])]:
            raise ValueError("key spans must follow one another from key 0")

    @classmethod
    def of(cls, keys) -> "TextKeys":
        """``keys`` as :class:`TextKeys`: itself, or a tokenizer's positions (its ``model_max_length``) as one span."""
        return keys if isinstance(keys, TextKeys) else cls((KeySpan(keys, 0, int(keys.model_max_length)),))

    @property
    def length(self) -> int:
        """The number of text keys."""
        return self.spans[-1].start + self.spans[-1].length

    def tokenize(self, prompt: str) -> tuple[PromptTokens, ...]:
        """The prompt as each span's encoder sees it."""
        return tuple(span.tokenize(prompt) for span in self.spans)

    def span_positions(self, prompt: str, start: int, end: int,
                       tokens: Sequence[PromptTokens] | None = None) -> list[int]:
        """Key positions of the tokens whose characters overlap [start, end) of ``prompt``, in every span, those
        past a span's end token left out; ``tokens``: :meth:`tokenize`'s, when made already."""
        out: list[int] = []
        for span, span_tokens in zip(self.spans, tokens or self.tokenize(prompt), strict=True):
            out += [span.start + i for i in span_token_indices(span_tokens, start, end) if i < span.length - 1]
        return out

    def word_positions(self, prompt: str, word: str, tokens: Sequence[PromptTokens] | None = None) -> list[int]:
        """Key positions of every occurrence of ``word`` in ``prompt`` (see :func:`word_token_indices`), in every
        span; raises as it does when the word is not in the prompt, or lies past the limit of every span.
        ``tokens``: :meth:`tokenize`'s, when made already."""
        found: list[int] = []
        error: PromptError | None = None
        for span, span_tokens in zip(self.spans, tokens or self.tokenize(prompt), strict=True):
            try:
                found += [span.start + i for i in word_token_indices(span.tokenizer, prompt, word, tokens=span_tokens)]
            except WordNotInPromptError:
                raise
            except PromptError as e:  # past this span's limit
                error = e
        if not found:
            assert error is not None
            raise error
        return found
