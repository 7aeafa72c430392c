"""The negative prompt (``negative_prompt=``, ``--negative-prompt``, a manifest's ``negative_prompt``): its
conditioning is the unconditional branch of classifier-free guidance, exactly as diffusers' pipelines take it,
recorded in result.json, and refused in one line where there is no unconditional branch to replace."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from promptedit.methods.editing import EditSpec, edit, generate
from promptedit.errors import ParameterError
from promptedit.requests import EditRequest, InvertRequest, SamplingOptions

from helpers import one_line_error, run

pytestmark = pytest.mark.integration

SRC, TGT, NEG = "a photo of a cat", "a photo of a dog", "a photo of a dog"


def test_generate_with_a_negative_prompt_equals_diffusers_pipeline(family_model):
    """Every family: the negative prompt's conditioning (SDXL: both encoders' embeddings and the pooled output,
    no zeros) is the unconditional branch, as ``*Pipeline(negative_prompt=...)``; it changes the image, and the
    seed reproduces it."""
    import diffusers

    from promptedit.runner import decode_latents

    m = family_model
    pipe = getattr(diffusers, m.family_entry.pipelines.txt2img)(**m.pipeline_components())
    pipe.set_progress_bar_config(disable=True)
    kw = dict(seed=3, num_inference_steps=3, guidance_scale=7.5, progress=False)
    ours = generate(m, SRC, negative_prompt=NEG, **kw)
    ref = pipe(SRC, num_inference_steps=3, height=m.image_size, width=m.image_size,
               latents=m.backbone.pack(ours.latents), output_type="np",
               **{**m.family_entry.pipeline_call(m, 7.5), "negative_prompt": NEG}).images  # the family's run
    assert np.abs(decode_latents(m, ours.final_latents) - ref).max() < 1e-5
    assert ours.sampling.negative_prompt == NEG
    plain = generate(m, SRC, **kw)
    assert np.abs(plain.images.astype(int) - ours.images).max() > 0
    assert np.array_equal(generate(m, SRC, negative_prompt=NEG, **kw).images, ours.images)


def test_refusals_of_the_api_are_one_line(tiny_model):
    with pytest.raises(ParameterError, match="guidance scale other than 1"):
        generate(tiny_model, SRC, negative_prompt=NEG, guidance_scale=1, num_inference_steps=1, progress=False)
    with pytest.raises(ParameterError, match="must be text"):
        generate(tiny_model, SRC, negative_prompt=3, num_inference_steps=1, progress=False)
    with pytest.raises(ParameterError, match="guidance scale other than 1"):
        SamplingOptions(guidance=1, negative_prompt=NEG)
    with pytest.raises(ParameterError, match="must be a prompt"):
        SamplingOptions(negative_prompt=["a", "b"])
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ParameterError, match="an inversion takes no negative prompt"):
        InvertRequest(image, SRC, method="ddim", sampling=SamplingOptions(negative_prompt=NEG))
    invert = InvertRequest(image, SRC, method="null-text")
    with pytest.raises(ParameterError, match="null-text inversion: its unconditional branch is the inversion's"):
        EditRequest(EditSpec(SRC, (TGT,)), SamplingOptions(negative_prompt=NEG), invert=invert)
    with pytest.raises(ParameterError, match="give them to the inversion"):  # the edit's own: a negative prompt only
        EditRequest(EditSpec(SRC, (TGT,)), SamplingOptions(steps=2, negative_prompt=NEG), invert=invert)


def test_edits_of_inversions_take_it_in_every_branch_unless_the_inversion_owns_that_branch(tiny_model):
    from promptedit.methods.inversion import invert

    image = generate(tiny_model, SRC, seed=1, num_inference_steps=2, progress=False).images[0]
    spec = EditSpec(SRC, (TGT,))
    inv = invert(tiny_model, image, SRC, method="ddim", num_inference_steps=2, progress=False)
    plain = edit(tiny_model, spec, start=inv, progress=False)
    ours = edit(tiny_model, spec, start=inv, negative_prompt="a photo", progress=False)
    assert ours.sampling.negative_prompt == "a photo" and np.abs(plain.images.astype(int) - ours.images).max() > 0
    own = invert(tiny_model, image, SRC, method="negative-prompt", num_inference_steps=2, progress=False)
    with pytest.raises(ParameterError, match="negative-prompt inversion: its unconditional branch"):
        edit(tiny_model, spec, start=own, negative_prompt="a photo", progress=False)


def test_cli_and_batch_record_it_and_refuse_it_in_one_line(tiny_model_dir, tmp_path, capsys):
    common = ("--model", tiny_model_dir, "--steps", 2, "--quiet", "--threads", 1)
    code, _, err = run(capsys, "generate", SRC, "--out", tmp_path / "g.png", "--negative-prompt", NEG, *common)
    assert code == 0, err
    assert json.loads((tmp_path / "g.json").read_text())["negative_prompt"] == NEG
    code, _, err = run(capsys, "generate", SRC, "--out", tmp_path / "plain.png", *common)
    assert code == 0 and "negative_prompt" not in json.loads((tmp_path / "plain.json").read_text())
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(item) for item in (
        {"id": "gen", "source": SRC, "target": TGT, "steps": 2, "negative_prompt": "a photo"},
        {"id": "real", "image": "photo.png", "source": SRC, "target": TGT, "method": "direct", "steps": 2,
         "negative_prompt": "a photo"},
        {"id": "masked", "image": "photo.png", "source": SRC, "target": TGT, "method": "mask", "mask": "mask.png",
         "steps": 2, "negative_prompt": "a photo"},
    )) + "\n")
    code, _, err = run(capsys, "batch", manifest, "--out", tmp_path / "b", "--model", tiny_model_dir, "--quiet",
                       "--threads", 1)
    assert code == 0, err
    for item in ("gen", "real", "masked"):
        assert json.loads((tmp_path / "b" / item / "result.json").read_text())["negative_prompt"] == "a photo", item
    for argv, says in (
        (["generate", SRC, "--out", tmp_path / "x.png", "--guidance", 1], "guidance scale other than 1"),
        (["edit", "--source", SRC, "--target", TGT, "--image", tmp_path / "photo.png", "--out", tmp_path / "e"],
         "null-text inversion"),
        (["mask-edit", "--source", SRC, "--target", TGT, "--out", tmp_path / "m", "--guidance", 1],
         "guidance scale other than 1"),
    ):
        code, _, err = run(capsys, *argv, "--negative-prompt", NEG, "--model", tiny_model_dir)
        line = one_line_error(code, err)
        assert says in line, line
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "e").exists() and not (tmp_path / "m").exists()


def test_the_web_app_takes_it_from_a_textbox_and_a_blank_one_is_none(tiny_model, tmp_path):
    pytest.importorskip("gradio")
    from promptedit.app import App

    app = App(tiny_model, str(tmp_path / "app"))
    upload = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(upload)
    records = [app.p2p(SRC, TGT, "auto", 0, 0.8, 0.4, "", "", 0, 2, 7.5, "a photo")[2],
               app.one_prompt("a photo of a [cat:dog:0.5]", "auto", 0, 2, 7.5, " ")[2],
               app.masks(str(upload), None, SRC, TGT, "instant", 0, 2, 7.5, 0.5, None, None, None, "a photo")[2]]
    assert [json.loads(open(r).read()).get("negative_prompt") for r in records] == ["a photo", None, "a photo"]
    app.close()
