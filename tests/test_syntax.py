"""promptedit.text.syntax: A1111 and compel edit prompts → Prompt-to-Prompt edits.

Each row of the table is an edit prompt and the edit it must give (round trip: parse → fields); every row
also becomes an EditSpec and a controller on a tiny tokenizer, which proves that the words it names are
words of the prompts. The errors are checked by class, by the construct they name and for being one line.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from promptedit.control import step_window
from promptedit.errors import ParameterError, PromptError
from promptedit.text.syntax import (
    SYNTAXES,
    AmbiguousSyntaxError,
    EditConflictError,
    NoEditError,
    PromptEdit,
    PromptSyntaxError,
    PromptValueError,
    UnsupportedConstructError,
    parse_edit_prompt,
)
from promptedit.text.syntax.a1111 import _a1111_when
from promptedit.text.syntax.common import _Edit, _fmt
from promptedit.text.syntax.compel import _compel_module

pytestmark = pytest.mark.unit

try:  # EditSpec moved from editing to spec; either home will do
    from promptedit.control.edit_spec import EditSpec, build_controller
except ImportError:  # pragma: no cover
    from promptedit.methods.editing import EditSpec, build_controller


def row(prompt, source, target, *, mode="auto", cross=None, words=None, self_=None, weights=None,
        syntax_="a1111", steps=None, given="auto"):
    """One table row: the prompt, how to parse it, and the edit expected."""
    return pytest.param(
        prompt, given, steps,
        dict(source=source, targets=(target,), mode=mode, cross_replace=cross, cross_replace_words=words or {},
             self_replace=self_, reweight=weights or {}, syntax=syntax_),
        id=prompt[:60],
    )


TABLE = [
    # ---- A1111: prompt editing, replace edits (the word counts stay)
    row("a [red:blue:0.6] circle on a (white:1.2) background", "a red circle on a white background",
        "a blue circle on a white background", words={"blue": 0.6}, weights={"white": 1.2}),
    row("a [red:blue:10] circle", "a red circle", "a blue circle", words={"blue": 0.22}, steps=50),  # 0…10
    row("a [red:blue:0] circle", "a red circle", "a blue circle", words={"blue": 0.0}),
    row("a [red:blue:1.0] circle", "a red circle", "a blue circle", words={"blue": 1.0}),
    row("a [red : blue : 0.5 ] circle", "a red circle", "a blue circle", words={"blue": 0.5}),
    row("a [small:big:5] [red:blue:15] circle", "a small red circle", "a big blue circle",
        words={"big": 0.3, "blue": 0.8}, steps=20),
    row("[red:blue:0.3] ball and [green:yellow:0.6] box", "red ball and green box", "blue ball and yellow box",
        words={"blue": 0.3, "yellow": 0.6}),
    row("a [fluffy cat:smiling dog:0.4] on a mat", "a fluffy cat on a mat", "a smiling dog on a mat",
        words={"smiling dog": 0.4}),
    row("style: flat, a [red:blue:0.5] circle", "style: flat, a red circle", "style: flat, a blue circle",
        words={"blue": 0.5}),
    row("a \\(red\\) [cat:dog:0.5]", "a (red) cat", "a (red) dog", words={"dog": 0.5}),
    # ---- A1111: added and removed words, refine edits (one window for the kept words)
    row("a circle[ on a square:0.4]", "a circle", "a circle on a square", cross=0.4),
    row("a big[ red::0.3] circle", "a big red circle", "a big circle", cross=0.3),
    row("a [red:dark blue:0.5] circle", "a red circle", "a dark blue circle", cross=0.5),
    row("a [big ::0.5]circle[ outline:0.5]", "a big circle", "a circle outline", mode="refine", cross=0.5),
    # ---- A1111: weights only
    row("a (white) circle", "a white circle", "a white circle", mode="reweight", weights={"white": 1.1},
        given="a1111"),
    row("a [white] circle", "a white circle", "a white circle", mode="reweight",
        weights={"white": round(1 / 1.1, 12)}),
    row("a ((white:1.2)) circle", "a white circle", "a white circle", mode="reweight", weights={"white": 1.32}),
    row("a (white circle:0.5) on a mat", "a white circle on a mat", "a white circle on a mat", mode="reweight",
        weights={"white circle": 0.5}),
    row("a (red:-1) circle", "a red circle", "a red circle", mode="reweight", weights={"red": -1.0}),
    # ---- A1111: weights on edits apply to the target's words
    row("a ([red:blue:0.5]:1.2) ball", "a red ball", "a blue ball", words={"blue": 0.5}, weights={"blue": 1.2}),
    row("a [red:(blue:1.2):0.5] ball", "a red ball", "a blue ball", words={"blue": 0.5}, weights={"blue": 1.2}),
    # ---- compel: swaps
    row("a red.swap(blue) circle", "a red circle", "a blue circle", syntax_="compel"),
    row("a (fluffy cat).swap(smiling dog) on a mat", "a fluffy cat on a mat", "a smiling dog on a mat",
        syntax_="compel"),
    row('a "fluffy cat".swap(smiling dog, t_start=0.3) on a mat', "a fluffy cat on a mat", "a smiling dog on a mat",
        words={"smiling dog": 0.3}, syntax_="compel"),
    row("a cat.swap(dog, t_end=0.7, s_end=0.4) on a mat", "a cat on a mat", "a dog on a mat", cross=0.7, self_=0.4,
        syntax_="compel"),
    row("a cat.swap(dog, s_start=0.1, s_end=0.5) on a mat", "a cat on a mat", "a dog on a mat", self_=(0.1, 0.5),
        syntax_="compel"),
    row("a cat.swap(dog, shape_freedom=0.125) on a mat", "a cat on a mat", "a dog on a mat", self_=0.5,
        syntax_="compel"),
    row("a cat.swap(dog, t_start=0.2, t_end=1.0) on a mat", "a cat on a mat", "a dog on a mat", syntax_="compel"),
    row("a cat.swap(dog) eating a hotdog.swap(pizza)", "a cat eating a hotdog", "a dog eating a pizza",
        syntax_="compel"),
    row("a cat.swap(smiling dog) on a mat", "a cat on a mat", "a smiling dog on a mat", syntax_="compel"),
    row("a big.swap() cat on a mat", "a big cat on a mat", "a cat on a mat", syntax_="compel"),
    row('a "".swap(big) cat on a mat', "a cat on a mat", "a big cat on a mat", syntax_="compel"),
    row("a cat.swap(dog, t_end=0.6), on a mat", "a cat, on a mat", "a dog, on a mat", cross=0.6, syntax_="compel"),
    # ---- compel: weights
    row("a fluffy++ cat", "a fluffy cat", "a fluffy cat", mode="reweight", weights={"fluffy": 1.21},
        syntax_="compel"),
    row("a fluffy-- cat", "a fluffy cat", "a fluffy cat", mode="reweight", weights={"fluffy": 0.81},
        syntax_="compel"),
    row("a (fluffy cat)1.3 on a mat", "a fluffy cat on a mat", "a fluffy cat on a mat", mode="reweight",
        weights={"fluffy cat": 1.3}, syntax_="compel"),
    row('a "fluffy cat"- on a mat', "a fluffy cat on a mat", "a fluffy cat on a mat", mode="reweight",
        weights={"fluffy cat": 0.9}, syntax_="compel"),
    row("a fluffy.attend(0.5) cat", "a fluffy cat", "a fluffy cat", mode="reweight", weights={"fluffy": 0.5},
        syntax_="compel"),
    row("a cat.swap((dog)1.3) on a mat", "a cat on a mat", "a dog on a mat", weights={"dog": 1.3},
        syntax_="compel"),
    row("(a cat.swap(dog))1.2 on a mat", "a cat on a mat", "a dog on a mat", weights={"a dog": 1.2},
        syntax_="compel"),
    row("a (white) circle.swap(square)", "a white circle", "a white square", syntax_="compel", given="compel"),
]


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny CLIP-style tokenizer of the test models (no model built)."""
    from promptedit.testing import tiny_tokenizer

    return tiny_tokenizer()


