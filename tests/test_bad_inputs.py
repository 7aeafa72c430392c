"""Bad input found by trying the project as a tester would: each case ends in one line and exit 2 (a
``ValueError`` subclass from the API), and none writes over an input or outside its output folder."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from promptedit.errors import ModelLoadError, NumericalError, ParameterError, PromptEditError, PromptError

from helpers import one_line_error, run

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"


# --- numbers -----------------------------------------------------------------------------------------


def test_steps_past_the_schedulers_timesteps_are_refused_before_running(tiny_model, tiny_model_dir, tmp_path,
                                                                        capsys):
    from promptedit.runner import check_sampling

    # SD's scheduler (leading spacing, steps_offset 1) has no timestep 1000: 1000 steps would index past its
    # 1000 noise levels (diffusers' own pipeline fails there too); 999 is the most it takes
    assert tiny_model.scheduler_config["steps_offset"] == 1
    check_sampling(999, 7.5, tiny_model)
    with pytest.raises(ParameterError, match="below 1000"):
        check_sampling(1000, 7.5, tiny_model)
    code, _, err = run(capsys, "generate", SRC, "--steps", 1000, "--out", tmp_path / "a.png", "--model",
                       tiny_model_dir, "--quiet", "--threads", 1)
    assert "below 1000" in one_line_error(code, err)
    assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("option", ["--guided-filter", "--object-threshold", "--background-threshold",
                                    "--region-peak", "--threshold"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nan_and_inf_are_refused_where_a_number_is_taken(option, value, tmp_path, capsys):
    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    code, _, err = run(capsys, "mask", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out",
                       tmp_path / "m.png", option, value)
    assert "finite" in one_line_error(code, err) or "range" in err


def test_a_run_that_overflows_is_one_line_not_an_internal_error(tiny_model):
    from promptedit.runner import decode_latents

    latents = torch.full((1, tiny_model.latent_channels, 4, 4), float("nan"))
    with pytest.raises(NumericalError, match="guidance scale is too large"):
        decode_latents(tiny_model, latents)
    assert issubclass(NumericalError, ValueError)


# --- model folders -----------------------------------------------------------------------------------


def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_broken_scheduler_or_component_config_is_refused_at_load(tiny_model_dir, tmp_path):
    from promptedit.models import load_model

    broken = _copy_model(tiny_model_dir, tmp_path / "sched")
    config = broken / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_train_timesteps": 0}))
    with pytest.raises(ModelLoadError, match="scheduler.s configuration"):
        load_model(broken, device="cpu")
    broken = _copy_model(tiny_model_dir, tmp_path / "unet")
    (broken / "unet" / "config.json").write_text('{"sample_size": 32,')
    with pytest.raises(ModelLoadError, match="unet's config.json is broken"):
        load_model(broken, device="cpu")


# --- inversions --------------------------------------------------------------------------------------


def test_a_pooled_null_that_does_not_fit_the_model_is_refused(tiny_model):
    from promptedit.methods.editing import EditSpec, edit
    from promptedit.methods.inversion import Inversion, InversionError, invert
    from promptedit.testing import tiny_sdxl_components

    image = np.full((32, 32, 3), 200, np.uint8)
    xl = tiny_sdxl_components(0)
    inv = invert(xl, image, SRC, method="null-text", num_inference_steps=2, num_inner_steps=1, progress=False)
    narrow = Inversion.from_bytes(inv.to_bytes())
    narrow.null_pooled = narrow.null_pooled[:, :5]  # as a damaged file would hold it
    with pytest.raises(InversionError, match="pooled null embeddings"):
        edit(xl, EditSpec(SRC, (TGT,)), start=narrow, progress=False)
    sd = invert(tiny_model, image, SRC, method="null-text", num_inference_steps=2, num_inner_steps=1,
                progress=False)
    sd.null_pooled = torch.zeros(2, 32)  # a pooled null on a model that takes none
    with pytest.raises(InversionError, match="pooled null embeddings"):
        edit(tiny_model, EditSpec(SRC, (TGT,)), start=sd, progress=False)


# --- words -------------------------------------------------------------------------------------------


def test_an_a1111_step_number_is_read_at_the_models_steps_without_steps_given(tiny_model_dir, tmp_path, capsys):
    # [cat:dog:2] needs the number of steps; without --steps the run's are the model's (the tiny model's 4), and
    # A1111 draws `cat` for steps 0…2 of them: the window is 3 of 4 steps (it had been: error, pass --steps)
    code, out, err = run(capsys, "edit", "--prompt", "a photo of a [cat:dog:2]", "--out", tmp_path / "e",
                         "--model", tiny_model_dir, "--quiet", "--threads", 1)
    assert code == 0, err
    rec = json.loads((tmp_path / "e" / "result.json").read_text())
    assert rec["num_inference_steps"] == 4 and rec["spec"]["cross_replace_words"] == {"dog": 0.75}
    code, _, err = run(capsys, "edit", "--prompt", "a photo of a [cat:dog:5]", "--out", tmp_path / "f",
                       "--model", tiny_model_dir, "--quiet", "--threads", 1)
    assert "past the last of the 4 steps" in one_line_error(code, err) and not (tmp_path / "f").exists()


def test_words_a_shapes_world_model_does_not_know_are_named_in_one_warning(tiny_model_dir, tmp_path, capsys):
    # the README's "a photo of a cat" on the default model, and French and Chinese words: noise, and exit 0
    code, _, err = run(capsys, "generate", "a photo of a cat", "--out", tmp_path / "c.png", "--steps", 1,
                       "--quiet", "--threads", 1)
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warned) == 1 and "'cat'" in warned[0] and "'photo'" not in warned[0], err
    assert json.loads((tmp_path / "c.json").read_text())["environment"]["threads"] == 1  # what reruns need
    code, _, err = run(capsys, "edit", "--source", "a red circle on a white background", "--target",
                       "un cercle bleu 猫 on a white background", "--out", tmp_path / "e", "--steps", 1, "--quiet",
                       "--threads", 1)
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warned) == 1 and "'un', 'cercle', 'bleu', '猫'" in warned[0], err
    # a CLIP-style tokenizer's model (open vocabulary, no unknown token of its own): no warning for any word
    code, _, err = run(capsys, "generate", "a photo of a cat", "--out", tmp_path / "t.png", "--model",
                       tiny_model_dir, "--steps", 1, "--quiet", "--threads", 1)
    assert code == 0 and "warning:" not in err, err


def test_a_word_past_the_token_limit_is_named_as_such_not_as_missing(tokenizer):
    from promptedit.control.edit_spec import EditSpec, build_controller

    long = " ".join(["a red circle"] * 30) + " and a green square"
    spec = EditSpec(long, (long.replace("green", "blue"),), reweight={"square": 2.0})
    with pytest.raises(PromptError, match="reweight word 'square' lies past the text encoder's"):
        build_controller(spec, tokenizer, 4)
    spec = EditSpec(SRC, (TGT,), reweight={"horse": 2.0})
    with pytest.raises(PromptError, match="reweight word 'horse' is not in the prompt"):
        build_controller(spec, tokenizer, 4)


def test_a_mask_of_an_edit_that_changes_nothing_is_refused(tiny_model):
    from promptedit.methods.maskedit import instdiffedit

    image = np.full((32, 32, 3), 200, np.uint8)
    with pytest.raises(ParameterError, match="no edit to mask"):
        instdiffedit(tiny_model, image, SRC, SRC, num_inference_steps=2, progress=False)
    # the paper's anchor reads the edit text alone, and so still runs
    r = instdiffedit(tiny_model, image, SRC, SRC, anchor="start-token", num_inference_steps=2, mask_steps=1,
                     progress=False)
    assert r.mask.shape == (32, 32)


# --- masks given as files ----------------------------------------------------------------------------


def test_a_mask_file_is_read_by_the_image_rule(tmp_path):
    from promptedit.errors import ImageInputError
    from promptedit.images.inputs import load_image, load_mask

    # 16-bit: near-black (1000 of 65535) is not white; a plain convert("L") clips it to 255
    m16 = np.full((32, 32), 1000, np.uint16)
    m16[:, :16] = 65535
    Image.fromarray(m16).save(tmp_path / "m16.png")
    mask = load_mask(tmp_path / "m16.png", (32, 32))
    assert mask[:, :16].all() and not mask[:, 16:].any()
    # a wide image is centre-cropped: the mask is cropped the same way, its left quarter falls outside
    wide = np.zeros((32, 64), np.uint8)
    wide[:, :16] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert not load_mask(tmp_path / "wide.png", (32, 32), "crop", like=(64, 32)).any()
    padded = load_mask(tmp_path / "wide.png", (32, 32), "pad", like=(64, 32))
    assert padded[8:24, :8].all() and not padded[:8].any() and not padded[:, 8:].any()  # padding is not edited
    Image.new("L", (64, 32)).save(tmp_path / "img.png")
    assert load_image(tmp_path / "img.png", (32, 32)).oriented_size == (64, 32)
    # a mask of another shape than the image's is refused, not stretched
    Image.new("L", (100, 10), 255).save(tmp_path / "thin.png")
    with pytest.raises(ImageInputError, match="the mask must have the image's shape"):
        load_mask(tmp_path / "thin.png", (32, 32), like=(32, 32))


def test_a_mask_that_is_not_black_and_white_is_read_with_a_warning_saying_how(tiny_model_dir, tmp_path, capsys):
    import io
    import warnings

    from promptedit.errors import PromptEditWarning
    from promptedit.images.inputs import load_mask

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # a colour photo given as a mask
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(photo.mean(-1).astype(np.uint8)).save(tmp_path / "grey.png")
    yy, xx = np.mgrid[:32, :32]  # a drawn mask: a disc with anti-aliased edges, saved as JPEG (tinted edges)
    disc = np.clip((10 - np.hypot(yy - 16, xx - 16)) * 128 + 128, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(disc).convert("RGB").save(buf, "JPEG", quality=90)
    (tmp_path / "disc.jpg").write_bytes(buf.getvalue())
    for name, kind, how in (("photo.png", "colour", "converted to greyscale and thresholded"),
                            ("grey.png", "greyscale", "thresholded")):
        with pytest.warns(PromptEditWarning) as said:
            mask = load_mask(tmp_path / name, (32, 32))
        assert len(said) == 1 and f"is a {kind} image, not black and white: {how} at half grey" in str(said[0].message)
        assert f"it covers {100 * mask.mean():.0f} % of the image" in str(said[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_mask(tmp_path / "disc.jpg", (32, 32)).sum() > 200  # black and white: no warning
    code, _, err = run(capsys, "mask-edit", "--source", SRC, "--target", TGT, "--mask", tmp_path / "photo.png",
                       "--out", tmp_path / "e", "--model", tiny_model_dir, "--steps", 2, "--quiet", "--threads", 1)
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warned) == 1 and "photo.png is a colour image" in warned[0], err


# --- outputs never land on inputs or outside their folder ---------------------------------------------


def test_batch_ids_cannot_name_the_output_folder_or_its_parent():
    from promptedit.batch import ManifestError, item_from_options

    for bad in (".", ".."):
        with pytest.raises(ManifestError, match="not '.' or '..'"):
            item_from_options(bad, {"source": SRC, "target": TGT})
    assert item_from_options("v1.2", {"source": SRC, "target": TGT}).id == "v1.2"


def test_pie_paths_that_leave_their_folder_are_refused(tmp_path):
    from promptedit.pie.data import MappingFileError, read_pie

    (tmp_path / "annotation_images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    for bad in ("../outside.png", "/etc/passwd", "a/../../outside.png"):
        entry = {"image_path": bad, "original_prompt": SRC, "editing_prompt": TGT, "editing_type_id": "1",
                 "mask": []}
        (tmp_path / "mapping_file.json").write_text(json.dumps({"000": entry}))
        with pytest.raises(MappingFileError, match="not a file inside its folder"):
            read_pie(tmp_path)


def test_evaluate_never_writes_its_report_over_what_it_reads(tiny_model_dir, tmp_path, capsys):
    data, out = tmp_path / "pie", tmp_path / "run"
    assert run(capsys, "world", "pie", "--out", data, "--n", 1, "--quiet")[0] == 0
    key, entry = next(iter(json.loads((data / "mapping_file.json").read_text()).items()))
    (out / key).mkdir(parents=True)
    edited = out / key / "edited.png"
    Image.open(data / "annotation_images" / entry["image_path"]).save(edited)
    before = {p: p.read_bytes() for p in (edited, data / "mapping_file.json")}
    for prefix in (out / key / "edited", data / "mapping_file", out / key / "result"):
        code, _, err = run(capsys, "evaluate", out, "--data", data, "--out", prefix, "--quiet")
        assert "would" in one_line_error(code, err)
    assert all(p.read_bytes() == b for p, b in before.items())
    code, _, err = run(capsys, "evaluate", out, "--data", data, "--quiet")
    assert code == 0, err
    report = json.loads((out / "evaluation.json").read_text())  # standard JSON: an exact PSNR is null, not Infinity
    assert report["evaluated"] == 1


def test_world_pie_refuses_a_set_too_large_to_draw(tmp_path, capsys):
    code, _, err = run(capsys, "world", "pie", "--out", tmp_path / "p", "--n", 10**9)
    one_line_error(code, err)
    assert not (tmp_path / "p").exists()


def test_json_records_hold_no_infinity():
    from promptedit.outputs.files import _finite

    assert _finite({"psnr": math.inf, "v": [np.float32("nan"), 1.5, (2, -math.inf)]}) == {
        "psnr": None, "v": [None, 1.5, [2, None]]}


def test_one_item_that_fails_inside_does_not_stop_a_batch(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from promptedit import batch

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"id": i, "source": SRC, "target": TGT, "steps": 2, "seed": s})
                                  for i, s in (("a", 1), ("b", 2), ("c", 3))) + "\n")
    real = batch.run_edit

    def flaky(model, plan, **kw):  # a defect of ours on item b only
        if plan.sampling.seed == 2:
            raise RuntimeError("boom")
        return real(model, plan, **kw)

    monkeypatch.setattr(batch, "run_edit", flaky)
    code, stdout, err = run(capsys, "batch", manifest, "--out", tmp_path / "o", "--model", tiny_model_dir,
                            "--quiet", "--threads", 1)
    assert code == 3, err  # some item failed
    assert "2 done, 0 skipped, 1 failed" in stdout
    failures = [json.loads(line) for line in (tmp_path / "o" / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == ["b"] and "internal error (RuntimeError: boom)" in failures[0]["error"]
    assert (tmp_path / "o" / "c" / "edited.png").is_file()


def test_every_error_here_is_a_value_error():
    for cls in (NumericalError, ModelLoadError, ParameterError, PromptError):
        assert issubclass(cls, PromptEditError) and issubclass(cls, ValueError)


# --- the Python API and the web app (a reviewer's pass) ----------------------------------------------


def test_deep_bracket_nesting_is_refused_before_the_parsers_run():
    from promptedit.control.edit_spec import EditSpec
    from promptedit.text.syntax import MAX_DEPTH, PromptSyntaxError

    # compel's grammar takes ~3.5x longer per level of parentheses: past 4 levels compel is not run
    deep = "(" * (MAX_DEPTH["compel"] + 1) + "red" + ")" * (MAX_DEPTH["compel"] + 1)
    with pytest.raises(PromptSyntaxError, match="nested more than 4 deep"):
        EditSpec.from_prompt(f"{deep}.swap(blue) circle", "compel")
    # auto: compel cannot read it, A1111 can (a re-weighting by 1.1^5)
    spec = EditSpec.from_prompt(f"a {deep} circle")
    assert spec.reweight == {"red": pytest.approx(1.1 ** 5)}
    with pytest.raises(PromptSyntaxError, match="nested more than 32 deep"):  # it was a RecursionError
        EditSpec.from_prompt("(" * 500 + "cat" + ")" * 500)
    with pytest.raises(PromptError, match=r"scales attention by 1\.331 in A1111"):  # not "by 1.1"
        EditSpec.from_prompt("a (((red))) circle")


def test_edit_spec_refuses_wrong_structures_and_overflowing_weights():
    from promptedit.control.edit_spec import MAX_REWEIGHT, EditSpec

    with pytest.raises(ParameterError, match="within"):
        EditSpec(SRC, (TGT,), reweight={"dog": 1e300})  # finite, but attention overflows float32
    EditSpec(SRC, (TGT,), reweight={"dog": -MAX_REWEIGHT})
    bad = [dict(targets=None), dict(targets=5), dict(targets=(TGT,), reweight="dog=2"),
           dict(targets=(TGT,), reweight={1: 2}), dict(targets=(TGT,), blend_words=(1,)),
           dict(targets=(TGT,), cross_replace_words="dog"), dict(targets=(TGT,), blend_swapped="no"),
           dict(targets=(TGT,), blend_threshold="x"), dict(targets=(TGT,), blend_start=[0.3]),
           dict(targets=(TGT,), blend_source=(1,)), dict(targets=(TGT,), self_replace_downsample=3),
           dict(targets=(TGT,), self_replace_downsample=True)]
    for kw in bad:
        with pytest.raises(PromptEditError):
            EditSpec(SRC, **kw)
    assert EditSpec(SRC, (TGT,), blend_words="cat").blend_words == ("cat",)  # a word, as targets take one
    # a source-only blend word must be in the source, a target-only one in a target
    from promptedit.control.edit_spec import build_controller
    from promptedit.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    for kw in (dict(blend_source="dog"), dict(blend_target="cat")):
        with pytest.raises(PromptEditError, match="blend-"):
            build_controller(EditSpec(SRC, (TGT,), **kw), tokenizer, 10)
    assert EditSpec(SRC, (TGT,), blend_target="dog", blend_subtract="cat").blends


def test_library_calls_refuse_bad_arguments_with_value_errors(tiny_model):
    from promptedit.methods.editing import EditSpec, edit, generate
    from promptedit.methods.inversion import invert, reconstruct
    from promptedit.methods.maskedit import instdiffedit, make_mask, masked_edit

    img = np.full((32, 32, 3), 200, np.uint8)
    inside = np.zeros((32, 32), bool)
    inside[8:24, 8:24] = True
    calls = [
        # the mask functions check the image's size as generation does (it was unchecked: any size ran)
        lambda: instdiffedit(tiny_model, np.zeros((160, 160, 3), np.uint8), SRC, TGT, num_inference_steps=2),
        lambda: masked_edit(tiny_model, np.zeros((160, 160, 3), np.uint8), np.ones((160, 160), bool), TGT),
        # masks: not an array, 1-D, NaN, empty
        lambda: masked_edit(tiny_model, img, None, TGT),
        lambda: masked_edit(tiny_model, img, np.ones(32, bool), TGT),
        lambda: masked_edit(tiny_model, img, np.full((32, 32), np.nan), TGT),
        lambda: masked_edit(tiny_model, img, np.zeros((32, 32), bool), TGT),
        lambda: masked_edit(tiny_model, img, inside, ""),
        # numbers that are not numbers, or out of range
        lambda: instdiffedit(tiny_model, img, SRC, TGT, num_seeds="2"),
        lambda: instdiffedit(tiny_model, img, SRC, TGT, strength=None),
        lambda: instdiffedit(tiny_model, img, SRC, TGT, object_threshold=float("nan")),
        lambda: instdiffedit(tiny_model, img, SRC, TGT, guided_filter_radius=float("nan")),
        lambda: instdiffedit(tiny_model, img, SRC, TGT, guided_filter_radius=8),  # wider than the image
        lambda: instdiffedit(tiny_model, img, SRC, TGT, guided_filter_eps=None),
        lambda: make_mask(tiny_model, img, SRC, TGT, smooth_times="x"),
        lambda: invert(tiny_model, img, SRC, method="null-text", lr=float("nan")),
        lambda: invert(tiny_model, img, SRC, method="null-text", epsilon="x"),
        lambda: invert(tiny_model, img, "  "),  # an empty caption (every later edit would fail)
        lambda: invert(tiny_model, img, SRC, image_rule=None),  # the file could not be read back
        # wrong objects
        lambda: edit(tiny_model, "a cat"),
        lambda: edit(tiny_model, EditSpec(SRC, (TGT,)), start="x"),
        lambda: reconstruct(tiny_model, None),
        lambda: generate(tiny_model, []),
        lambda: generate(tiny_model, None),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(PromptEditError):
            call()
    # an (H, W, 1) mask is taken as (H, W)
    r = masked_edit(tiny_model, img, inside[..., None], TGT, num_inference_steps=2, progress=False)
    assert r.mask.shape == (32, 32) and r.mask.sum() == inside.sum()


def test_load_model_arguments(tiny_model_dir):
    from promptedit.models import load_model

    for bad in ("", None, 5):
        with pytest.raises(ModelLoadError, match="folder path"):
            load_model(bad)
    with pytest.raises(ParameterError, match="floating torch dtype"):
        load_model(tiny_model_dir, device="cpu", dtype=torch.int8)
    assert load_model(tiny_model_dir, device="cpu", dtype="float32").dtype == torch.float32


def test_load_model_shows_no_notice_about_accelerate(tiny_model_dir):
    """Without accelerate, diffusers had said once per component (UNet, VAE) that it fell back to loading without
    it: two notices in Python, at the library's default verbosity (the CLI's quieter one hid them)."""
    import logging

    from promptedit.models import load_model

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    logger, keep = logging.getLogger("diffusers"), Keep()
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.WARNING)  # diffusers' own default
    try:
        load_model(tiny_model_dir, device="cpu")
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert not [r.getMessage() for r in keep.records if "accelerate" in r.getMessage()]


def test_the_web_app_turns_bad_widget_values_into_one_message(tiny_model, tmp_path):
    pytest.importorskip("gradio")
    import gradio as gr

    from promptedit.app import App, _guard, _painted_mask

    app = App(tiny_model, str(tmp_path / "app"))
    upload = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(upload)
    cases = [
        lambda: app.p2p(SRC, TGT, "auto", None, 0.8, 0.4, "", "", 0, 2, 7.5),  # a slider sent None
        lambda: app.p2p(SRC, TGT, "auto", 0, 0.8, 0.4, "", "", 0, float("nan"), 7.5),
        lambda: app.p2p(SRC, "", "auto", 0, 0.8, 0.4, "", "", 0, 2, 7.5),  # no edited prompt: no silent no-op
        lambda: app.masks(str(upload), None, SRC, TGT, "bogus", 0, 2, 7.5),
        lambda: app.masks(str(tmp_path / "gone.png"), None, SRC, TGT, "instant", 0, 2, 7.5),
        lambda: app.one_prompt("(" * 500 + "cat" + ")" * 500, "auto", 0, 2, 7.5),
    ]
    for case in cases:
        with pytest.raises(gr.Error):
            _guard(case)()
    # the painted canvas of a wide image is cropped as the image is: paint on its left quarter -> nothing inside
    layer = np.zeros((32, 64, 4), np.uint8)
    layer[:, :16, 3] = 255
    with pytest.raises(PromptEditError, match="empty"):
        _painted_mask({"layers": [layer]}, (32, 32), like=(64, 32))
    layer[:, 24:40, 3] = 255  # the middle: the crop keeps it, at the middle
    m = _painted_mask({"layers": [layer, None]}, (32, 32), like=(64, 32))
    assert m[:, 8:24].all() and not m[:, :8].any() and not m[:, 24:].any()
    with pytest.raises(PromptEditError, match="image's shape"):
        _painted_mask({"layers": [np.zeros((10, 100, 4), np.uint8) + 255]}, (32, 32), like=(32, 32))
    app.close()


def test_serve_refuses_a_busy_port_or_a_bad_host_before_loading_the_model(tmp_path, capsys):
    import socket

    pytest.importorskip("gradio")
    gone = tmp_path / "no-model"  # loading it would fail: the address is checked first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = run(capsys, "serve", "--port", busy.getsockname()[1], "--model", gone)
    assert "is in use" in one_line_error(code, err) and "loading model" not in err
    for host, says in (("host.invalid", "does not resolve"), ("192.0.2.1", "not an address of this machine")):
        code, _, err = run(capsys, "serve", "--host", host, "--model", gone)
        assert says in one_line_error(code, err) and "loading model" not in err


def test_the_web_app_shows_the_librarys_warnings_once_and_runs_one_request_at_a_time(tiny_model, tmp_path,
                                                                                       monkeypatch):
    pytest.importorskip("gradio")
    import warnings

    import gradio as gr

    from promptedit.app import MODEL_QUEUE, App, _guard, build

    shown = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: shown.append(message))
    app = App(tiny_model, str(tmp_path / "app"))
    long = "a photo of a cat " + "and a dog " * 40  # over-long, and the edit's two prompts: the same warning twice
    gallery, *_ = _guard(app.p2p)(long, long, "auto", 0, 0.8, 0.4, "", "cat", 0, 2, 7.5)
    assert len(shown) == 1 and "truncated" in shown[0] and len(gallery) == 4  # said once, and the run's result
    with warnings.catch_warnings(record=True) as caught:  # the libraries' own warnings stay on the console
        warnings.simplefilter("always")
        _guard(lambda: warnings.warn("a library's notice", UserWarning))()
    assert len(shown) == 1 and [str(w.message) for w in caught] == ["a library's notice"]
    blocks = build(app)
    assert {fn.concurrency_id for fn in blocks.fns.values()} == {MODEL_QUEUE} and len(blocks.fns) == 6
    app.close()


# --- how runs end and what they leave (a tester's pass over interrupts and re-runs) -------------------


def test_serve_keeps_gradios_files_in_its_own_folder_and_removes_it(tiny_model_dir, tmp_path, monkeypatch, capsys,
                                                                     free_port):
    """An upload and an edit's images (Gradio's files) and its record go to the app's temporary folder, not to
    Gradio's shared one, and the folder goes when the server stops."""
    import tempfile
    import threading
    import time
    from pathlib import Path

    gr = pytest.importorskip("gradio")
    httpx = pytest.importorskip("httpx")
    system_tmp = tmp_path / "tmp"  # the system's temporary folder, for this test: Gradio's default is in it
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    port, seen = free_port(), {}
    url = f"http://127.0.0.1:{port}/"

    def browser():  # what a browser does: upload an image, run an edit; then the server stops
        try:
            for _ in range(600):
                try:
                    httpx.get(url, timeout=5)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            image = (tmp_path / "in.png")
            Image.new("RGB", (32, 32), (200, 30, 30)).save(image)
            seen["upload"] = httpx.post(url + "gradio_api/upload", files={"files": image.open("rb")}).json()[0]
            event = httpx.post(url + "gradio_api/call/p2p", json={"data": [SRC, TGT, "auto", 0, 0.8, 0.4, "", "", 0,
                                                                           2, 7.5, ""]}).json()["event_id"]
            seen["edit"] = httpx.get(f"{url}gradio_api/call/p2p/{event}", timeout=120).text
            seen["files"] = [p for p in system_tmp.rglob("*") if p.is_file()]
        finally:
            gr.close_all()

    thread = threading.Thread(target=browser)
    thread.start()
    code, _, err = run(capsys, "serve", "--port", port, "--model", tiny_model_dir, "--threads", 1)
    thread.join()
    assert code == 0, err
    folder = Path(seen["upload"]).parent.parent  # Gradio keeps each file in a folder named by its hash
    assert folder.parent == system_tmp and folder.name.startswith("promptedit-serve-")
    assert "event: complete" in seen["edit"]
    assert {p.suffix for p in seen["files"] if folder in p.parents} >= {".png", ".webp", ".json"}
    assert not folder.exists() and not (system_tmp / "gradio").exists()
    assert [p for p in seen["files"] if folder not in p.parents] == []


