"""The contract every model family of the registry (:data:`promptedit.families.FAMILIES`) keeps, run on its tiny
random-weight model (:data:`promptedit.testing.TINY_MODELS`, the session fixture ``family_model``): a new family
(FLUX, SD3) gets every test here by adding one registry entry and one tiny builder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from promptedit.methods.editing import EditSpec, edit, generate
from promptedit.families import FAMILIES, family_of_index

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"
STEPS = 3
#: DDIM inversion's reconstruction of a 32 px image at RECON_STEPS steps without guidance, in dB, on the shipped
#: models: measured 34.8 (embedded) and 35.0 (embedded-xl); at 25 steps 32.3 and 32.6, at 5 and 10 steps 19-23
RECON_STEPS, RECON_PSNR = 40, 31.0


@pytest.fixture(scope="module")
def image():
    img = np.full((32, 32, 3), 220, np.uint8)
    img[8:24, 8:24] = (200, 30, 30)
    return img


@pytest.fixture(scope="module")
def saved(family_model, tmp_path_factory):
    """The family's tiny model saved as a diffusers folder, and loaded back."""
    from promptedit.models import load_model
    from promptedit.testing import save_model

    folder = save_model(family_model, tmp_path_factory.mktemp("models") / family_model.family)
    return folder, load_model(folder)


def _max_diff(a, b) -> int:
    return int(np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max())


def test_every_family_has_a_tiny_builder():
    from promptedit.testing import TINY_MODELS

    assert sorted(TINY_MODELS) == sorted(FAMILIES)


def test_the_tiny_model_is_of_its_family(family_model):
    entry = family_model.family_entry
    assert FAMILIES[family_model.family] is entry and entry.name == family_model.family


def test_generation_reproduces_the_familys_diffusers_pipeline(family_model):
    """The runner's loop gives the images of diffusers' txt2img pipeline for the family, from the same x_T."""
    import diffusers

    from promptedit.runner import decode_latents

    pipe = getattr(diffusers, family_model.family_entry.pipelines.txt2img)(**family_model.pipeline_components())
    pipe.set_progress_bar_config(disable=True)
    ours = generate(family_model, [SRC, TGT], seed=3, num_inference_steps=STEPS, guidance_scale=7.5, progress=False)
    ref = pipe([SRC, TGT], num_inference_steps=STEPS, height=32, width=32,
               latents=family_model.backbone.pack(ours.latents.expand(2, -1, -1, -1)), output_type="np",
               **family_model.family_entry.pipeline_call(family_model, 7.5)).images  # (2, 32, 32, 3)
    assert np.abs(decode_latents(family_model, ours.final_latents) - ref).max() < 1e-5


def test_seeds_reproduce(family_model):
    a = generate(family_model, SRC, seed=5, num_inference_steps=2, progress=False).images
    b = generate(family_model, SRC, seed=5, num_inference_steps=2, progress=False).images
    c = generate(family_model, SRC, seed=6, num_inference_steps=2, progress=False).images
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_an_identity_edit_is_plain_generation_and_edits_change_only_the_target(family_model):
    plain = generate(family_model, SRC, seed=1, num_inference_steps=STEPS, progress=False).images[0]
    same = edit(family_model, EditSpec(SRC, (SRC,), self_replace=0.5), seed=1, num_inference_steps=STEPS,
                progress=False).images
    # batch of 2 vs 1: last-bit rounding may differ
    assert _max_diff(same[0], plain) <= 1 and _max_diff(same[1], plain) <= 1
    for spec in (EditSpec(SRC, (TGT,), blend_words=("cat", "dog"), inject_features=0.5),  # a word swap
                 EditSpec(SRC, ("a photo of a big cat",), reweight={"big": 2.0}),  # refine
                 EditSpec(SRC, (SRC,), mode="reweight", reweight={"cat": 3.0})):
        res = edit(family_model, spec, seed=1, num_inference_steps=STEPS, store_attention=True, progress=False)
        assert _max_diff(res.images[0], plain) <= 1 and _max_diff(res.images[1], plain) > 1
        assert res.attention_downsample in family_model.backbone.grids()


def test_value_injection_in_transformer_blocks_and_a_unet_refuses_it(family_model):
    """EditSpec(inject_values=…): with source = target it is plain generation of the target; with a swap it changes
    only the target; its blocks default to the model's and are recorded; blocks the model lacks and a window that
    covers no step are refused, as is the whole option on a UNet (no transformer blocks), in one line."""
    from promptedit.errors import ParameterError

    run = dict(seed=1, num_inference_steps=STEPS, progress=False)
    depths = family_model.backbone.block_depths()
    if not depths:
        with pytest.raises(ParameterError, match="--self-replace"):
            edit(family_model, EditSpec(SRC, (TGT,), inject_values=0.5), **run)
        return
    plain = generate(family_model, TGT, **run).images[0]
    same = edit(family_model, EditSpec(TGT, (TGT,), cross_replace=0, inject_values=1.0), **run)
    assert _max_diff(same.images[1], plain) <= 1 and same.spec.value_blocks == (1,)  # the model's default
    assert any(n.startswith("value injection: the targets take the source's values of every token in blocks 1 "
                            "(the model default) at steps 1-3 of 3") for n in same.notes)
    base = edit(family_model, EditSpec(SRC, (TGT,), cross_replace=0), **run).images
    ours = edit(family_model, EditSpec(SRC, (TGT,), cross_replace=0, inject_values=1.0, value_blocks=tuple(depths)),
                **run).images
    assert _max_diff(ours[0], base[0]) <= 1 and _max_diff(ours[1], base[1]) > 1
    for spec, message in ((EditSpec(SRC, (TGT,), inject_values=1.0, value_blocks=(1, 5, 6)), "blocks 5-6 not in this "
                           "model: its transformer blocks are depths 0-1"),
                          (EditSpec(SRC, (TGT,), inject_values=0.3), "covers no step of 3")):
        with pytest.raises(ParameterError, match=message):
            edit(family_model, spec, **run)


