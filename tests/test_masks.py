"""Instant attention masks (pure maths), mask-guided editing and DiffEdit on tiny random components."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from promptedit.errors import ParameterError
from promptedit.control.masks import InstantMask, instant_mask, minmax, select_words, smooth

from helpers import one_line_error, run

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"


def blob(h, w, y0, y1, x0, x1):
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_select_words_by_similarity_to_the_inverted_start_token_map():
    obj = blob(8, 8, 2, 6, 2, 6)
    bg = 1 - obj
    near = blob(8, 8, 2, 6, 3, 7)  # overlaps the object by 3/4: neither object nor background
    maps = torch.stack([obj + 0.01, obj * 0.9 + 0.02, bg, near * 0.5 + 0.1])
    sel = select_words(bg * 0.3 + 0.5, maps)  # the start token attends to the background (authors' code inverts it)
    assert sel.anchor == 0
    assert set(sel.objects) == {0, 1} and sel.background == (2,)
    assert 3 not in sel.objects and 3 not in sel.background
    assert sel.similarity[3] == pytest.approx(0.75, abs=1e-4)  # min-max normalised maps: blob overlap 12/16
    # restricted to candidates, the anchor is the best of them
    sel = select_words(bg, maps, anchor_candidates=[2, 3])
    assert sel.anchor == 3


def test_edited_words_are_the_inserted_and_replaced_ones():
    from promptedit.control.masks import edited_words

    src = "a red circle and a blue square on a white background".split()
    assert edited_words(src, "a green circle and a blue square on a white background".split()) == [1]
    assert edited_words(src, "a red circle and a big blue square on a white background".split()) == [5]
    assert edited_words(src, src) == []


def test_two_objects_the_edited_word_picks_the_object():
    """Two objects in the text: the start token sees both; the edited word's object is the mask."""
    a, b = blob(16, 16, 2, 7, 2, 7), blob(16, 16, 9, 14, 9, 14)
    bg = 1 - a - b
    # words: green circle | blue square | white background; object b is the more salient to the start token
    maps = torch.stack([a, a * 0.8 + 0.05, b, b * 0.9, bg, bg * 0.7])
    start = 1 - (0.4 * a + b)
    assert select_words(start, maps).anchor == 2
    sel = select_words(start, maps, anchor_candidates=[0])
    assert set(sel.objects) == {0, 1} and set(sel.background) >= {2, 3, 4, 5}
    _, mask = instant_mask(maps[None], sel, threshold=0.2)
    assert mask[0][a.bool()].float().mean() > 0.9 and not mask[0][b.bool()].any()


def test_instant_mask_keeps_the_object_and_removes_the_background():
    obj = blob(16, 16, 4, 12, 4, 12)
    maps = torch.stack([obj + 0.05 * torch.rand(16, 16), 1 - obj])[None]  # (1, W=2, h, w)
    sel = select_words(1 - obj, maps[0])
    soft, mask = instant_mask(maps, sel, threshold=0.2)
    assert mask.shape == (1, 16, 16)
    assert mask[0, 5:11, 5:11].all() and not mask[0, :2].any()
    assert float(soft.max()) == pytest.approx(1.0) and float(soft.min()) == pytest.approx(0.0)


def test_smooth_and_minmax():
    x = torch.zeros(1, 9, 9)
    x[0, 4, 4] = 1.0
    y = smooth(x, times=1)
    assert y.sum().item() == pytest.approx(1.0, abs=1e-5) and torch.allclose(y, y.flip(-1))
    assert minmax(torch.tensor([[[2.0, 4.0]]])).tolist() == [[[0.0, 1.0]]]


def test_instant_mask_reads_only_its_rows_and_blends_every_row():
    """The source text's rows make the mask (``rows``) while the edit text's rows denoise beside them."""
    from promptedit.backbones.base import AttentionSite

    a, b = blob(16, 16, 2, 7, 2, 7), blob(16, 16, 9, 14, 9, 14)
    # keys: start token, then one word; row 0 (edit text) sees the word at b, row 1 (source text) at a
    attn = torch.stack([torch.stack([1 - m, m], -1).reshape(256, 2) for m in (b, a)])[:, None]  # (2, 1, 256, 2)
    sources = torch.zeros(1, 2, 1, 16, 16)  # (steps, rows, C, h, w)
    ctrl = InstantMask([[1]], sources, downsample=1, rows=slice(1, 2))
    ctrl.begin(num_steps=1, latent_size=(16, 16), n_prompts=2)
    ctrl(attn, AttentionSite("down_blocks.0.attentions.0.transformer_blocks.0.attn2", "cross", 1, "down", 0))
    x = ctrl.step_callback(torch.ones(2, 1, 16, 16))
    assert ctrl.masks[0][a.bool()].all() and not ctrl.masks[0][b.bool()].any()
    assert torch.equal(x[0, 0] > 0, ctrl.masks[0]) and torch.equal(x[1, 0] > 0, ctrl.masks[0])