def test_sigterm_unwinds_as_ctrl_c_does_and_leaves_no_file(tiny_model_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "g.png"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from promptedit.cli import main; sys.exit(main())",
                             "generate", SRC, "--steps", "999", "--out", str(out), "--model", str(tiny_model_dir),
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr.readline().startswith("loading model")
    time.sleep(3)  # loading, or denoising: either unwinds
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    import os
    import time

    from promptedit.outputs.files import STALE_PART_SECONDS, write_bytes

    old, fresh = tmp_path / ".a.png.0123456789ab.part", tmp_path / ".a.png.ba9876543210.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")  # a writer still at work
    past = time.time() - STALE_PART_SECONDS - 5
    os.utime(old, (past, past))
    write_bytes(tmp_path / "a.png", b"png")
    assert not old.exists() and fresh.exists() and (tmp_path / "a.png").read_bytes() == b"png"
    # an output set's temporary folder, left by a writer killed while writing it
    from promptedit.outputs.files import output_set

    staged = tmp_path / ".promptedit-set.0123abcd.part"
    staged.mkdir()
    (staged / "edited.png").write_bytes(b"x")
    os.utime(staged, (past, past))
    with output_set(tmp_path) as new:
        write_bytes(new / "b.png", b"png")
    assert not staged.exists() and (tmp_path / "b.png").read_bytes() == b"png"


