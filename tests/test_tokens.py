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


def sd3_keys(t5_length: int = 32):
    """SD3's text keys on the tiny tokenizers: CLIP's 77 positions, then T5's ``t5_length``."""
    from promptedit.testing import tiny_t5_tokenizer, tiny_tokenizer
    from promptedit.text.tokens import KeySpan, TextKeys

    clip, t5 = tiny_tokenizer(), tiny_t5_tokenizer()
    return TextKeys((KeySpan(clip, 0, 77), KeySpan(t5, 77, t5_length))), clip, t5


def test_a_word_has_key_positions_in_every_encoders_part_of_the_keys():
    """SD3's keys are CLIP's 77 positions then T5's: a word is its CLIP positions p and its T5 positions 77 + q; one
    past CLIP's limit keeps its T5 positions; past every part's limit, or absent, it raises as for one tokenizer."""
    from promptedit.text.tokens import KeySpan, TextKeys

    keys, clip, t5 = sd3_keys()
    assert keys.length == 77 + 32
    prompt = "a photo of a zebra cat"
    # CLIP: start token, a, photo, of, a, z e b r a (a rare word: a token a letter); T5: a, photo, of, a, ▁ z e b r a
    assert keys.word_positions(prompt, "cat") == [10, 77 + 10]
    zebra = keys.word_positions(prompt, "zebra")
    assert zebra == [*range(5, 10), *range(77 + 4, 77 + 10)]
    for (a, b), w in [((0, 77), "zebra"), ((77, 109), "zebra")]:  # each part: that tokenizer's positions, offset
        span = next(s for s in keys.spans if s.start == a)
        assert [p - a for p in zebra if a <= p < b] == word_token_indices(span.tokenizer, prompt, w)
    # a repeated word: every occurrence in both parts
    assert keys.word_positions(prompt, "a") == [1, 4, 77 + 0, 77 + 3]
    # one tokenizer's keys (SD, SDXL) are its positions, as before
    assert TextKeys.of(clip).word_positions(prompt, "zebra") == word_token_indices(clip, prompt, "zebra")
    assert TextKeys.of(keys) is keys
    # past CLIP's 77 tokens, within T5's 32: T5's positions only
    long = "a cat " + "on the mat " * 30 + "dog"
    short_keys = TextKeys((KeySpan(clip, 0, 77), KeySpan(t5, 77, 512)))
    dog = short_keys.word_positions(long, "dog")
    assert dog == [77 + len(tokenize(t5, long).ids) - 2]
    with pytest.raises(PromptError, match="limit"):
        keys.word_positions(long, "dog")  # past both
    with pytest.raises(WordNotInPromptError):
        keys.word_positions(prompt, "giraffe")
    with pytest.raises(ValueError, match="follow one another"):
        TextKeys((KeySpan(clip, 0, 77), KeySpan(t5, 78, 32)))


def test_replacement_mapper_over_two_encoders_maps_each_part_on_its_own():
    """Prompt-to-Prompt's word-swap mapper on SD3's keys: block-diagonal, each block the one tokenizer's mapper, so
    the target's CLIP keys read the source's CLIP keys and its T5 keys the source's T5 keys."""
    from promptedit.text.tokens import KeySpan, TextKeys

    keys, clip, t5 = sd3_keys()
    src, tgts = "a photo of a cat", ["a photo of a dog", "a photo of a zebra"]
    m = get_replacement_mapper(keys, src, tgts)
    assert m.shape == (2, 109, 109)
    assert torch.equal(m[:, :77, :77], get_replacement_mapper(clip, src, tgts))
    assert torch.equal(m[:, 77:, 77:], get_replacement_mapper(TextKeys((KeySpan(t5, 0, 32),)), src, tgts))
    assert m[:, :77, 77:].eq(0).all() and m[:, 77:, :77].eq(0).all()
    # cat → zebra: every target key of zebra, in both parts, reads the source's cat of the same part
    cat = keys.word_positions(src, "cat")
    zebra = keys.word_positions(tgts[1], "zebra")
    clip_z, t5_z = [p for p in zebra if p < 77], [p for p in zebra if p >= 77]
    assert (len(clip_z), len(t5_z)) == (5, 6)  # z e b r a on CLIP, ▁ z e b r a on T5
    assert torch.allclose(m[1, cat[0]][clip_z], torch.tensor(1 / 5)) and m[1, cat[0]].sum() == 1
    assert torch.allclose(m[1, cat[1]][t5_z], torch.tensor(1 / 6)) and m[1, cat[1]].sum() == 1
    # the T5 end token and padding follow one to one after the longer word
    assert m[1, cat[1] + 1, t5_z[-1] + 1] == 1


def test_refinement_mapper_over_two_encoders_points_into_the_same_part():
    from promptedit.text.tokens import KeySpan, TextKeys

    keys, clip, t5 = sd3_keys()
    src, tgt = "a cat on the mat", "a striped cat on the mat"
    mapper, alphas = get_refinement_mapper(keys, src, [tgt])
    assert mapper.shape == alphas.shape == (1, 109)
    clip_m, clip_a = get_refinement_mapper(clip, src, [tgt])
    t5_m, t5_a = get_refinement_mapper(TextKeys((KeySpan(t5, 0, 32),)), src, [tgt])
    assert torch.equal(mapper[:, :77], clip_m) and torch.equal(mapper[:, 77:], t5_m + 77)
    assert torch.equal(alphas, torch.cat([clip_a, t5_a], dim=-1))
    assert alphas[0, keys.word_positions(tgt, "striped")].eq(0).all()  # the added word, in both parts
    assert mapper[0, keys.word_positions(tgt, "cat")].tolist() == keys.word_positions(src, "cat")
    # T5 has no start token: a prompt whose only shared word comes first still aligns
    assert get_refinement_mapper(keys, "cat", ["cat on the mat"])[1][0, [1, 77]].tolist() == [1.0, 1.0]
    with pytest.raises(AlignmentError, match="share no words"):
        get_refinement_mapper(keys, "cat", ["dog"])


def test_controllers_on_two_encoders_keys_edit_a_word_in_both_parts():
    """``build_controller`` over SD3's keys: re-weighting, cross-replace windows and local blend reach a word's CLIP
    and T5 keys."""
    from promptedit.control.edit_spec import EditSpec, build_controller

    keys, _, _ = sd3_keys()
    src, tgt = "a photo of a cat", "a photo of a dog"
    spec = EditSpec(src, (tgt,), mode="replace", reweight={"dog": 2.0}, blend_words=("cat", "dog"),
                    cross_replace_words={"dog": 0.5})
    controller, mode, _ = build_controller(spec, keys, 10)
    dog = keys.word_positions(tgt, "dog")
    assert mode == "replace" and len(dog) == 2 and dog[1] >= 77
    others = [k for k in range(109) if k not in dog]
    assert controller.equalizer[0, dog].eq(2).all() and controller.equalizer[0, others].eq(1).all()
    assert controller.prev.mapper.shape == (1, 109, 109) and controller.cross_alpha.shape[-1] == 109
    assert controller.cross_alpha[:, 0, dog].sum(0).tolist() == [5.0, 5.0]  # the word's own window: half the steps
    blend = controller.local_blend.word_alphas
    assert blend.shape == (2, 109)
    assert blend[0].nonzero().flatten().tolist() == keys.word_positions(src, "cat")
    assert blend[1].nonzero().flatten().tolist() == dog
