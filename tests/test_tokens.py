import warnings

import pytest
import torch

from promptedit.errors import AlignmentError, PromptError, PromptTruncatedWarning, WordNotInPromptError
from promptedit.text.alignment import (
    get_refinement_mapper,
    get_replacement_mapper,
    global_align,
    refinement_mapper,
)
from promptedit.text.tokens import prompt_words, swapped_words, tokenize, unknown_words, word_token_indices

pytestmark = pytest.mark.unit


def pieces(tokenizer, prompt, idx):
    ids = tokenize(tokenizer, prompt, warn=False).ids
    return "".join(tokenizer.convert_ids_to_tokens([ids[i] for i in idx])).replace("</w>", "")


def test_single_token_word(tokenizer):
    assert word_token_indices(tokenizer, "a photo of a cat", "cat") == [5]


def test_word_split_into_several_tokens(tokenizer):
    prompt = "a photo of a squirrel on the mat"
    idx = word_token_indices(tokenizer, prompt, "squirrel")
    assert len(idx) > 1, "the tiny vocabulary must split 'squirrel'"
    assert idx == list(range(idx[0], idx[0] + len(idx)))
    assert pieces(tokenizer, prompt, idx) == "squirrel"
    # the word after it is found at the right place
    assert pieces(tokenizer, prompt, word_token_indices(tokenizer, prompt, "on")) == "on"


def test_repeated_word_gives_every_occurrence(tokenizer):
    assert word_token_indices(tokenizer, "a cat and a cat", "cat") == [2, 5]
    assert word_token_indices(tokenizer, "a cat and a cat", "a") == [1, 4]


def test_punctuation_and_case(tokenizer):
    prompt = "A Cat, sitting on the mat!"
    idx = word_token_indices(tokenizer, prompt, "cat")
    assert pieces(tokenizer, prompt, idx) == "cat"
    assert word_token_indices(tokenizer, prompt, "CAT") == idx
    assert pieces(tokenizer, prompt, word_token_indices(tokenizer, prompt, ",")) == ","


def test_phrase(tokenizer):
    idx = word_token_indices(tokenizer, "a red circle on a white background", "red circle")
    assert idx == [2, 3]


def test_unknown_word_raises_and_names_it(tokenizer):
    with pytest.raises(WordNotInPromptError, match="'dog'"):
        word_token_indices(tokenizer, "a photo of a cat", "dog")
    # a part of a word is not the word
    with pytest.raises(WordNotInPromptError):
        word_token_indices(tokenizer, "a photo of a cat", "ca")
    assert issubclass(WordNotInPromptError, ValueError)


def test_overlong_prompt_warns_and_words_past_the_limit_raise(tokenizer):
    prompt = "a cat " * 60 + "dog"
    with pytest.warns(PromptTruncatedWarning, match="truncated"):
        tokens = tokenize(tokenizer, prompt)
    assert tokens.truncated and tokens.n_tokens == tokenizer.model_max_length
    with pytest.raises(PromptError, match="limit"):
        word_token_indices(tokenizer, prompt, "dog")
    assert max(word_token_indices(tokenizer, prompt, "cat")) < tokenizer.model_max_length - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(tokenizer, "a short prompt")  # no warning


def test_prompt_words_and_swaps():
    assert [w for w, *_ in prompt_words("A cat, on a mat!")] == ["a", "cat", ",", "on", "a", "mat", "!"]
    assert swapped_words("a red cat", "a blue cat") == [1]
    assert swapped_words("a red cat", "a red cat") == []
    assert swapped_words("a cat", "a red cat") is None


def test_global_align_insertion():
    # y inserts 9 after the first token
    assert global_align([0, 5, 6, 1], [0, 9, 5, 6, 1]) == [(0, 0), (1, -1), (2, 1), (3, 2), (4, 3)]


def test_refinement_mapper_marks_added_tokens():
    mapper, alphas = refinement_mapper([0, 5, 6, 1], [0, 5, 9, 6, 1], max_len=8)
    assert mapper[:5].tolist() == [0, 1, 0, 2, 3]
    assert alphas[:5].tolist() == [1, 1, 0, 1, 1]
    assert alphas[5:].tolist() == [1, 1, 1]
    assert mapper[5:].tolist() == [4, 5, 6]  # padding maps to the source's padding


def test_refinement_mapper_from_prompts(tokenizer):
    mapper, alphas = get_refinement_mapper(tokenizer, "a cat on the mat", ["a striped cat on the mat"])
    striped = word_token_indices(tokenizer, "a striped cat on the mat", "striped")
    assert alphas[0, striped].eq(0).all()
    cat_t = word_token_indices(tokenizer, "a striped cat on the mat", "cat")
    cat_s = word_token_indices(tokenizer, "a cat on the mat", "cat")
    assert mapper[0, cat_t].tolist() == cat_s
    assert mapper.shape == (1, tokenizer.model_max_length)


def test_refine_refuses_prompts_with_nothing_in_common(tokenizer):
    with pytest.raises(AlignmentError, match="share no words"):
        get_refinement_mapper(tokenizer, "cat", ["dog"])


def test_replacement_mapper_identity_for_same_prompt(tokenizer):
    m = get_replacement_mapper(tokenizer, "a photo of a cat", ["a photo of a cat"])[0]
    assert torch.equal(m, torch.eye(tokenizer.model_max_length))


