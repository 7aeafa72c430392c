"""Build a CLIP-style byte-level BPE tokenizer locally, from a corpus.

Stable Diffusion's tokenizer is CLIP's: byte-level BPE with an end-of-word
suffix ``</w>``, lower-casing, and ``<|startoftext|>`` / ``<|endoftext|>``
around every prompt. Tests and the embedded shapes-world model need one that
is built here, without a download; this trains the same kind of tokenizer on a
small corpus with the ``tokenizers`` library and wraps it as a
``transformers.CLIPTokenizer``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# CLIP's pre-tokenisation pattern (transformers.CLIPTokenizer).
CLIP_SPLIT_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def build_clip_tokenizer(corpus: Iterable[str], vocab_size: int = 1000, model_max_length: int = 77):
    """Train a byte-level BPE on ``corpus`` and return it as a ``CLIPTokenizer``.

    Every byte is in the vocabulary both inside and at the end of a word, so
    any text can be tokenized; words seen often in the corpus become single
    tokens, rare ones are split into several.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix="", unk_token=EOS))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus), trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for ch in sorted(alphabet):  # every byte may also end a word
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