def test_instant_mask_without_maps_at_its_resolution_fails_loudly():
    ctrl = InstantMask([[1]], None, downsample=8)
    ctrl.begin(num_steps=2, latent_size=(16, 16), n_prompts=1)
    with pytest.raises(ParameterError, match="1/8"):
        ctrl.step_callback(torch.zeros(1, 4, 16, 16))


def test_upsampled_mask_edges_fall_inside_cells_and_cells_touched_cover_it():
    from promptedit.control.masks import cells_touched, upsample_mask

    soft = torch.zeros(4, 4)
    soft[1:3, 1:3] = 1.0
    fine = upsample_mask(soft, (16, 16), 0.5)
    nearest = torch.nn.functional.interpolate(soft[None, None], size=(16, 16))[0, 0] > 0.5
    assert fine.shape == (16, 16) and fine[6:10, 6:10].all() and not fine[:3].any()
    assert fine.sum() != nearest.sum()  # edges moved off the 4-pixel cell borders
    cells = cells_touched(fine, (4, 4))
    assert torch.equal(cells, cells_touched(fine, (4, 4)) | (soft > 0.5))  # every cell of the soft mask is in
    assert bool(((cells_touched(fine, (4, 4)).repeat_interleave(4, 0).repeat_interleave(4, 1)) | ~fine).all())


def test_refined_mask_edges_follow_the_image():
    """The guided filter moves a coarse mask's edges onto the image's: a square off the map's cell grid, read
    from a 4×4-cell soft mask, comes back exactly; without the image the bilinear mask is off by its cells."""
    from promptedit.control.masks import refine_mask, upsample_mask
    from promptedit.world.reader import mask_iou

    truth = np.zeros((32, 32), bool)
    truth[5:19, 9:22] = True  # edges inside the 8-pixel cells
    guide = torch.full((3, 32, 32), 0.85)
    guide[:, torch.from_numpy(truth)] = torch.tensor([0.8, 0.1, 0.1])[:, None]
    soft = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(truth).float()[None, None], 4)[0, 0]
    soft = soft / soft.max()  # (4, 4): the object's share of each cell
    coarse = upsample_mask(soft, (32, 32), 0.2).numpy()
    refined = refine_mask(soft, guide, radius=2.0).numpy() > 0.2
    assert mask_iou(coarse, truth) < 0.8 and mask_iou(refined, truth) == 1.0
    flat = refine_mask(soft, torch.full((3, 32, 32), 0.5), radius=2.0)  # no edges to follow: a smoothed mask
    assert mask_iou(flat.numpy() > 0.2, truth) < 0.8
    big = refine_mask(soft, torch.nn.functional.interpolate(guide[None], size=(256, 256))[0], radius=2.0)
    assert big.shape == (256, 256)  # 64-pixel window: the fast (subsampled) filter
    assert mask_iou(big.numpy() > 0.2, np.kron(truth, np.ones((8, 8), bool))) > 0.95
    for bad in (dict(radius=0.0), dict(radius=2.0, eps=0.0)):
        with pytest.raises(ParameterError):
            refine_mask(soft, guide, **bad)


def test_strongest_regions_keep_the_regions_the_words_attend_to_most():
    from promptedit.control.masks import strongest_regions

    soft = torch.zeros(12, 12)
    soft[1:4, 1:4] = 1.0  # the strongest region
    soft[6:10, 6:10] = 0.5  # a weaker one
    soft[8, 1] = 0.95  # a near-tie, one pixel
    everything = strongest_regions(soft, 0.2, 0.0)
    assert torch.equal(everything, soft > 0.2)
    strong = strongest_regions(soft, 0.2, 0.9)
    assert strong[1:4, 1:4].all() and strong[8, 1] and not strong[6:10, 6:10].any()
    assert torch.equal(strongest_regions(soft, 0.2, 0.5), everything)  # 0.5 of the peak: the weaker one stays
    assert not strongest_regions(torch.zeros(4, 4), 0.2, 0.9).any()
    diagonal = torch.eye(4)
    assert torch.equal(strongest_regions(diagonal * torch.linspace(1, 0.5, 4), 0.2, 1.0), diagonal > 0)  # 8-connected
    with pytest.raises(ParameterError):
        strongest_regions(soft, 0.2, 1.5)