def test_replacement_mapper_swaps(tokenizer):
    src, tgt = "a photo of a cat", "a photo of a dog"
    m = get_replacement_mapper(tokenizer, src, [tgt])[0]
    cs, dt = word_token_indices(tokenizer, src, "cat")[0], word_token_indices(tokenizer, tgt, "dog")[0]
    assert m[cs, dt] == 1 and m[:, dt].sum() == 1
    # one token swapped for several: each target token takes 1/len of the source word
    tgt2 = "a photo of a squirrel"
    m2 = get_replacement_mapper(tokenizer, src, [tgt2])[0]
    sq = word_token_indices(tokenizer, tgt2, "squirrel")
    assert torch.allclose(m2[cs, sq], torch.full((len(sq),), 1 / len(sq)))
    # the end token follows the longer word
    end_s, end_t = 6, sq[-1] + 1
    assert m2[end_s, end_t] == 1


def test_replace_refuses_different_word_counts(tokenizer):
    with pytest.raises(AlignmentError, match="refine"):
        get_replacement_mapper(tokenizer, "a photo of a cat", ["a photo of a striped cat"])


def test_built_tokenizer_is_the_same_in_every_process():
    """The BPE merges break ties by the pair itself, not by hash-map order: two processes, one tokenizer."""
    import subprocess
    import sys

    code = ("import hashlib, json; from promptedit.text.vocab import build_clip_tokenizer; "
            "t = build_clip_tokenizer(['a photo of a cat', 'a photo of a dog', 'a red circle'] * 3, vocab_size=300); "
            "print(hashlib.md5(json.dumps(sorted(t.get_vocab().items())).encode()).hexdigest())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(runs) == 1, runs


def test_unknown_words_of_a_closed_vocabulary_and_of_an_unknown_token(tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # a CLIP-style byte-level BPE spells every word in subword tokens: nothing is unknown to it on its own
    odd = tokenize(tokenizer, "a quixotic xylophone, 猫 and 2 cats!")
    assert unknown_words(tokenizer, odd) == []
    # a closed vocabulary (the shapes world's): each word outside it once, in order; digits and punctuation are
    # not words
    world = frozenset({"a", "red", "circle", "on", "white", "background"})
    tokens = tokenize(tokenizer, "a photo of a red cat, a cat on a white background 2")
    assert unknown_words(tokenizer, tokens, world) == ["photo", "of", "cat"]
    # a tokenizer with an unknown token of its own (not its end token): the words it maps there
    word_level = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "cat": 2}, unk_token="[UNK]"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="[UNK]", model_max_length=77)
    assert unknown_words(fast, tokenize(fast, "a chat cat un chat")) == ["chat", "un"]


def test_t5_style_tokenizer_ids_eos_padding_and_word_offsets():
    from promptedit.testing import tiny_t5_tokenizer

    t5 = tiny_t5_tokenizer()
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id, t5.bos_token_id) == (0, 1, 2, None)
    assert t5.model_max_length == 512
    # SentencePiece pieces: corpus words are one ▁-marked token, no start token, </s> at the end
    prompt = "a photo of a squirrel, A Cat"
    tokens = tokenize(t5, prompt)
    pieces = t5.convert_ids_to_tokens(list(tokens.ids))
    assert pieces[:4] == ["▁a", "▁photo", "▁of", "▁a"] and pieces[-1] == "</s>" and tokens.ids.count(1) == 1
    # word → token positions by offsets, counted from 0 (there is no start token): a rare word is ▁ + one token
    # per character, and a capitalised word is spelled, case kept, as on real T5
    assert word_token_indices(t5, prompt, "photo") == [1]
    assert word_token_indices(t5, prompt, "a") == [0, 3, 14, 15] and pieces[14:16] == ["▁", "A"]
    squirrel = word_token_indices(t5, prompt, "squirrel")
    assert squirrel == list(range(4, 13)) and "".join(pieces[i] for i in squirrel) == "▁squirrel"
    assert word_token_indices(t5, prompt, ",") == [13] and pieces[13] == ","
    cat = word_token_indices(t5, prompt, "cat")
    assert "".join(pieces[i] for i in cat) == "▁Cat" and cat[-1] == len(pieces) - 2
    # padding to the encoder's length with <pad> (0) after </s>, as FLUX's pipeline asks for it
    padded = t5(["a cat", prompt], padding="max_length", max_length=24, truncation=True).input_ids
    assert padded[0] == [*tokenize(t5, "a cat").ids, *[0] * 21] and padded[1] == [*tokens.ids, 0, 0, 0]
    # at the encoder's limit: truncated with the end token kept, and a word past it raises
    short = tiny_t5_tokenizer(max_length=12)
    assert short(prompt, truncation=True).input_ids == [*tokens.ids[:11], 1]
    with pytest.warns(PromptTruncatedWarning, match="12"):
        assert tokenize(short, prompt).truncated
    with pytest.raises(PromptError, match="limit"):
        word_token_indices(short, prompt, "cat")
    # a character outside the alphabet is T5's <unk>, and names its word
    odd = tokenize(t5, "a 猫 cat")
    assert t5.unk_token_id in odd.ids and unknown_words(t5, odd) == ["猫"]
