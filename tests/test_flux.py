"""FLUX.1 (and SD3.5, the other MM-DiT family) on tiny random-weight components built in code: every command runs
on a FLUX or SD3 folder, bad input gives one line, and what such a folder cannot do is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import run

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    from promptedit.testing import TINY_MODELS, save_model

    return save_model(TINY_MODELS["flux"](0), tmp_path_factory.mktemp("models") / "tiny-flux")


@pytest.fixture(scope="module", params=["flux", "sd3"])
def mmdit_dir(request, flux_dir, tmp_path_factory):
    """A tiny MM-DiT folder: FLUX.1's, and SD3.5's (the same commands, the same refusals)."""
    from promptedit.testing import TINY_MODELS, save_model

    if request.param == "flux":
        return flux_dir
    return save_model(TINY_MODELS[request.param](0), tmp_path_factory.mktemp("models") / f"tiny-{request.param}")


@pytest.fixture(scope="module")
def image():
    img = np.full((32, 32, 3), 220, np.uint8)
    img[8:24, 8:24] = (200, 30, 30)
    return img


def test_every_command_runs_on_a_tiny_flux_folder(mmdit_dir, image, tmp_path, capsys):
    Image.fromarray(image).save(tmp_path / "in.png")
    m = ["--model", mmdit_dir, "--quiet"]
    ok = [
        ["generate", SRC, "--out", tmp_path / "g.png", "--steps", 2],
        ["edit", "--source", SRC, "--target", TGT, "--out", tmp_path / "e", "--steps", 2, "--save-attention",
         "--blend", "cat", "--blend", "dog", "--self-replace", 0.5],
        ["edit", "--prompt", "a photo of a [cat:dog:0.5]", "--out", tmp_path / "p", "--steps", 2],
        ["invert", tmp_path / "in.png", "--prompt", SRC, "--out", tmp_path / "i.safetensors", "--steps", 2,
         "--method", "negative-prompt"],
        ["edit", "--inversion", tmp_path / "i.safetensors", "--target", TGT, "--out", tmp_path / "ie"],
        ["edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "de",
         "--method", "direct", "--steps", 2],
        ["mask", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "m.png", "--steps", 4],
        ["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "me",
         "--steps", 4],
        ["attention", SRC, "--out", tmp_path / "a.png", "--steps", 2],
    ]
    for argv in ok:
        code, out, err = run(capsys, *argv, *m)
        assert code == 0, (argv, err)
    rec = json.loads((tmp_path / "e" / "result.json").read_text())
    family = rec["model_family"]
    assert mmdit_dir.name == f"tiny-{family}" and rec["mode"] == "replace"
    bad = [
        (["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "x",
          "--method", "diffedit"], f"no {family.upper()} version"),
        (["generate", SRC, "--out", tmp_path / "x.png", "--height", 30], "multiple of"),
        (["edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "x",
          "--inner-steps", 3], "--inner-steps is not used with --method euler, this model's default"),
        (["edit", "--source", SRC, "--target", "a photo of a horse and a cow", "--mode", "replace", "--out",
          tmp_path / "x"], "not a word swap"),
        (["attention", SRC, "--out", tmp_path / "x.png", "--resolution", 4], "no cross-attention maps at 1/4"),
    ]
    if family == "sd3":  # KV-Edit runs subsets of FLUX.1's image tokens; SD3's transformer patches the latent itself
        bad.append((["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out",
                     tmp_path / "x", "--method", "kv-edit"], "SD3 model's SD3Backbone cannot"))
    for argv, message in bad:
        code, _, err = run(capsys, *argv, *m)
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    assert not (tmp_path / "x").exists()


def test_a_flux_folder_without_promptedit_json_takes_the_familys_defaults(mmdit_dir, tmp_path):
    import shutil

    from promptedit.models import load_model

    folder = shutil.copytree(mmdit_dir, tmp_path / "bare")
    (folder / "promptedit.json").unlink()
    d = load_model(folder).defaults
    # the pipeline's: undistilled FLUX.1, no guidance; SD3, classifier-free 7.0
    guidance = {"tiny-flux": 1.0, "tiny-sd3": 7.0}[mmdit_dir.name]
    assert (d.sampling.num_inference_steps, d.sampling.guidance_scale) == (28, guidance)
    assert d.p2p.self_replace_min_downsample == 2 and d.masks.downsample == 2  # the packed tokens' grid
    assert load_model(mmdit_dir).defaults.sampling.num_inference_steps == 4  # its own promptedit.json wins


@pytest.fixture(scope="module")
def flux_model():
    from promptedit.testing import TINY_MODELS

    return TINY_MODELS["flux"](0)


def _source_latent(model, image):
    from promptedit.runner import encode_images

    return encode_images(model, image[None].astype(np.float32) / 255.0)  # (1, C, h, w)


def test_kv_edit_keeps_the_background_latent_exactly_and_edits_the_foreground(flux_model, image):
    from promptedit.methods.kvedit import kv_edit

    mask = np.zeros((32, 32), bool)
    mask[8:20, 8:18] = True  # covers some latent cells of a token only: those cells follow the source
    res = kv_edit(flux_model, image, mask, SRC, TGT, num_inference_steps=4, re_init=True, attn_mask=True,
                  progress=False)
    z0, lm = _source_latent(flux_model, image), torch.from_numpy(res.latent_mask)
    assert torch.equal(res.final_latents[..., ~lm], z0[..., ~lm])  # the background latent is the source's
    assert (res.final_latents[..., lm] - z0[..., lm]).abs().max() > 0.1  # the foreground changed
    assert (res.edited[~mask] == image[~mask]).all() and (res.edited[mask] != image[mask]).any()
    assert res.settings["skip_step"] == 1 and res.settings["inversion_guidance"] == 1.0  # 4 of 28 at 4 steps
    empty = kv_edit(flux_model, image, np.zeros((32, 32), bool), SRC, TGT, num_inference_steps=4, progress=False)
    assert np.array_equal(empty.edited, image) and torch.equal(empty.final_latents, z0)  # nothing to edit


def test_kv_edit_of_the_whole_image_under_its_own_text_is_the_inversions_reconstruction(flux_model, image):
    """Every token foreground (no background to cache), target = source: Euler inversion under the source, then
    the plain loop from there (the runner's), exactly."""
    from promptedit.methods.kvedit import kv_edit
    from promptedit.runner import denoise
    from promptedit.samplers.flow import euler_step

    res = kv_edit(flux_model, image, np.ones((32, 32), bool), SRC, SRC, num_inference_steps=4, skip_step=1,
                  guidance_scale=2.0, progress=False)
    z0 = _source_latent(flux_model, image)
    sampler = flux_model.make_sampler(z0.shape[-2:])
    sampler.set_steps(4)
    cond = flux_model.encode([SRC], size=(32, 32))
    x = z0
    for i in (3, 2, 1):  # σ_{i+1} → σ_i, the velocity at σ_{i+1}
        x = euler_step(flux_model.predict(x, sampler.sigmas[i + 1] * 1000, cond), x, sampler.sigmas[i + 1],
                       sampler.sigmas[i])
    assert torch.equal(res.latents, x)
    rec = denoise(flux_model, cond, x, num_inference_steps=4, guidance_scale=2.0, start_step=1, progress=False)
    torch.testing.assert_close(res.final_latents, rec, rtol=0, atol=1e-6)


def test_kv_edit_takes_the_instant_mask_made_from_the_joint_layers_maps(flux_model, image):
    from promptedit.methods.maskedit import make_mask
    from promptedit.requests import KVEditOptions, MaskEditRequest, SamplingOptions

    sampling = SamplingOptions(steps=4)
    res = MaskEditRequest(SRC, TGT, image=image, method="kv-edit", sampling=sampling,
                          kv=KVEditOptions(skip_step=2)).run(flux_model, progress=False)
    alone = make_mask(flux_model, image, SRC, TGT, num_inference_steps=4, progress=False)
    assert np.array_equal(res.mask, alone.mask) and res.settings["mask"]["method"] == "instant"
    assert res.method == "kv-edit" and res.words == alone.words and {"mask", "inversion", "edit"} <= set(res.timings)
    assert (res.edited[~res.mask] == image[~res.mask]).all()


def test_mask_edit_runs_kv_edit_on_a_flux_folder_and_a_unet_folder_refuses_it(flux_dir, tiny_model_dir, image,
                                                                              tmp_path, capsys):
    from helpers import one_line_error

    Image.fromarray(image).save(tmp_path / "in.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    edit = ["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--method", "kv-edit",
            "--steps", 4, "--quiet", "--threads", 1]
    code, out, err = run(capsys, *edit, "--mask", tmp_path / "m.png", "--out", tmp_path / "user", "--skip-step", 2,
                         "--re-init", "--attn-mask", "--inversion-guidance", 1.5, "--model", flux_dir)
    assert code == 0, err
    rec = json.loads((tmp_path / "user" / "result.json").read_text())
    assert rec["method"] == "kv-edit" and rec["settings"]["mask"] == "user" and rec["settings"]["skip_step"] == 2
    assert rec["settings"]["re_init"] and rec["settings"]["attn_mask"] and rec["inputs"]["mask"]
    code, out, err = run(capsys, *edit, "--out", tmp_path / "instant", "--threshold", 0.3, "--model", flux_dir)
    assert code == 0, err
    rec = json.loads((tmp_path / "instant" / "result.json").read_text())
    assert rec["settings"]["mask"]["method"] == "instant" and rec["settings"]["mask"]["threshold"] == 0.3
    bad = [
        ([*edit, "--mask", tmp_path / "m.png", "--model", tiny_model_dir], "KV-Edit runs the foreground"),
        ([*edit, "--mask", tmp_path / "m.png", "--strength", 0.3, "--model", flux_dir], "--strength is not used"),
        ([*edit, "--mask", tmp_path / "m.png", "--inpaint-model", flux_dir, "--model", flux_dir],
         "--inpaint-model is not used"),
        ([*edit[:7], "--skip-step", 1, "--model", flux_dir], "--skip-step is not used with --method instant"),
        ([*edit, "--skip-step", 4, "--model", flux_dir], "skip_step must be"),
    ]
    for argv, message in bad:
        line = one_line_error(*run(capsys, *argv, "--out", tmp_path / "x")[::2])
        assert message in line, (argv, line)
    assert not (tmp_path / "x").exists()


def test_the_web_apps_mask_tab_runs_kv_edit_on_flux(flux_model, image, tmp_path):
    from promptedit.app import App

    Image.fromarray(image).save(tmp_path / "in.png")
    app = App(flux_model, str(tmp_path / "app"))
    gallery, info, record = app.masks(str(tmp_path / "in.png"), None, SRC, TGT, "kv-edit (instant)", 0, 4, 7.5, 0.6)
    rec = json.loads(open(record).read())
    assert len(gallery) == 4 and info.startswith("kv-edit") and rec["settings"]["mask"]["strength"] == 0.6


def test_edit_injects_values_on_a_flux_folder_and_records_it_and_bad_value_options_are_one_line(
        flux_dir, tiny_model_dir, tmp_path, capsys):
    from helpers import one_line_error

    edit = ["edit", "--source", SRC, "--target", TGT, "--steps", 2, "--quiet", "--threads", 1]
    code, _, err = run(capsys, *edit, "--inject-values", 0.5, "--value-blocks", "0-1", "--inject-keys",
                       "--value-tokens", "image", "--cross-replace", 0, "--out", tmp_path / "v", "--model", flux_dir)
    assert code == 0, err
    spec = json.loads((tmp_path / "v" / "result.json").read_text())["spec"]
    assert (spec["inject_values"], spec["value_blocks"], spec["inject_keys"], spec["value_tokens"]) == (
        0.5, [0, 1], True, "image")
    bad = [
        (["--inject-values", 0.5, "--value-blocks", "1,7-9"], flux_dir, "value blocks 7-9 not in this model"),
        (["--inject-values", 0.2], flux_dir, "covers no step of 2"),
        (["--value-blocks", "1"], flux_dir, "value-blocks needs inject-values"),
        (["--inject-values", 0.5, "--value-blocks", "3-1"], flux_dir, "not a range of depths"),
        (["--inject-values", 0.5, "--value-blocks", "late"], flux_dir, "must be block depths and ranges"),
        (["--inject-values", 0.5], tiny_model_dir, "on a UNet the source's self-attention is injected with "
                                                   "--self-replace"),
    ]
    for argv, model, message in bad:
        line = one_line_error(*run(capsys, *edit, *argv, "--out", tmp_path / "x", "--model", model)[::2])
        assert message in line, (argv, line)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["flowedit", "uniedit", "kv-edit", "euler", "rf-solver", "fireflow", "direct"])
