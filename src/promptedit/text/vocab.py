"""Build a CLIP-style byte-level BPE tokenizer locally, from a corpus.

Stable Diffusion's tokenizer is CLIP's: byte-level BPE with an end-of-word
suffix ``</w>``, lower-casing, and ``<|startoftext|>`` / ``<|endoftext|>``
around every prompt. Tests and the embedded shapes-world model need one that
is built here, without a download; this trains the same kind of tokenizer on a
small corpus (the ``tokenizers`` library's normaliser and pre-tokeniser, our own deterministic merge
loop) and wraps it as a ``transformers.CLIPTokenizer``. FLUX.1 and SD3 add T5, whose tokenizer is a
SentencePiece Unigram model: :func:`build_t5_tokenizer` builds one of those the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# CLIP's pre-tokenisation pattern (transformers.CLIPTokenizer).
CLIP_SPLIT_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def _bpe_merges(word_counts: dict[tuple[str, ...], int], vocab: dict[str, int], vocab_size: int
                ) -> list[tuple[str, str]]:
    """Byte-pair merges (Sennrich et al. 2016) over words given as symbol tuples with their counts, until the
    vocabulary has ``vocab_size`` entries or nothing is left to merge. Ties go to the lexicographically
    smallest pair, so the result depends only on the corpus (the ``tokenizers`` trainer breaks ties by
    hash-map order, which changes from process to process). Adds the merged symbols to ``vocab``."""
    words = {w: c for w, c in word_counts.items()}
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pairs: dict[tuple[str, str], int] = {}
        for w, c in words.items():
            for pair in zip(w, w[1:]):
                pairs[pair] = pairs.get(pair, 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merged = best[0] + best[1]
        merges.append(best)
        vocab.setdefault(merged, len(vocab))
        new_words: dict[tuple[str, ...], int] = {}
        for w, c in words.items():
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and (w[k], w[k + 1]) == best:
                    out.append(merged)
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    return merges


def build_clip_tokenizer(corpus: Iterable[str], vocab_size: int = 1000, model_max_length: int = 77):
    """Train a byte-level BPE on ``corpus`` and return it as a ``CLIPTokenizer``; the same corpus gives the
    same tokenizer in every process.

    Every byte is in the vocabulary both inside and at the end of a word, so
    any text can be tokenized; words seen often in the corpus become single
    tokens, rare ones are split into several.
    """
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import CLIPTokenizer

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    counts: dict[tuple[str, ...], int] = {}
    for text in corpus:
        for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            if piece:
                symbols = (*piece[:-1], piece[-1] + "</w>")  # CLIP marks the end of every word
                counts[symbols] = counts.get(symbols, 0) + 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    for ch in alphabet:  # every byte inside a word, and the word endings the corpus has (as the trainer does)
        vocab.setdefault(ch, len(vocab))
    for end in sorted({w[-1] for w in counts}):
        vocab.setdefault(end, len(vocab))
    merges = _bpe_merges(counts, vocab, vocab_size)
    for ch in alphabet:  # every byte may also end a word
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


#: the characters a built T5-style tokenizer spells any word in (SentencePiece keeps its character coverage in the
#: vocabulary too); anything else is T5's ``<unk>``
T5_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def build_t5_tokenizer(corpus: Iterable[str], vocab_size: int = 1000, model_max_length: int = 512):
    """A T5-style SentencePiece Unigram tokenizer built from ``corpus``, as a ``transformers.T5TokenizerFast``.

    T5's layout: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, no start token, ``</s>`` after every prompt, words split on
    whitespace and marked by a leading ``▁`` (Metaspace), case kept, and segmented by the Unigram model's
    Viterbi path (Kudo 2018). Pieces: the corpus's ``vocab_size`` most frequent words as ``▁word``, scored by
    their log relative frequency (the Unigram language model's estimate), then ``▁`` and each character of
    :data:`T5_ALPHABET`, scored below every word, so a word outside the corpus is spelled ``▁`` + characters —
    several tokens, as a rare word is on real T5 — and a character outside the alphabet is ``<unk>``. Counted
    here rather than by ``tokenizers``' ``UnigramTrainer``, whose EM gives scores that differ in their last bits
    from process to process (its threads' order): the same corpus gives the same tokenizer in every process."""
    import math
    from collections import Counter

    from transformers import T5TokenizerFast

    from ..errors import ParameterError

    counts = Counter(word for text in corpus for word in text.split())
    if not counts:
        raise ParameterError("the corpus of a T5-style tokenizer has no words")
    words = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))[:vocab_size]
    total = sum(c for _, c in words)
    floor = math.log(1 / (2 * total))  # below the rarest word's log-frequency: whole words win over spellings
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + w, math.log(c / total)) for w, c in words]
    known = {piece for piece, _ in vocab}
    vocab += [(ch, floor - 1.0) for ch in ("▁", *T5_ALPHABET) if ch not in known]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=model_max_length)