@pytest.mark.parametrize("prompt, given, steps, expected", TABLE)
def test_table(prompt, given, steps, expected, tokenizer):
    edit = parse_edit_prompt(prompt, given, num_inference_steps=steps)
    got = {k: getattr(edit, k) for k in expected}
    got["cross_replace_words"] = dict(edit.cross_replace_words)
    got["reweight"] = dict(edit.reweight)
    assert _close(got, expected), (got, expected)
    spec = EditSpec(**edit.spec_kwargs())
    assert spec.source == edit.source and spec.targets == edit.targets
    _, mode, _ = build_controller(spec, tokenizer, 50)  # finds every word the edit names
    if edit.mode != "auto":
        assert mode == edit.mode
    if edit.cross_replace_words:  # per-word windows time swapped-in words of replace edits
        assert mode == "replace"


def _close(got: dict, expected: dict) -> bool:
    """Equal, numbers within 1e-12."""
    def same(a, b):
        """Recursive equality with float tolerance."""
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, tuple) and isinstance(b, tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, float) or isinstance(b, float):
            return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-12)
        return a == b
    return same(got, expected)


def test_table_is_large_and_covers_both_syntaxes():
    syntaxes = [p.values[3]["syntax"] for p in TABLE]
    assert len(TABLE) >= 30 and syntaxes.count("a1111") >= 15 and syntaxes.count("compel") >= 15