def test_batch_over_the_shapes_pie_set_runs_the_flow_methods_on_a_flux_folder_and_evaluate_reads_them(
        method, flux_dir, tmp_path, capsys):
    """issue 32: `world pie` + `batch --method M` + `evaluate` on a FLUX folder, for the velocity edits, KV-Edit
    (in its instant mask) and the flow's inversions + Prompt-to-Prompt (blended locally on PIE's words)."""
    data, out = tmp_path / "pie", tmp_path / "run"
    code, _, err = run(capsys, "world", "pie", "--out", data, "--n", 2)
    assert code == 0, err
    blend = [] if method in ("flowedit", "uniedit", "kv-edit") else ["--pie-blend"]
    code, stdout, err = run(capsys, "batch", data, "--out", out, "--model", flux_dir, "--method", method, *blend,
                            "--steps", 2, "--quiet", "--threads", 1)
    assert code == 0 and "2 done, 0 skipped, 0 failed" in stdout, err
    results = [json.loads(p.read_text()) for p in out.glob("*/result.json")]
    assert len(results) == 2 and all(r["method"] == method and r["num_inference_steps"] == 2 for r in results)
    code, stdout, err = run(capsys, "evaluate", out, "--data", data)
    assert code == 0 and "2 of 2 items;" in stdout, err
    assert json.loads((out / "evaluation.json").read_text())["evaluated"] == 2