@pytest.fixture(scope="module")
def image():
    img = np.full((32, 32, 3), 220, np.uint8)
    img[8:24, 8:24] = (200, 30, 30)
    return img


def test_masked_pass_keeps_the_source_latents_outside_the_mask(tiny_model, image):
    from promptedit.methods.maskedit import MaskBlend
    from promptedit.runner import NoisedImage, resolve_sampling, run

    start = NoisedImage(image=image, strength=0.5, seed=0)
    sampling = resolve_sampling(tiny_model, start, 8, 7.5)
    prepared = start.prepare(tiny_model, prompts=[TGT], num_inference_steps=8, size=start.size)
    assert prepared.start_step == 4
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:12, 4:12] = True
    out = run(tiny_model, [TGT], start, sampling=sampling, controller=MaskBlend(mask, prepared.extras["sources"]),
              prepared=prepared, decode=False, progress=False)
    x0, z0 = out.latents, prepared.extras["z0"]
    assert torch.equal(x0[0][:, ~mask], z0[0][:, ~mask])
    assert not torch.equal(x0[0][:, mask], z0[0][:, mask])


def test_instdiffedit_and_diffedit_run(tiny_model, image):
    from promptedit.methods.maskedit import diffedit, instdiffedit, make_mask

    r = instdiffedit(tiny_model, image, SRC, TGT, num_inference_steps=6, num_seeds=2, progress=False)
    assert r.edited.shape == image.shape and r.mask.shape == (32, 32) and r.latent_mask.shape == (16, 16)
    # by default the source text's maps make the mask, anchored on the word the edit replaces
    assert r.words["anchor"] == "cat" and r.settings["maps_from"] == "source" and r.timings["inpaint"] > 0
    edited = make_mask(tiny_model, image, SRC, TGT, num_inference_steps=6, mask_steps=1, anchor="edited",
                       progress=False)
    assert edited.words["anchor"] == "dog" and edited.settings["maps_from"] == "target"
    inserted = make_mask(tiny_model, image, SRC, SRC + " in a hat", num_inference_steps=6, mask_steps=1,
                         progress=False)  # nothing replaced: the edit text's maps, anchored on the inserted words
    assert inserted.settings["maps_from"] == "target" and inserted.words["anchor"] in {"in", "a", "hat"}
    only = make_mask(tiny_model, image, SRC, TGT, num_inference_steps=6, mask_steps=1, progress=False)
    assert only.edited is None and only.timings["mask"] < r.timings["total"]
    d = diffedit(tiny_model, image, SRC, TGT, num_inference_steps=6, num_maps=2, progress=False)
    assert d.edited.shape == image.shape and d.latent_mask.dtype == bool
    with pytest.raises(ParameterError, match="strength"):
        instdiffedit(tiny_model, image, SRC, TGT, strength=0.0, progress=False)
    with pytest.raises(ParameterError, match="anchor"):
        instdiffedit(tiny_model, image, SRC, TGT, anchor="middle", progress=False)
    with pytest.raises(ValueError, match="source text"):
        instdiffedit(tiny_model, image, "...", TGT, progress=False)
    paper = make_mask(tiny_model, image, SRC, TGT, num_inference_steps=6, mask_steps=1, anchor="start-token",
                      progress=False)
    assert paper.words["anchor"] in {"a", "photo", "of", "dog"} and paper.settings["anchor"] == "start-token"


def test_a_mask_alone_skips_the_edit_texts_rows_and_is_the_same_mask(tiny_model, image):
    """make_mask denoises only the source text (half the batch) and gets the edit's own final mask."""
    from promptedit.methods.maskedit import instdiffedit, make_mask

    batches = []
    hook = tiny_model.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        whole = instdiffedit(tiny_model, image, SRC, TGT, num_inference_steps=6, inpaint=False, num_seeds=2,
                             guided_filter_radius=1.0, progress=False)
        whole_batches, batches[:] = list(batches), []
        alone = make_mask(tiny_model, image, SRC, TGT, num_inference_steps=6, mask_steps=3, num_seeds=2,
                          guided_filter_radius=1.0, progress=False)
    finally:
        hook.remove()
    assert set(whole_batches) == {8} and batches == [4] * 3  # (2 texts | 1 text) × 2 seeds × (cond, uncond)
    assert whole.settings["mask_steps"] is None and alone.settings["maps_from"] == "source"
    np.testing.assert_allclose(alone.soft_mask, whole.soft_mask, atol=1e-5)
    assert np.array_equal(alone.mask, whole.mask) and alone.words == whole.words