# ----------------------------------------------------------------------------- results


def test_flags_for_a_swap_and_a_weight():
    edit = parse_edit_prompt("a [red:blue:0.6] circle on a (white:1.2) background")
    assert edit.flags() == ["--source", "a red circle on a white background",
                            "--target", "a blue circle on a white background",
                            "--cross-replace", "blue=0.6", "--reweight", "white=1.2"]


def test_flags_for_compel_windows():
    edit = parse_edit_prompt("a cat.swap(dog, s_start=0.1, s_end=0.5, t_end=0.7, t_start=0.3) on a mat")
    assert edit.flags() == ["--source", "a cat on a mat", "--target", "a dog on a mat",
                            "--cross-replace", "0.7", "--cross-replace", "dog=0.3", "--self-replace", "0.1,0.5"]


def test_flags_for_reweight_and_forced_refine():
    assert parse_edit_prompt("a fluffy++ cat").flags() == [
        "--source", "a fluffy cat", "--mode", "reweight", "--reweight", "fluffy=1.21"]
    assert parse_edit_prompt("a [big ::0.5]circle[ outline:0.5]").flags() == [
        "--source", "a big circle", "--target", "a circle outline", "--mode", "refine", "--cross-replace", "0.5"]


def _from_flags(flags: list[str]) -> dict:
    """The spec kwargs that ``promptedit edit`` builds from these flags (F | START,END | WORD=F, WORD=C)."""
    def window(text):
        """F or START,END as the CLI reads it."""
        parts = [float(v) for v in text.split(",")]
        return parts[0] if len(parts) == 1 else tuple(parts)

    out = dict(targets=[], mode="auto", cross_replace=None, cross_replace_words={}, self_replace=None, reweight={})
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag == "--source":
            out["source"] = value
        elif flag == "--target":
            out["targets"].append(value)
        elif flag == "--mode":
            out["mode"] = value
        elif flag == "--self-replace":
            out["self_replace"] = window(value)
        elif flag == "--reweight":
            word, c = value.rsplit("=", 1)
            out["reweight"][word] = float(c)
        elif "=" in value:
            word, w = value.rsplit("=", 1)
            out["cross_replace_words"][word] = window(w)
        else:
            out["cross_replace"] = window(value)
    out["targets"] = tuple(out["targets"]) or (out["source"],)
    return out


@pytest.mark.parametrize("prompt, given, steps, expected", TABLE)
def test_flags_say_the_same_edit(prompt, given, steps, expected):
    edit = parse_edit_prompt(prompt, given, num_inference_steps=steps)
    assert _from_flags(edit.flags()) == edit.spec_kwargs()


def test_to_dict_is_json_with_the_syntax():
    edit = parse_edit_prompt("a cat.swap(dog, s_start=0.1, s_end=0.5) on a mat")
    record = json.loads(json.dumps(edit.to_dict()))
    assert record["syntax"] == "compel" and record["prompt"] == "a cat.swap(dog, s_start=0.1, s_end=0.5) on a mat"
    assert record["source"] == "a cat on a mat" and record["targets"] == ["a dog on a mat"]
    assert record["self_replace"] == [0.1, 0.5] and record["cross_replace"] is None
    assert all("\n" not in n for n in record["notes"]) and record["notes"][0].startswith("auto: read as compel")


