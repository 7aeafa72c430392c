"""Token mappers between a source prompt and an edited prompt (Hertz et al. 2023, Sec. 3.2).

Pure functions on token ids (no diffusers): the *replacement* mapper for word
swaps and the *refinement* mapper, from a Needleman–Wunsch global alignment of
the two token sequences, for added or removed phrases. Both return tensors of
the text encoder's length ``max_len`` so that they index attention maps
``(..., pixels, max_len)`` directly; over keys of several encoders (SD3's CLIP then T5,
:class:`~promptedit.text.tokens.TextKeys`) each encoder's part is mapped on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AlignmentError
from .tokens import PromptTokens, TextKeys, prompt_words, span_token_indices, swapped_words

GAP, MATCH, MISMATCH = 0, 1, -1  # the reference implementation's scores


@dataclass(frozen=True)
class AlignScores:
    """Needleman–Wunsch scores: gap, match and mismatch."""

    gap: float = GAP
    match: float = MATCH
    mismatch: float = MISMATCH


def global_align(x: list[int], y: list[int], scores: AlignScores = AlignScores()) -> list[tuple[int, int]]:
    """Needleman–Wunsch global alignment of ``x`` and ``y``.

    Returns the mapper from ``y`` to ``x``: one ``(j, i)`` pair per position
    ``j`` of ``y``, with ``i`` the aligned position in ``x`` or -1 when ``y[j]``
    is inserted (it has no counterpart in ``x``). Ties prefer, as the reference
    code does, insertion in ``y``, then deletion from ``x``, then the diagonal.
    """
    n, m = len(x), len(y)
    score = [[0.0] * (m + 1) for _ in range(n + 1)]
    trace = [[0] * (m + 1) for _ in range(n + 1)]  # 1 left, 2 up, 3 diagonal
    for j in range(1, m + 1):
        score[0][j], trace[0][j] = j * scores.gap, 1
    for i in range(1, n + 1):
        score[i][0], trace[i][0] = i * scores.gap, 2
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            left = score[i][j - 1] + scores.gap
            up = score[i - 1][j] + scores.gap
            diag = score[i - 1][j - 1] + (scores.match if x[i - 1] == y[j - 1] else scores.mismatch)
            best = max(left, up, diag)
            score[i][j] = best
            trace[i][j] = 1 if best == left else 2 if best == up else 3
    i, j, pairs = n, m, []
    while i > 0 or j > 0:
        move = trace[i][j]
        if move == 3:
            i, j = i - 1, j - 1
            pairs.append((j, i))
        elif move == 1:
            j -= 1
            pairs.append((j, -1))
        else:
            i -= 1
    pairs.reverse()
    return pairs


def refinement_mapper(x_ids: list[int], y_ids: list[int], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Refinement mapper M (Eq. in Sec. 3.2, "Adding a new phrase").

    Returns ``mapper`` (max_len,) int64, the source position whose map the
    target position takes, and ``alphas`` (max_len,) float, 0 for target tokens
    with no source counterpart (they keep their own attention) and 1 otherwise.
    Positions past the target prompt map to the source's padding positions.
    """
    x_ids, y_ids = list(x_ids[:max_len]), list(y_ids[:max_len])
    pairs = global_align(x_ids, y_ids)
    mapper = torch.zeros(max_len, dtype=torch.int64)
    alphas = torch.ones(max_len)
    for j, i in pairs:
        mapper[j] = max(i, 0)
        alphas[j] = float(i >= 0)
    tail = torch.arange(len(y_ids), max_len)
    mapper[len(y_ids):] = (len(x_ids) + (tail - len(y_ids))).clamp(max=max_len - 1)
    return mapper, alphas


def _word_ids(tokenizer, tokens: PromptTokens) -> set[int]:
    """The ids of a prompt's tokens without the start token (where the tokenizer has one) and the end token."""
    ids = list(tokens.ids)
    if ids and getattr(tokenizer, "bos_token_id", None) is not None and ids[0] == tokenizer.bos_token_id:
        ids = ids[1:]
    return set(ids[:-1])