def test_cross_attention_sites_exist_and_the_store_records_maps_at_each_grid(family_model):
    from promptedit.control.store import AttentionStore
    from promptedit.runner import SeedStart, denoise

    backbone = family_model.backbone
    sites = backbone.sites()
    assert any(s.reads_text for s in sites)
    grids = backbone.grids()
    assert grids and all(g in {s.grid for s in sites if s.reads_text} for g in grids)
    store = AttentionStore()
    cond = family_model.encode([SRC], size=(32, 32))
    x_T = SeedStart(0).prepare(family_model, prompts=[SRC], num_inference_steps=2, size=(32, 32)).x
    denoise(family_model, cond, x_T, num_inference_steps=2, guidance_scale=7.5, controller=store, progress=False)
    h, w = x_T.shape[-2:]  # x_T: (1, C, h, w)
    for grid in grids:
        maps = store.maps(downsample=grid)  # (1, h / grid, w / grid, keys)
        assert maps.shape[:3] == (1, h // grid, w // grid)
        torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:3]), rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["null-text", "negative-prompt", "direct", "ddim", "euler", "rf-solver", "fireflow",
                                    "uni-inv"])
def test_every_inversion_method_runs_and_its_edit_retraces_the_reconstruction(family_model, image, method):
    """Each method the family's sampler runs (DDIM's or the flow's); the others are refused in one line."""
    from promptedit.errors import ParameterError
    from promptedit.methods.inversion import invert, reconstruct, sampler_methods

    if method not in sampler_methods(family_model.make_sampler()):
        with pytest.raises(ParameterError, match=f"^inversion method {method} does not run on this model's"):
            invert(family_model, image, SRC, method=method, num_inference_steps=2, progress=False)
        return
    inv = invert(family_model, image, SRC, method=method, num_inference_steps=2, num_inner_steps=1, progress=False)
    res = edit(family_model, EditSpec(SRC, (TGT,)), start=inv, progress=False)
    assert res.images.shape == (2, 32, 32, 3) and res.method == method
    assert _max_diff(reconstruct(family_model, inv, progress=False).images[0], res.images[0]) <= 1


def test_ddim_inversion_at_many_steps_reconstructs_on_the_familys_shipped_model(family_model):
    """On trained weights (a random-weight model's ε changes with t too much for DDIM inversion's assumption: its
    reconstructions stay near 14 dB at any step count)."""
    from promptedit.families import EMBEDDED_MODELS, resolve_model
    from promptedit.methods.inversion import invert, reconstruct
    from promptedit.images.metrics import psnr
    from promptedit.models import load_model

    shipped = family_model.family_entry.shipped
    if shipped is None or not (EMBEDDED_MODELS[shipped[0]] / "model_index.json").is_file():
        pytest.skip(f"the {family_model.family} family ships no shapes-world model here")
    model = load_model(resolve_model(shipped[0]), device="cpu")
    img = np.full((32, 32, 3), 128, np.uint8)
    img[8:16, 8:16] = (220, 30, 30)
    inv = invert(model, img, "a red square on a gray background", method="ddim", num_inference_steps=RECON_STEPS,
                 guidance_scale=1.0, progress=False)
    assert psnr(reconstruct(model, inv, progress=False).images[0], img) > RECON_PSNR


def test_instant_masks_and_a_user_mask_edit_run(family_model, image):
    from promptedit.methods.maskedit import instdiffedit, masked_edit

    r = instdiffedit(family_model, image, SRC, TGT, num_inference_steps=4, progress=False)
    assert r.edited.shape == image.shape and r.mask.shape == (32, 32)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    res = masked_edit(family_model, image, mask, TGT, num_inference_steps=4, progress=False)
    edited = res.images[-1]
    assert edited.shape == image.shape and np.array_equal(edited[~mask], image[~mask])


def test_a_saved_model_loads_as_the_same_family_with_the_same_weights_and_images(family_model, saved):
    from promptedit.models import model_fingerprint

    folder, loaded = saved
    index = json.loads((folder / "model_index.json").read_text())
    assert family_of_index(index) is family_model.family_entry
    assert index["_class_name"] in family_model.family_entry.class_names
    assert loaded.family == family_model.family
    assert model_fingerprint(loaded) == model_fingerprint(family_model)
    a = generate(family_model, SRC, seed=2, num_inference_steps=2, progress=False).images
    b = generate(loaded, SRC, seed=2, num_inference_steps=2, progress=False).images
    assert np.array_equal(a, b)


def test_records_name_the_family_and_the_sampler(family_model):
    from promptedit.outputs.records import build_record

    res = generate(family_model, SRC, seed=0, num_inference_steps=2, progress=False)
    rec = build_record("generate", family_model, res, with_environment=False)
    assert rec["model_family"] == family_model.family
    assert rec["scheduler"] == family_model.make_sampler().name  # the family's own sampler