def test_notes_say_what_each_construct_does():
    edit = parse_edit_prompt("a [red:blue:10] circle", num_inference_steps=50)
    assert any("[red:blue:10]" in n and "11 of 50 steps" in n and "--cross-replace blue=0.22" in n for n in edit.notes)


def test_prompt_edit_is_frozen():
    edit = parse_edit_prompt("a [red:blue:0.6] circle")
    with pytest.raises(AttributeError):
        edit.source = "x"
    with pytest.raises(TypeError):
        edit.cross_replace_words["blue"] = 0.1
    assert isinstance(edit, PromptEdit) and SYNTAXES == ("auto", "a1111", "compel")


def _a1111_steps_drawing_from(when: str, steps: int) -> int:
    """How many steps AUTOMATIC1111 draws ``a`` of ``[a:b:when]``, run as its code runs: prompt_parser's
    collect_steps and at_step build the schedule, and reconstruct_cond_batch picks an entry for each step of
    the denoiser, which counts from 0 (modules/prompt_parser.py, sd_samplers_cfg_denoiser.py)."""
    v = float(when)
    v = v * steps if "." in when else v
    switch = min(steps, int(v))
    boundaries = sorted({steps} | ({switch} if switch >= 1 else set()))
    schedule = [(end, "a" if end <= switch else "b") for end in boundaries]  # at_step: before if step <= when
    drawn = [next(text for end, text in schedule if step <= end) for step in range(steps)]
    return drawn.count("a")


def test_a1111_windows_are_a1111s_step_counts():
    # every fraction of two decimals and every step number, at step counts around the usual ones: the target
    # takes the source's maps for exactly the steps A1111 draws the first text (0.58 at 50: 29, steps 0…28)
    # (the grid reads `when` as the parser does, without the grammar's time; a few go the whole way)
    for steps in (*range(1, 31), 49, 50, 51, 100, 150):
        for when in [f"{k / 100:.2f}" for k in range(101)] + [str(n) for n in range(steps + 1)]:
            edit = _Edit(f"[red:blue:{when}]")
            _a1111_when(edit, when, steps)
            assert step_window(edit.when, steps) == (0, _a1111_steps_drawing_from(when, steps)), (when, steps)
            assert float(_fmt(edit.when)) == edit.when  # the flags say the same window
    for when, steps in (("0.58", 50), ("0.5", 50), ("0.01", 50), ("0.03", 50), ("0.99", 50), ("10", 50),
                        ("49", 50), ("0.3", 7)):
        edit = parse_edit_prompt(f"a [red:blue:{when}] circle", num_inference_steps=steps)
        window = edit.cross_replace_words["blue"]
        assert step_window(window, steps) == (0, _a1111_steps_drawing_from(when, steps)), (when, steps)
        assert _from_flags(edit.flags())["cross_replace_words"]["blue"] == window
    assert step_window(parse_edit_prompt("a [red:blue:0.58] circle", num_inference_steps=50)
                       .cross_replace_words["blue"], 50) == (0, 29)


def test_a1111_windows_of_a_refine_edit_are_its_step_counts_too():
    edit = parse_edit_prompt("a [striped :0.5]circle", num_inference_steps=50)
    assert step_window(edit.cross_replace, 50) == (0, 26) == (0, _a1111_steps_drawing_from("0.5", 50))


def test_a1111_fraction_without_steps_stays_as_written():
    assert parse_edit_prompt("a [red:blue:0.58] circle").cross_replace_words["blue"] == 0.58


@pytest.mark.parametrize("prompt, group, after", [
    ("a (red:1e9) circle", "(red:1e9) at column 3", "'1e9'"),
    ("a (red:nan) circle", "(red:nan) at column 3", "'nan'"),
    ("a [x:y:0.5] ((red:inf)) circle", "(red:inf) at column 14", "'inf'"),
])
def test_a_weight_a1111_reads_as_words_is_warned_once(prompt, group, after):
    import warnings

    from promptedit.errors import PromptEditWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        edit = parse_edit_prompt(prompt)
    said = [str(w.message) for w in caught if issubclass(w.category, PromptEditWarning)]
    assert len(said) == 1 and said[0].startswith(group) and f"reads {after} after the colon as words" in said[0]
    assert list(edit.reweight) == [group.split(")")[0][1:]]  # as A1111 reads it: the words, colon and all