def test_a_rerun_into_a_folder_replaces_the_earlier_run_record_first(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import os

    from promptedit.outputs import files as outputs

    out = tmp_path / "e"
    common = ["--source", SRC, "--out", out, "--model", tiny_model_dir, "--steps", 2, "--quiet", "--threads", 1]
    assert run(capsys, "edit", "--target", TGT, "--target", "a photo of a fox", *common)[0] == 0
    assert (out / "edited-2.png").is_file()
    (out / "notes.txt").write_text("mine")
    moves = []
    monkeypatch.setattr(outputs.os, "replace", lambda a, b: (moves.append((Path(a), Path(b))), os.rename(a, b)))
    assert run(capsys, "edit", "--target", TGT, *common)[0] == 0
    monkeypatch.undo()
    record = json.loads((out / "result.json").read_text())
    assert record["files"]["edited"] == ["edited.png"]
    assert not (out / "edited-1.png").exists() and not (out / "edited-2.png").exists()  # no stale outputs
    assert (out / "notes.txt").read_text() == "mine"  # nothing else is touched
    assert sorted(p.name for p in out.iterdir()) == ["edited.png", "grid.png", "notes.txt", "result.json",
                                                     "source.png"]  # no temporary folder left
    # the earlier record is moved aside first and the new one put in place last: a run stopped between them
    # never leaves a record beside images it did not make
    into_place = [(a, b) for a, b in moves if b.parent == out]
    aside = [(a, b) for a, b in moves if a.parent == out]
    assert aside[0][0].name == "result.json" and into_place[-1][1].name == "result.json"
    assert {a.name for a, _ in aside} == {"result.json", "source.png", "edited-1.png", "edited-2.png", "grid.png"}


# --- a full disk: an output set is complete or absent ---------------------------------------------------


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("files", [0, 2, 4])
def test_a_full_disk_leaves_an_edit_folder_complete_or_absent(files, tiny_model_dir, tmp_path, capsys,
                                                              disk_full_at):
    """`edit --image … --method direct` on a full disk: one line naming the folder, exit 2; a new folder is
    absent, and a folder holding an earlier run keeps that run whole (no mix, no temporary file)."""
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "in.png")
    common = ["--image", tmp_path / "in.png", "--source", SRC, "--method", "direct", "--model", tiny_model_dir,
              "--steps", 2, "--quiet", "--threads", 1]
    earlier = tmp_path / "earlier"
    assert run(capsys, "edit", "--target", TGT, "--out", earlier, *common)[0] == 0
    before = _tree(earlier)
    assert {"edited.png", "input.png", "reconstruction.png", "result.json"} <= set(before)
    for out in (tmp_path / "new", earlier):
        disk_full_at(files)
        code, _, err = run(capsys, "edit", "--target", "a photo of a fox", "--out", out, *common)
        line = one_line_error(code, err)
        assert f"cannot write to {out}: No space left on device" in line, line
    assert not (tmp_path / "new").exists()
    assert _tree(earlier) == before and sorted(p.name for p in earlier.iterdir()) == sorted(before)