def test_mask_guided_edits_keep_the_pixels_outside_the_mask(tiny_model, image):
    """Outside the final mask the edit is the input, pixel for pixel (the autoencoder would change them)."""
    from promptedit.methods.maskedit import instdiffedit, masked_edit

    r = instdiffedit(tiny_model, image, SRC, TGT, num_inference_steps=6, progress=False)
    assert r.settings["threshold"] == tiny_model.defaults.masks.threshold and r.settings["keep_outside"]
    assert r.mask.any() and not r.mask.all()
    assert np.array_equal(r.edited[~r.mask], image[~r.mask])
    assert not np.array_equal(r.edited[r.mask], image[r.mask])
    loose = instdiffedit(tiny_model, image, SRC, TGT, num_inference_steps=6, progress=False, keep_outside=False)
    assert not np.array_equal(loose.edited[~loose.mask], image[~loose.mask])  # the random VAE's drift
    mask = np.zeros(image.shape[:2], bool)
    mask[5:19, 9:22] = True  # not on the latent grid
    u = masked_edit(tiny_model, image, mask, TGT, num_inference_steps=6, progress=False)
    assert np.array_equal(u.edited[~mask], image[~mask]) and not np.array_equal(u.edited[mask], image[mask])
    assert u.latent_mask[2:10, 4:11].all() and u.latent_mask.sum() == 8 * 7
    with pytest.raises(ParameterError, match="smooth_times"):
        instdiffedit(tiny_model, image, SRC, TGT, smooth_times=-1, progress=False)
    refined = instdiffedit(tiny_model, image, SRC, TGT, num_inference_steps=6, guided_filter_radius=1.5,
                           region_peak=1.0, progress=False)
    assert refined.settings["guided_filter_radius"] == 1.5 and refined.settings["guided_filter_eps"] == 1e-4
    assert refined.settings["region_peak"] == 1.0 and r.settings["region_peak"] == 0.0
    assert r.settings["guided_filter_radius"] == 0.0 and r.settings["guided_filter_eps"] is None  # the paper's
    assert np.array_equal(refined.edited[~refined.mask], image[~refined.mask])
    with pytest.raises(ParameterError, match="guided_filter_radius"):
        instdiffedit(tiny_model, image, SRC, TGT, guided_filter_radius=-1, progress=False)
    with pytest.raises(ParameterError, match="region_peak"):
        instdiffedit(tiny_model, image, SRC, TGT, region_peak=2, progress=False)


def test_model_defaults_set_the_instant_mask_settings():
    import dataclasses

    from promptedit.defaults import MaskDefaults
    from promptedit.errors import ModelLoadError

    d = MaskDefaults()
    assert (d.downsample, d.threshold, d.smooth_times, d.guided_filter_radius, d.region_peak) == (4, 0.2, 2, 0.0, 0.0)
    for bad in (dict(threshold=1.5), dict(threshold="0.2"), dict(smooth_times=1.5), dict(smooth_times=-1),
                dict(guided_filter_radius=-1), dict(guided_filter_radius="2"), dict(region_peak=1.5),
                dict(downsample=0)):
        with pytest.raises(ModelLoadError, match=f"masks.{next(iter(bad))}"):
            dataclasses.replace(d, **bad)
    assert dataclasses.replace(d, threshold=0, smooth_times=0).threshold == 0