def test_weights_a1111_reads_as_numbers_are_not_warned():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for prompt in ("a (red:1.5) circle", "a (red: 1.5 ) circle", "a (red:-1) circle", "a (red) [x:y:0.3]",
                       "a \\(red:1e9\\) [x:y:0.3]"):
            parse_edit_prompt(prompt)


def test_editspec_checks_what_the_parser_leaves():
    kwargs = parse_edit_prompt("a [red:blue:0.6] circle").spec_kwargs()
    with pytest.raises(ParameterError):
        EditSpec(**{**kwargs, "reweight": {"blue": float("inf")}})
    with pytest.raises(ParameterError):
        EditSpec(**{**kwargs, "cross_replace_words": {"blue": 1.5}})


def test_uses_compels_own_parser_without_torch():
    assert _compel_module().__file__.replace("\\", "/").endswith("compel/prompt_parser.py")
    code = ("import sys; from promptedit.text.syntax import parse_edit_prompt as p; p('a cat.swap(dog)'); "
            "p('a [a:b:0.5] c'); bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- errors


def _raises(cls, prompt, given="auto", steps=None):
    """The error ``prompt`` raises, checked to be ``cls``, a PromptError and one line."""
    with pytest.raises(cls) as info:
        parse_edit_prompt(prompt, given, num_inference_steps=steps)
    e = info.value
    assert isinstance(e, PromptError) and isinstance(e, ValueError)
    assert "\n" not in str(e) and "\r" not in str(e)
    return e


@pytest.mark.parametrize("prompt, given, where, shown", [
    ("a [red:blue circle", "auto", "column 3", "a ^[red:blue circle"),
    ("a [red:blue:0.5", "a1111", "column 3", "a ^[red:blue:0.5"),
    ("a red) circle", "auto", "column 6", "a red^) circle"),
    ("a|b [x:y:0.5]", "auto", "column 2", "a^|b [x:y:0.5]"),
    ("[a:b] c", "a1111", "column 5", "[a:b^] c"),
    ("a cat.swap(dog", "auto", "column 11", "a cat.swap^(dog"),
    ('a "cat.swap(dog)', "compel", "column 3", 'a ^"cat.swap(dog)'),
    ("a cat\n[a:b", "a1111", "line 2, column 1", "a cat\\n^[a:b"),
])
def test_syntax_error_names_the_column_with_a_caret(prompt, given, where, shown):
    e = _raises(PromptSyntaxError, prompt, given)
    assert f"at {where}: {shown}" in str(e) and str(e).endswith(shown)


@pytest.mark.parametrize("prompt, given, steps, construct", [
    ("a cat AND a dog", "auto", None, "AND"),
    ("a cat BREAK a dog", "a1111", None, "BREAK"),
    ("a [cat|dog] on a mat", "auto", None, "alternation"),
    ('("a cat", "a dog").blend(1, 1)', "auto", None, ".blend()"),
    ('("a cat", "a dog").and()', "compel", None, ".and()"),
    ("a cat withLora(foo, 0.5)", "auto", None, "withLora()"),
    ("<lora:foo:0.8> a [cat:dog:0.5]", "auto", None, "lora"),
    ("a [cat:dog:0.5] <hypernet:bar:1>", "a1111", None, "hypernet"),
    ("a [b:[c:d:2]:5] e", "auto", 10, "nested prompt editing"),
    ("a cat.swap(dog.swap(rat))", "auto", None, "swap in swap"),
    ("a [(red:1.2):blue:0.5] ball", "auto", None, "weight in from"),
    ("a ((cat)1.2).swap(dog)", "auto", None, "weight in swap original"),
    ("a cat.swap(dog, foo=1)", "auto", None, "swap option foo"),
    ("a cat.swap(dog, 0.5)", "auto", None, "swap option 0.5"),
    ("a cat.swap(smiling dog, t_start=0.4)", "auto", None, "t_start in refine"),
    ("(white:[1.2:1.5:0.5]) circle", "auto", None, "edit in weight"),
    ("a [red:blue:0.5]circle", "auto", None, "partial word"),
    ("a (fluff)y cat", "a1111", None, "partial word"),
])
def test_constructs_without_p2p_meaning_are_refused_by_name(prompt, given, steps, construct):
    e = _raises(UnsupportedConstructError, prompt, given, steps)
    assert e.construct == construct
    assert construct.split()[0].rstrip("()") in str(e) or construct in ("weight in from", "weight in swap original",
                                                                        "edit in weight", "partial word")


@pytest.mark.parametrize("prompt, given, steps, text", [
    ("(white:" + "9" * 400 + ") circle", "auto", None, "not a finite number"),
    ("(white)" + "9" * 400 + ".0 circle", "compel", None, "not a finite number"),
    ("a [red:blue:10] circle", "auto", None, "num_inference_steps"),
    ("a [red:blue:60] circle", "auto", 50, "past the last of the 50 steps"),
    ("a [red:blue:1.5] circle", "auto", 50, "decimal point"),
    ("a [red:blue:-0.5] circle", "auto", None, "negative; A1111 reads it as 0"),
    ("a [red:blue:-3] circle", "auto", 50, "negative; A1111 reads it as 0"),
    ("a cat.swap(dog, t_start=0.5, t_end=0.3) on a mat", "auto", None, "t_start=0.5 is not before t_end=0.3"),
    ("a cat.swap(dog, t_end=0.1) on a mat", "auto", None, "t_start=0.2 (compel's default) is not before"),
    ("a cat.swap(dog, t_start=1.5)", "auto", None, "between 0 and 1"),
    ("a cat.swap(dog, s_start=0.3)", "auto", None, "s_start=0.3 is after s_end=0"),
])
def test_bad_numbers_are_refused(prompt, given, steps, text):
    assert text in str(_raises(PromptValueError, prompt, given, steps))


@pytest.mark.parametrize("prompt", [
    "a (cat:1.2) and a (cat:1.5)",
    "a (cat:1.2) and a cat",
    "a [red:blue:0.6] circle with blue dots",
    "a [x::0.3] y [z:0.5]",
    "[red:blue:0.3] ball and [green:blue:0.6] box",
    "a cat.swap(dog, t_end=0.5) and a rat.swap(bat, t_end=0.6)",
])
def test_conflicts_are_refused(prompt):
    _raises(EditConflictError, prompt)


@pytest.mark.parametrize("prompt, given, text", [
    ("a red circle", "auto", "no edit construct"),
    ("a red circle", "a1111", "no A1111 edit construct"),
    ("   ", "auto", "empty"),
    ("a (white:1) circle", "a1111", "no A1111 edit construct"),
    ("a (white) circle", "compel", "no compel edit construct"),
    ("a [red:red:0.5] circle", "auto", "changes nothing"),
    ("[circle::0.5]", "auto", "target prompt is empty"),
    ("a [red:blue:0.5] circle", "compel", "is A1111 syntax"),
])
def test_prompts_without_an_edit_are_refused(prompt, given, text):
    assert text in str(_raises(NoEditError, prompt, given))


@pytest.mark.parametrize("prompt", ["a (white) circle", "a cat.swap(dog) on a [red:blue:0.5] mat"])
def test_auto_refuses_ambiguous_prompts(prompt):
    assert "syntax='a1111'" in str(_raises(AmbiguousSyntaxError, prompt))


def test_auto_reads_either_syntax_the_same_when_it_can():
    assert parse_edit_prompt("a [red:blue:0.5] circle").spec_kwargs() == parse_edit_prompt(
        "a [red:blue:0.5] circle", "a1111").spec_kwargs()
    assert parse_edit_prompt("a red.swap(blue) circle").spec_kwargs() == parse_edit_prompt(
        "a red.swap(blue) circle", "compel").spec_kwargs()


def test_auto_takes_the_only_syntax_that_reads_the_prompt():
    edit = parse_edit_prompt('a 5" (white) screen')  # compel: an unclosed quote; A1111: quotes are text
    assert edit.syntax == "a1111" and dict(edit.reweight) == {"white": 1.1}
    assert "compel syntax error" in str(_raises(PromptSyntaxError, 'a 5" screen.swap(tv)'))


def test_arguments_are_checked():
    with pytest.raises(ParameterError):
        parse_edit_prompt("a [red:blue:0.5] circle", "invokeai")
    with pytest.raises(ParameterError):
        parse_edit_prompt("a [red:blue:5] circle", num_inference_steps=0)
    with pytest.raises(PromptError):
        parse_edit_prompt(None)