@pytest.mark.parametrize("argv, names", [
    (["generate", SRC, "--out", "{d}/g.png"], ["g.png", "g.json"]),
    (["invert", "{d}/../in.png", "--prompt", SRC, "--method", "ddim", "--out", "{d}/i.safetensors"],
     ["i.safetensors", "i-reconstruction.png", "i.json"]),
])
def test_a_full_disk_leaves_no_file_of_a_file_command(argv, names, tiny_model_dir, tmp_path, capsys, monkeypatch,
                                                     disk_full_at):
    """generate's image and its .json, invert's three files: all or none, whichever file the disk refuses."""
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "in.png")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "other.txt").write_text("mine")
    for files in range(len(names)):
        disk_full_at(files)
        code, _, err = run(capsys, *[a.format(d=folder) for a in argv], "--model", tiny_model_dir, "--steps", 2,
                           "--quiet", "--threads", 1)
        assert f"cannot write to {folder}: No space left on device" in one_line_error(code, err)
        assert [p.name for p in folder.iterdir()] == ["other.txt"], files
    monkeypatch.undo()
    code, _, err = run(capsys, *[a.format(d=folder) for a in argv], "--model", tiny_model_dir, "--steps", 2,
                       "--quiet", "--threads", 1)
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == sorted(names + ["other.txt"])


