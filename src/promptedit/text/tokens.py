"""Prompts as tokens: words → token indices, word-level diffs, length checks.

Pure functions on a Hugging Face tokenizer (duck-typed: it must be a *fast*
tokenizer that returns ``offset_mapping``, as ``CLIPTokenizer`` is); no
diffusers import, so this module is tested on its own.

Token positions are the text encoder's, special tokens included: with CLIP's start token at 0, in
``<|startoftext|> a cat <|endoftext|>`` the word ``cat`` is token 2; a T5 tokenizer has no start token, so in
``▁a ▁cat </s>`` it is token 1.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

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