def test_mask_and_mask_guided_edit_commands(tiny_model_dir, tmp_path, capsys, image):
    Image.fromarray(image).save(tmp_path / "in.png")
    for method in ("instant", "diffedit"):
        code, _, err = run(capsys, "mask", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out",
                           tmp_path / f"{method}.png", "--method", method, "--model", tiny_model_dir, "--steps", 6,
                           "--quiet", *(["--seeds", 2, "--threshold", 0.3, "--guided-filter", 1, "--region-peak", 0.8]
                                        if method == "instant" else []))
        assert code == 0, err
        rec = json.loads((tmp_path / f"{method}.json").read_text())
        assert rec["timings"]["mask"] > 0 and (tmp_path / f"{method}-overlay.png").is_file()
        if method == "instant":
            assert rec["settings"]["anchor"] == "source" and rec["words"]["anchor"] == "cat"
            assert rec["settings"]["num_seeds"] == 2 and rec["settings"]["threshold"] == 0.3
            assert rec["settings"]["guided_filter_radius"] == 1.0 and rec["settings"]["region_peak"] == 0.8
    for argv, message in ((["--threshold", 1.5], "threshold"), (["--seeds", 0], "--seeds"),
                          (["--guided-filter", -1], "--guided-filter"),
                          (["--region-peak", 1.5], "--region-peak"),
                          (["--background-threshold", 0.95], "background threshold")):
        code, _, err = run(capsys, "mask", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out",
                           tmp_path / "bad.png", "--model", tiny_model_dir, "--quiet", *argv)
        assert message in one_line_error(code, err)
        assert not (tmp_path / "bad.png").exists()
    for method in ("instant", "diffedit"):
        code, _, err = run(capsys, "mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT,
                           "--method", method, "--out", tmp_path / method, "--model", tiny_model_dir, "--steps", 6,
                           "--quiet")
        assert code == 0, err
        for name in ("input.png", "edited.png", "mask.png", "mask-overlay.png", "grid.png", "result.json"):
            assert (tmp_path / method / name).is_file(), (method, name)
        rec = json.loads((tmp_path / method / "result.json").read_text())
        assert rec["method"] == {"instant": "instdiffedit", "diffedit": "diffedit"}[method]
        assert rec["timings"]["total"] > 0 and ("inpaint" in rec["timings"]) == (method == "instant")
        assert "edit" not in rec["timings"] or rec["timings"]["edit"] != rec["timings"].get("mask")
    code, _, err = run(capsys, "mask-edit", "--source", SRC, "--target", TGT, "--mask", tmp_path / "instant.png",
                       "--out", tmp_path / "user", "--model", tiny_model_dir, "--steps", 6, "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "user" / "result.json").read_text())["method"] == "user-mask"
    Image.new("L", (32, 32), 0).save(tmp_path / "empty.png")
    for argv, message in (
        (["--mask", tmp_path / "empty.png"], "empty"),
        (["--mask", tmp_path / "instant.png", "--method", "diffedit"], "one of them"),
        (["--method", "instant", "--strength", "1.5"], "strength"),
        (["--mask", tmp_path / "nowhere.png"], "not found"),
    ):
        code, _, err = run(capsys, "mask-edit", "--source", SRC, "--target", TGT, "--out", tmp_path / "bad",
                           "--model", tiny_model_dir, "--quiet", *argv)
        assert message in one_line_error(code, err)
    assert not (tmp_path / "bad").exists()


def test_instdiffedit_edit_takes_the_mask_options_and_an_inpainting_checkpoint(tiny_model_dir, tmp_path, capsys,
                                                                                 image):
    """mask-edit --method instant takes mask's options, and --inpaint-model runs the final pass with a diffusers
    inpainting pipeline (a 9-channel UNet) instead of the same model."""
    from promptedit.testing import save_model, tiny_components

    Image.fromarray(image).save(tmp_path / "in.png")
    inpainter = save_model(tiny_components(3, inpainting=True), tmp_path / "inpaint-model")
    base = ["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--method", "instant",
            "--model", tiny_model_dir, "--steps", 6, "--quiet", "--anchor", "edited", "--threshold", 0.3,
            "--seeds", 2]
    edited = {}
    for name, extra in (("same", []), ("pipe", ["--inpaint-model", inpainter])):
        code, _, err = run(capsys, *base, "--out", tmp_path / name, *extra)
        assert code == 0, err
        rec = json.loads((tmp_path / name / "result.json").read_text())
        assert rec["settings"]["anchor"] == "edited" and rec["words"]["anchor"] == "dog"
        assert rec["settings"]["threshold"] == 0.3 and rec["settings"]["num_seeds"] == 2
        edited[name] = np.asarray(Image.open(tmp_path / name / "edited.png"))
        mask = np.asarray(Image.open(tmp_path / name / "mask.png")) > 127
        if name == "pipe":
            assert rec["settings"]["inpaint_with"] == str(inpainter)
        else:
            assert rec["settings"]["inpaint_with"] == "same model"
    assert mask.any()
    assert not np.array_equal(edited["same"][mask], edited["pipe"][mask])  # another model painted the mask
    for argv, message in ((["--inpaint-model", tiny_model_dir], "not an inpainting checkpoint"),
                          (["--inpaint-model", tmp_path / "nowhere"], "not found"),
                          (["--seeds", 0], "--seeds")):
        code, _, err = run(capsys, *base, "--out", tmp_path / "bad", *argv)
        assert message in one_line_error(code, err)
    code, _, err = run(capsys, "mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT,
                       "--method", "diffedit", "--model", tiny_model_dir, "--out", tmp_path / "bad", "--quiet",
                       "--inpaint-model", inpainter)
    assert "--inpaint-model is not used with --method diffedit" in one_line_error(code, err)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("command, argv, message", [
    ("mask-edit", ["--method", "diffedit", "--threshold", "0.3", "--seeds", "2"],
     "--threshold, --seeds are not used with --method diffedit (only with instant)"),
    ("mask-edit", ["--reweight", "dog=2"], "No such option"),
    ("edit", ["--strength", "0.7"], "No such option"),
    ("edit", ["--method", "direct", "--inner-steps", "3"], "--inner-steps is not used with --method direct"),
    ("edit", ["--seed", "3"], "--seed is not used with --image"),
])
def test_commands_refuse_options_their_workflow_would_ignore(tiny_model_dir, tmp_path, capsys, image, command, argv,
                                                             message):
    """An option the chosen workflow would silently ignore is refused in one line before any work."""
    Image.fromarray(image).save(tmp_path / "in.png")
    code, _, err = run(capsys, command, "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT,
                       "--model", tiny_model_dir, "--out", tmp_path / "bad", "--quiet", *argv)
    assert message in one_line_error(code, err)
    assert not (tmp_path / "bad").exists()


def test_mask_refuses_instant_options_with_diffedit(tiny_model_dir, tmp_path, capsys, image):
    Image.fromarray(image).save(tmp_path / "in.png")
    code, _, err = run(capsys, "mask", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--method", "diffedit",
                       "--anchor", "edited", "--model", tiny_model_dir, "--out", tmp_path / "m.png", "--quiet")
    assert "--anchor is not used with --method diffedit" in one_line_error(code, err)
    assert not (tmp_path / "m.png").exists()


def test_the_web_apps_mask_tab_passes_its_settings(tiny_model, tmp_path, image):
    """The Masks tab's strength, φ and refinement reach the edit and its record; left out, the model's."""
    from promptedit.app import App

    Image.fromarray(image).save(tmp_path / "in.png")
    app = App(tiny_model, str(tmp_path / "app"))
    gallery, info, record = app.masks(str(tmp_path / "in.png"), None, SRC, TGT, "instant", 0, 6, 7.5, 0.6, 0.3, 1.0,
                                      0.5)
    settings = json.loads(open(record).read())["settings"]
    assert (settings["strength"], settings["threshold"], settings["guided_filter_radius"], settings["region_peak"]) == (
        0.6, 0.3, 1.0, 0.5)
    assert len(gallery) == 4 and "instdiffedit" in info
    _, _, record = app.masks(str(tmp_path / "in.png"), None, SRC, TGT, "diffedit", 0, 6, 7.5, 0.7)
    assert json.loads(open(record).read())["settings"]["strength"] == 0.7
    _, _, record = app.masks(str(tmp_path / "in.png"), None, SRC, TGT, "instant", 0, 6, 7.5)
    settings = json.loads(open(record).read())["settings"]
    d = tiny_model.defaults.masks
    assert (settings["threshold"], settings["guided_filter_radius"], settings["region_peak"]) == (
        d.threshold, d.guided_filter_radius, d.region_peak)


def test_the_web_apps_one_prompt_tab_edits_from_edit_syntax(tiny_model, tmp_path):
    from promptedit.app import App
    from promptedit.errors import PromptError

    app = App(tiny_model, str(tmp_path / "app"))
    gallery, flags, record = app.one_prompt("a photo of a [cat:dog:0.5]", "auto", 0, 2, 7.5)
    assert len(gallery) == 2 and flags.startswith("a1111: promptedit edit --source") and "--target" in flags
    rec = json.loads(open(record).read())
    assert rec["prompts"] == ["a photo of a cat", "a photo of a dog"] and rec["one_prompt"]["syntax"] == "a1111"
    assert rec["spec"]["cross_replace_words"] == {"dog": 1.0}  # A1111 draws `cat` at steps 0 and 1 of 2
    with pytest.raises(PromptError, match="column"):
        app.one_prompt("a photo of a [cat:dog", "a1111", 0, 2, 7.5)
    with pytest.raises(ValueError, match="seed"):
        app.one_prompt("a photo of a [cat:dog:0.5]", "auto", "", 2, 7.5)