def test_a_failure_while_moving_a_set_into_place_puts_the_earlier_run_back(tmp_path, monkeypatch):
    import errno
    import os

    from promptedit.outputs import files as outputs
    from promptedit.errors import OutputPathError

    out = tmp_path / "o"
    with outputs.output_set(out, {"a.png", "b.png", "result.json"}) as staged:
        for name in ("a.png", "b.png", "result.json"):
            outputs.write_bytes(staged / name, b"old " + name.encode())
    before = _tree(out)
    calls = []

    def replace(a, b):  # the second new file refused on its way in (a file system gone read-only)
        calls.append(b)
        if Path(b).parent == out and len([c for c in calls if Path(c).parent == out]) == 2:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        os.rename(a, b)

    monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(OutputPathError, match=f"cannot write to {out}: Read-only file system"):
        with outputs.output_set(out, {"a.png", "b.png", "result.json"}) as staged:
            for name in ("a.png", "b.png", "result.json"):
                outputs.write_bytes(staged / name, b"new " + name.encode())
    assert _tree(out) == before and sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "result.json"]
    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt):  # an interrupt while writing: the earlier run stays, nothing else
        with outputs.output_set(out, {"a.png"}) as staged:
            outputs.write_bytes(staged / "a.png", b"new")
            raise KeyboardInterrupt
    assert _tree(out) == before and len(list(out.iterdir())) == 3


