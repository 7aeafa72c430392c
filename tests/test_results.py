"""What each method returns (promptedit.methods.result): its own type, with exactly the fields it fills, and the
record (result.json's fields) each type gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from promptedit.control.edit_spec import EditSpec
from promptedit.methods.editing import attention, edit, generate
from promptedit.methods.inversion import invert, reconstruct
from promptedit.methods.maskedit import diffedit, instdiffedit, make_mask, masked_edit
from promptedit.methods.result import (AttentionResult, EditResult, GenerationResult, MaskEditResult,
                                       ReconstructionResult, Result)
from promptedit.outputs.records import result_fields

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"
STEPS = dict(num_inference_steps=2, progress=False)
BASE_KEYS = {"method", "prompts", "seed", "num_inference_steps", "guidance_scale", "height", "width", "scheduler",
             "timings"}


def _image():
    img = np.full((32, 32, 3), 220, np.uint8)  # (H, W, 3) uint8
    img[8:24, 8:24] = (200, 30, 30)
    return img


def _inversion(m):
    return invert(m, _image(), SRC, method="direct", **STEPS)


def _inside():
    mask = np.zeros((32, 32), bool)  # (H, W)
    mask[8:24, 8:24] = True
    return mask


# name: (run on the tiny model, its type, the fields this run leaves None (documented on the type), the record's
# keys beyond BASE_KEYS)
CASES = {
    "generate": (lambda m: generate(m, SRC, seed=1, **STEPS), GenerationResult, set(), set()),
    "edit of an inversion, with attention and a blend": (
        lambda m: edit(m, EditSpec(SRC, (TGT,), blend_words=("cat",)), start=_inversion(m), store_attention=True,
                       progress=False),
        EditResult, {"seed"}, {"spec", "mode", "notes", "edit_null", "inversion", "attention_downsample"}),
    "edit of a seed": (lambda m: edit(m, EditSpec(SRC, (TGT,)), seed=1, **STEPS), EditResult,
                       {"attention", "attention_downsample", "blend_mask", "edit_null", "inversion"},
                       {"spec", "mode", "notes"}),
    "attention": (lambda m: attention(m, SRC, seed=1, **STEPS), AttentionResult, set(), {"attention_downsample"}),
    "reconstruct": (lambda m: reconstruct(m, _inversion(m), progress=False), ReconstructionResult, {"seed"},
                    {"edit_null", "inversion"}),
    "instdiffedit": (lambda m: instdiffedit(m, _image(), SRC, TGT, **STEPS), MaskEditResult, set(),
                     {"mask_fraction", "words", "settings"}),
    "instant mask": (lambda m: make_mask(m, _image(), SRC, TGT, method="instant", **STEPS), MaskEditResult,
                     {"final_latents"}, {"mask_fraction", "words", "settings"}),
    "user mask": (lambda m: masked_edit(m, _image(), _inside(), TGT, **STEPS), MaskEditResult,
                  {"soft_mask", "words"}, {"mask_fraction", "settings"}),
    "diffedit": (lambda m: diffedit(m, _image(), SRC, TGT, num_maps=1, **STEPS), MaskEditResult,
                 {"latents", "final_latents", "soft_mask", "words"}, {"mask_fraction", "settings"}),
}


@pytest.mark.parametrize("name", CASES)
def test_each_method_returns_its_type_with_the_fields_it_fills(tiny_model, name):
    method, kind, unfilled, record_keys = CASES[name]
    result = method(tiny_model)
    assert type(result) is kind and isinstance(result, Result)
    left_none = {f.name for f in dataclasses.fields(result) if getattr(result, f.name) is None}
    assert left_none == unfilled
    # the other kinds' fields are not there (one type per kind, not the union of every method's fields)
    others = {f.name for k in (GenerationResult, EditResult, AttentionResult, ReconstructionResult, MaskEditResult)
              for f in dataclasses.fields(k)} - {f.name for f in dataclasses.fields(kind)}
    assert not any(hasattr(result, f) for f in others)
    rec = result_fields(result)
    assert set(rec) == BASE_KEYS | record_keys


def test_every_field_of_each_type_is_filled_by_some_method():
    """No type carries a field that none of its methods fills (the base's: that no method fills)."""
    base = {f.name for f in dataclasses.fields(Result)}
    assert not set.intersection(*(unfilled for _, _, unfilled, _ in CASES.values())) & base
    for kind in (GenerationResult, EditResult, AttentionResult, ReconstructionResult, MaskEditResult):
        cases = [unfilled for _, k, unfilled, _ in CASES.values() if k is kind]
        assert cases, kind
        never = set.intersection(*cases) - base
        assert not never, f"{kind.__name__} fields no method fills: {never}"
