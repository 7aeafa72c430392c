"""Edit prompts in the syntax users already know: one prompt → a Prompt-to-Prompt edit.

:func:`parse_edit_prompt` reads a single prompt written in AUTOMATIC1111's
prompt-editing syntax (``a [red:blue:0.6] circle``) or in compel / InvokeAI's
(``a red.swap(blue) circle``) and returns a :class:`PromptEdit`: the source
and target prompts and the windows and weights of an :class:`~promptedit.methods.editing.EditSpec`
(``EditSpec(**edit.spec_kwargs())``), the equivalent ``promptedit edit`` flags
(:meth:`PromptEdit.flags`) and a record for result.json (:meth:`PromptEdit.to_dict`).

The parsers are the tools' own: A1111's lark grammar for scheduling (from its
``modules/prompt_parser.py``, run with the ``lark`` package) plus its
``re_attention`` weight scan, and compel's ``PromptParser`` (pyparsing). Both
are pure Python; this module imports neither torch nor diffusers.

Why the edit keeps the layout: A1111 and InvokeAI draw *one* image and switch
its prompt part-way; promptedit draws the source and the target side by side
from the same noise and gives the target the source's cross-attention maps
for the first part of the steps (Hertz et al. 2023). Each construct's timing
therefore becomes an injection window.

Mapping (F: a fraction of the steps). The edit is a *replace* edit when every
construct keeps its number of words, else a *refine* edit; ``mode`` stays
``auto`` (``resolve_mode`` picks the same from the prompts) except where the
word counts happen to balance out, where it is ``refine``:

==============================  ==========================================  ==========================================
construct                       what promptedit does                        how it differs from the original tool
==============================  ==========================================  ==========================================
A1111 ``[from:to:when]`` in a   source has ``from``, target ``to``; ``to``  A1111 draws ``from`` until ``when``, then
replace edit                    takes ``from``'s cross-attention maps for   switches the text to ``to`` in the same
                                the first ``when`` of the steps             image; here the target is a second image
                                (``cross_replace_words {to: when}``); the   that borrows the source's maps
                                other words keep the model's window
A1111 ``[to:when]`` (add),      a refine edit: the kept words take the      A1111 adds or removes the text at ``when``
``[from::when]`` (remove), and  source's maps for the first ``when``
every ``[from:to:when]`` of a   (``cross_replace = when``: one window for
prompt that has them (a swap    all kept words, so every ``when`` of the
is then a removal plus an       prompt must agree, else refused); new
addition)                       words keep their own maps
``when`` as written             with a decimal point: a fraction, at most   the same reading (A1111's current
                                1; without: a step number, which needs      scheduling), but A1111 silently caps a
                                ``num_inference_steps`` (n ≤ steps). Given  value past the end and reads a
                                the steps N, the window is A1111's own      negative one as 0 (both refused here)
                                count of the steps that draw ``from``:
                                s + 1 for s = int(when · N) (or n), as its
                                denoiser draws ``from`` while its step,
                                counted from 0, is ≤ s; all N once s
                                reaches N − 1; none for s = 0. Without N
                                a fraction stays as written (then about one
                                step shorter than A1111's)
A1111 ``(w:1.3)``, ``(w)``      ``reweight {w: c}``: the target's           A1111 scales the token *embeddings* in the
×1.1, ``[w]`` ÷1.1, nesting     cross-attention to ``w`` is scaled by c     one image; here the source is drawn
multiplies                      (P2P re-weighting); the source is drawn     unweighted and the weight is part of the
                                without weights                             edit
A1111 ``\(`` ``\)`` ``\[``   literal brackets (``\|`` a literal ``|``)  the same
``\]`` ``\\``
compel ``a.swap(b)``, ``(a      as ``[a:b:when]``; options below; a swap    InvokeAI draws the original prompt, then
b).swap(c d)``, ``"a            without options takes the model's windows   the edited one with the original's maps on
b".swap(c)``, ``a.swap()``                                                  the unchanged words only
``.swap(…, t_start=F)``         replace: ``cross_replace_words {b: F}``,    InvokeAI draws the *original* prompt
                                as A1111's ``when``; refine: refused (the   before t_start
                                swapped-in words have no source words)
``.swap(…, t_end=F)``           ``cross_replace = F``: every kept word      InvokeAI switches back to the original
                                takes the source's maps for the first F     prompt after t_end; here the target goes
                                                                            on, only the injection stops
``.swap(…, s_start=A,           ``self_replace (A, B)`` (``B`` alone when   InvokeAI's diffusers code ignores them
s_end=B)``,                     A = 0); compel sets B = 1 − S^(1/3)
``shape_freedom=S``
swap options at compel's        unset: the model's windows                  compel fills in t_start 0.2, t_end 1,
defaults                                                                    s_start = s_end = 0 before promptedit sees
                                                                            them, so a default written out is read as
                                                                            unset too
``t_start`` ≥ ``t_end`` (given  refused                                     InvokeAI injects while t_start ≤ t < t_end:
or compel's default)                                                        an empty window, the swap never edits
options on several swaps        each swap's own                             compel and InvokeAI apply the first
                                                                            swap's options to every swap (compel
                                                                            prints a warning)
compel ``w+``/``w-`` (1.1ⁿ /    ``reweight`` in the target, as A1111's      compel scales the embedding (≥ 1) or
0.9ⁿ), ``(w x)1.3``, ``"w       weights                                     blends it towards the prompt without the
x"-``, ``w.attend(1.3)``,                                                   words (< 1), in the one image
nesting multiplies
==============================  ==========================================  ==========================================

Refused by name, never dropped (:class:`UnsupportedConstructError`): A1111's
``AND``, ``BREAK`` and extra networks ``<lora:…>`` (also in ``auto``), alternation ``[a|b]``, nested
prompt editing ``[a:[b:c:2]:5]``, a weight inside ``from`` (promptedit draws
the source unweighted), prompt editing inside a weight's number; compel's
``.blend()``, ``.and()``/``.add()``, ``withLora()``/``useLora()``, a weight
inside a swap's original words, a swap inside a swap, an unknown swap option;
in both, an edit or weight that covers part of a word. Half-written syntax is
a :class:`PromptSyntaxError` with the column and a caret, where A1111 silently
reads stray brackets as text (or drops all prompt editing) and compel reads an
unparsed ``.swap(`` as words.

Several constructs compose into one source and one target. A weight wrapping
an edit applies to the target's words; ``[a:(b:1.2):0.5]`` weights ``b``.
Weights and per-word windows are by word (or phrase), as ``EditSpec`` takes
them, so a word weighted differently in two places, or a swapped-in word that
also occurs unedited, is refused (:class:`EditConflictError`) rather than
applied to every occurrence.

``syntax="auto"`` looks for constructs only one syntax has (A1111: ``[...]``,
``(w:1.3)``; compel: ``.swap()``, ``.attend()``, ``+``/``-`` and number
weights, ``.blend()``, ``.and()``, loras). A prompt with both, or with only a
plain ``(w)`` (A1111: ×1.1, compel: a group), is refused as ambiguous. A
prompt with none is a :class:`NoEditError`, as is one whose weights are all 1.

Smaller rules: a group whose number A1111 does not read as one (``(red:1e9)``, ``(red:nan)``) weights its
words, colon and all, ×1.1, as A1111 does, with a warning; whitespace runs become one space (the text encoder
ignores them; compel's spaces before punctuation, which it adds, are dropped); weights are rounded to 12
significant digits (1.1 × 1.1 is 1.21); ``AND`` and ``BREAK`` are words in ``syntax="compel"``, where they are
no syntax; where A1111's own grammar is ambiguous (its start rule also reads brackets as text, and its Earley
parser then sometimes drops an edit, as in ``[a[b:c:5]]:d``) promptedit takes the edit.
"""

from .common import (
    MAX_DEPTH,
    SYNTAXES,
    AmbiguousSyntaxError,
    EditConflictError,
    EditPromptError,
    NoEditError,
    PromptEdit,
    PromptSyntaxError,
    PromptValueError,
    UnsupportedConstructError,
)
from .edit_prompt import parse_edit_prompt

__all__ = [
    "MAX_DEPTH",
    "SYNTAXES",
    "AmbiguousSyntaxError",
    "EditConflictError",
    "EditPromptError",
    "NoEditError",
    "PromptEdit",
    "PromptSyntaxError",
    "PromptValueError",
    "UnsupportedConstructError",
    "parse_edit_prompt",
]