def test_an_input_reached_through_a_link_is_not_overwritten(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out / "grid.png")
    before = (out / "grid.png").read_bytes()
    (tmp_path / "link.png").symlink_to(out / "grid.png")
    code, _, err = run(capsys, "edit", "--image", tmp_path / "link.png", "--source", SRC, "--target", TGT, "--out",
                       out, "--model", tiny_model_dir, "--steps", 2, "--method", "ddim", "--quiet")
    assert "would overwrite the input" in one_line_error(code, err)
    assert (out / "grid.png").read_bytes() == before


def test_a_batch_item_reruns_when_its_input_image_changes(tmp_path):
    from promptedit.batch import item_from_options

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "a.png")
    item = item_from_options("x", {"image": str(tmp_path / "a.png"), "source": SRC, "target": TGT,
                                   "method": "ddim"})
    key = item.key("model")
    assert item.key("model") == key
    Image.new("RGB", (32, 32), (30, 30, 200)).save(tmp_path / "a.png")  # same path, another picture
    assert item.key("model") != key


def test_a_resumed_training_run_keeps_its_settings(tmp_path, capsys):
    import dataclasses

    from promptedit.testing import TINY_TRAIN
    from promptedit.train.shapes import TrainConfig

    folder = tmp_path / "run"
    folder.mkdir()
    config = dataclasses.asdict(TrainConfig(**TINY_TRAIN))
    text = json.dumps(config)
    (folder / "config.json").write_text(text)
    (folder / "checkpoint.pt").write_bytes(b"")  # refused before the checkpoint is read
    code, _, err = run(capsys, "train", "--out", folder, "--lr", 0.001, "--batch-size", 8, "--quiet")
    line = one_line_error(code, err)
    assert "batch_size" in line and "lr" in line and "--fresh" in line
    assert (folder / "config.json").read_text() == text  # not rewritten