def get_refinement_mapper(keys, source: str, targets: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Refinement mappers for each target over the text keys ``keys`` (:class:`~promptedit.text.tokens.TextKeys`,
    or a tokenizer whose positions they are): (n_targets, keys) each. Each span of the keys aligns its own
    encoder's tokens of the prompts, and its mapper points into the source's keys of the same span."""
    keys = TextKeys.of(keys)
    mappers, alphas = [], []
    for span in keys.spans:
        x = span.tokenize(source)
        span_mappers, span_alphas = [], []
        for target in targets:
            y = span.tokenize(target)
            if not (_word_ids(span.tokenizer, x) & _word_ids(span.tokenizer, y)):
                raise AlignmentError(
                    f"prompts {source!r} and {target!r} share no words: there is nothing to keep, so they cannot be "
                    "aligned"
                )
            mapper, alpha = refinement_mapper(list(x.ids), list(y.ids), span.length)
            span_mappers.append(mapper + span.start)
            span_alphas.append(alpha)
        mappers.append(torch.stack(span_mappers))
        alphas.append(torch.stack(span_alphas))
    return torch.cat(mappers, dim=-1), torch.cat(alphas, dim=-1)


def replacement_mapper(
    source_words: list[list[int]], target_words: list[list[int]], swapped: list[int], max_len: int
) -> torch.Tensor:
    """Replacement mapper M (Sec. 3.2, "Word swap"): (max_len, max_len), target = source @ M.

    ``source_words`` and ``target_words`` are the token positions of each word
    of the two prompts (the same number of words); ``swapped`` lists the words
    that differ. Unchanged tokens map one to one. A swapped word of as many
    tokens maps token to token; otherwise every target token of the word takes
    the source word's tokens, each target token getting ``1 / len(target)``.
    """
    mapper = torch.zeros(max_len, max_len)
    mapper[0, 0] = 1.0  # start token
    last_i = last_j = 0
    for w, (src, tgt) in enumerate(zip(source_words, target_words)):
        if not src or not tgt:
            continue
        if w in swapped and len(src) != len(tgt):
            for t in tgt:
                if t < max_len:
                    for s in src:
                        if s < max_len:
                            mapper[s, t] = 1.0 / len(tgt)
        else:
            for s, t in zip(src, tgt):
                if s < max_len and t < max_len:
                    mapper[s, t] = 1.0
        last_i, last_j = max(src), max(tgt)
    # end and padding tokens follow on one to one after the last word
    i, j = last_i + 1, last_j + 1
    while i < max_len and j < max_len:
        mapper[i, j] = 1.0
        i, j = i + 1, j + 1
    return mapper


def get_replacement_mapper(keys, source: str, targets: list[str]) -> torch.Tensor:
    """Replacement mappers for each target over the text keys ``keys`` (:class:`~promptedit.text.tokens.TextKeys`,
    or a tokenizer whose positions they are): (n_targets, keys, keys), block-diagonal over the keys' spans (each
    span maps its own encoder's tokens of the words).

    Raises :class:`AlignmentError` when a target is more than a word swap of the
    source (a different number of words), suggesting a refinement edit.
    """
    keys = TextKeys.of(keys)
    swaps = []
    for target in targets:
        swapped = swapped_words(source, target)
        if swapped is None:
            raise AlignmentError(
                f"{target!r} is not a word swap of {source!r} (they have {len(prompt_words(source))} and "
                f"{len(prompt_words(target))} words); use --mode refine to add or remove words, or --mode auto"
            )
        swaps.append(swapped)
    out = torch.zeros(len(targets), keys.length, keys.length)
    for span in keys.spans:
        x = span.tokenize(source)
        src_words = [span_token_indices(x, a, b) for _, a, b in prompt_words(source)]
        block = slice(span.start, span.start + span.length)
        for k, (target, swapped) in enumerate(zip(targets, swaps)):
            y = span.tokenize(target)
            tgt_words = [span_token_indices(y, a, b) for _, a, b in prompt_words(target)]
            out[k, block, block] = replacement_mapper(src_words, tgt_words, swapped, span.length)
    return out
