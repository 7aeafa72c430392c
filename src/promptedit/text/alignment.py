"""Token mappers between a source prompt and an edited prompt (Hertz et al. 2023, Sec. 3.2).

Pure functions on token ids (no diffusers): the *replacement* mapper for word
swaps and the *refinement* mapper, from a Needleman–Wunsch global alignment of
the two token sequences, for added or removed phrases. Both return tensors of
the text encoder's length ``max_len`` so that they index attention maps
``(..., pixels, max_len)`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AlignmentError
from .tokens import prompt_words, swapped_words, tokenize, span_token_indices

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


def get_refinement_mapper(tokenizer, source: str, targets: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Refinement mappers for each target: (n_targets, max_len) each."""
    max_len = int(tokenizer.model_max_length)
    x = tokenize(tokenizer, source, warn=False)
    mappers, alphas = [], []
    for target in targets:
        y = tokenize(tokenizer, target, warn=False)
        if not (set(x.ids[1:-1]) & set(y.ids[1:-1])):
            raise AlignmentError(
                f"prompts {source!r} and {target!r} share no words: there is nothing to keep, so they cannot be aligned"
            )
        mapper, alpha = refinement_mapper(list(x.ids), list(y.ids), max_len)
        mappers.append(mapper)
        alphas.append(alpha)
    return torch.stack(mappers), torch.stack(alphas)


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


def get_replacement_mapper(tokenizer, source: str, targets: list[str]) -> torch.Tensor:
    """Replacement mappers for each target: (n_targets, max_len, max_len).

    Raises :class:`AlignmentError` when a target is more than a word swap of the
    source (a different number of words), suggesting a refinement edit.
    """
    max_len = int(tokenizer.model_max_length)
    x = tokenize(tokenizer, source, warn=False)
    src_words = [span_token_indices(x, a, b) for _, a, b in prompt_words(source)]
    out = []
    for target in targets:
        swapped = swapped_words(source, target)
        if swapped is None:
            raise AlignmentError(
                f"{target!r} is not a word swap of {source!r} (they have {len(prompt_words(source))} and "
                f"{len(prompt_words(target))} words); use --mode refine to add or remove words, or --mode auto"
            )
        y = tokenize(tokenizer, target, warn=False)
        tgt_words = [span_token_indices(y, a, b) for _, a, b in prompt_words(target)]
        out.append(replacement_mapper(src_words, tgt_words, swapped, max_len))
    return torch.stack(out)