def test_training_settings_are_checked_on_construction(tmp_path, capsys):
    from promptedit.testing import TINY_TRAIN
    from promptedit.train.shapes import TrainConfig

    for bad in ({"lr": -1.0}, {"lr": "x"}, {"steps": 2.5}, {"max_minutes": 0.0}):
        with pytest.raises(ParameterError):  # lr -1 had reached AdamW, an internal error
            TrainConfig(**{**TINY_TRAIN, **bad})
    with pytest.raises(ValueError, match="arch must be one of sd, sdxl, flux, got 'sd3'"):  # a family it cannot build
        TrainConfig(**{**TINY_TRAIN, "arch": "sd3"})
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text('{"lr": "x"}')  # a damaged run folder
    (folder / "checkpoint.pt").write_bytes(b"")
    code, _, err = run(capsys, "train", "--out", folder, "--steps", 5, "--quiet")
    assert "config.json is damaged" in one_line_error(code, err)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 3-step training run of the tiny recipe (checkpoint.pt, config.json, tokenizer/); copy it to
    change it."""
    from promptedit.testing import TINY_TRAIN
    from promptedit.train.shapes import TrainConfig, train

    folder = tmp_path_factory.mktemp("train") / "run"
    train(TrainConfig(**TINY_TRAIN), folder, progress=False, log=lambda m: None)
    return folder


def test_a_truncated_checkpoint_or_fewer_steps_than_done_are_one_line(tiny_run, tmp_path, capsys):
    import shutil

    folder = shutil.copytree(tiny_run, tmp_path / "run")
    ckpt, config = folder / "checkpoint.pt", folder / "config.json"
    before = {p: p.read_bytes() for p in (ckpt, config)}
    code, _, err = run(capsys, "train", "--out", folder, "--steps", 2, "--quiet", "--threads", 1)
    line = one_line_error(code, err)  # it had trained nothing and recorded steps 2 for a run of 3
    assert "at step 3, past the 2 steps" in line and "--fresh" in line
    assert {p: p.read_bytes() for p in (ckpt, config)} == before and not (folder / "preview.png").exists()
    for damaged in (before[ckpt][: len(before[ckpt]) // 2], b"", b"not a checkpoint" * 10):
        ckpt.write_bytes(damaged)
        code, _, err = run(capsys, "train", "--out", folder, "--steps", 5, "--quiet", "--threads", 1)
        assert f"{ckpt} cannot be read" in one_line_error(code, err)
        assert ckpt.read_bytes() == damaged and config.read_bytes() == before[config]
    state = torch.load(io.BytesIO(before[ckpt]), weights_only=False)
    torch.save({**state, "unet": {}}, ckpt)  # readable, but not the weights of the run's config.json
    code, _, err = run(capsys, "train", "--out", folder, "--steps", 5, "--quiet", "--threads", 1)
    assert f"{ckpt} does not fit its run's config.json" in one_line_error(code, err)


@pytest.mark.parametrize("signals", [("SIGINT",), ("SIGTERM",), ("SIGINT", "SIGINT")])
def test_ctrl_c_in_training_saves_a_checkpoint_after_the_step_under_way(signals, tiny_run, tmp_path, monkeypatch,
                                                                        capsys):
    """The signal comes while step 5's batch is drawn: step 5 is finished and saved (none would be by the
    interval), then the run ends, 130 or 143, in one line; a second signal ends it at once, the last checkpoint
    kept."""
    import shutil
    import signal

    from promptedit.train import shapes

    folder = shutil.copytree(tiny_run, tmp_path / "run")
    render = shapes.rendered_batch

    def rendered_batch(config, step):
        if step == 5:
            for name in signals:
                signal.raise_signal(getattr(signal, name))
        return render(config, step)

    monkeypatch.setattr(shapes, "rendered_batch", rendered_batch)
    code, _, err = run(capsys, "train", "--out", folder, "--steps", 100000, "--checkpoint-every", 100000, "--quiet",
                       "--threads", 1)
    saved = torch.load(folder / "checkpoint.pt", weights_only=False)["step"]
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("resumed from")]
    assert "Traceback" not in err and len(lines) == 1, err
    if len(signals) == 2:
        assert code == 130 and lines == ["aborted"] and saved == 3  # as Ctrl-C ends any command
    else:
        how, want = ("interrupted", 130) if signals == ("SIGINT",) else ("terminated", 143)
        assert code == want and saved == 6
        assert lines == [f"{how} at step 6: saved {folder / 'checkpoint.pt'} (the same command resumes)"]
    assert not (folder / "preview.png").exists()


def test_a_record_of_another_output_beside_the_out_file_is_never_replaced(tiny_model_dir, tmp_path, capsys):
    """`world render … --out photo.png` writes photo.json (the scene's ground truth); `invert photo.png --out
    photo.safetensors` would write its record to the same photo.json: refused in one line, the ground truth kept.
    An earlier record of the same output is replaced as before."""
    photo = tmp_path / "photo.png"
    code, _, _ = run(capsys, "world", "render", "a red circle on a white background", "--out", photo)
    assert code == 0
    truth = (tmp_path / "photo.json").read_bytes()
    args = ("invert", photo, "--prompt", "a red circle on a white background", "--method", "ddim", "--steps", 2,
            "--model", tiny_model_dir, "--quiet", "--threads", 1)
    code, _, err = run(capsys, *args, "--out", tmp_path / "photo.safetensors")
    assert "photo.json is not a record of photo.safetensors" in one_line_error(code, err)
    assert (tmp_path / "photo.json").read_bytes() == truth and not (tmp_path / "photo.safetensors").exists()
    for _ in range(2):  # another name, twice: the second run replaces the first's record
        code, _, err = run(capsys, *args, "--out", tmp_path / "inv.safetensors")
        assert code == 0, err
    assert json.loads((tmp_path / "inv.json").read_text())["files"]["inversion"] == "inv.safetensors"
