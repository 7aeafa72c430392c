"""Velocity edits of flow models (FlowEdit, UniEdit-Flow): their equations on the exact velocity of Gaussian data
(tests/helpers.GaussianFlowModel), and the methods on the tiny random FLUX.1 model."""

import numpy as np
import pytest
import torch

from promptedit.errors import ParameterError
from promptedit.methods.velocityedit import (flowedit, flowedit_latents, flowedit_pair, uniedit, uniedit_mask,
                                             uniedit_velocity)
from promptedit.samplers import FlowMatchEulerSampler

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"


@pytest.fixture(scope="module")
def image():
    img = np.full((32, 32, 3), 200, np.uint8)
    img[8:24, 8:24] = (40, 90, 160)
    return img


def one_line(excinfo) -> str:
    assert "\n" not in str(excinfo.value) and isinstance(excinfo.value, ValueError)
    return str(excinfo.value)


def test_flowedit_moves_gaussian_data_from_the_source_mean_to_the_targets_exactly():
    """For data N(μ, s²) the edit's ODE is dD/dσ = a(σ)·D − (1 + a(σ)(1 − σ))·Δμ, D = Z^FE − X^src, whose solution
    from σ = 1 is D = (1 − σ)·Δμ (Euler follows it exactly): FlowEdit maps the source's distribution onto the
    target's by the shift Δμ = μ_tar − μ_src, whatever the noise draws."""
    from helpers import GaussianFlowModel

    model = GaussianFlowModel()
    x_src = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    sampler = FlowMatchEulerSampler(model.config)
    sampler.set_steps(6)
    assert float(sampler.sigmas[0]) == 1.0

    def v(mu):
        return lambda x, t: model.predict(x, t, model.cond(mu))

    out = flowedit_latents(v(0.5), v(-1.0), x_src, sampler, n_max=6, n_avg=2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x_src - 1.5, atol=1e-5, rtol=0)
    same = flowedit_latents(v(0.5), v(0.5), x_src, sampler, n_max=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same, x_src)  # source = target: the velocities' difference is 0, the source comes back exactly
    # the last n_min steps sample the target from the noisy edit: no longer the edit's exact shift
    tail = flowedit_latents(v(0.5), v(-1.0), x_src, sampler, n_max=6, n_min=2, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(tail).all() and not torch.allclose(tail, x_src - 1.5, atol=1e-3)


def test_flowedit_pair_and_uniedits_fusion_are_the_papers_equations():
    x_src, z_edit, noise = (torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(s)) for s in (2, 3, 4))
    z_src, z_tar = flowedit_pair(x_src, z_edit, noise, torch.tensor(0.3))
    torch.testing.assert_close(z_src, 0.7 * x_src + 0.3 * noise)
    torch.testing.assert_close(z_tar, z_edit + z_src - x_src)
    assert torch.equal(flowedit_pair(x_src, x_src, noise, torch.tensor(0.3))[1], z_src)
    v_src, v_tar = z_edit, noise
    delta = torch.zeros(1, 4, 4, 4)
    delta[..., :2, :2] = 3.0  # the prompts differ in the top-left corner only
    mask = uniedit_mask(delta)
    assert mask.shape == (1, 1, 4, 4) and mask[..., :2, :2].eq(1).all() and mask.sum() == 4
    assert uniedit_mask(delta[..., 1:, 1:], patch=3).shape == (1, 1, 3, 3) and uniedit_mask(torch.zeros(1, 4, 4, 4)).eq(0).all()
    m = uniedit_mask(v_tar - v_src)
    fused = uniedit_velocity(v_src, v_tar, m, 5.0)
    torch.testing.assert_close(fused, m * v_tar + (1 - m) * v_src + (m + 1) * 5.0 * (v_tar - v_src))
    assert torch.equal(uniedit_velocity(v_src, v_src, uniedit_mask(v_src - v_src), 5.0), v_src)


def test_flowedit_on_flux_returns_the_source_exactly_when_the_target_is_the_source(flux_model, image):
    same = flowedit(flux_model, image, SRC, SRC, num_inference_steps=4, n_max=3, source_guidance=2.0,
                    target_guidance=2.0, progress=False)
    assert torch.equal(same.final_latents, same.latents) and same.method == "flowedit"
    assert same.images.shape == (2, 32, 32, 3) and (same.images[0] == image).all()
    edited = flowedit(flux_model, image, SRC, TGT, num_inference_steps=4, n_max=3, progress=False)
    assert not torch.equal(edited.final_latents, edited.latents)
    assert flowedit(flux_model, image, SRC, TGT, num_inference_steps=7, n_avg=1, progress=False).settings["n_max"] == 6
    assert edited.settings == {"n_max": 3, "n_min": 0, "n_avg": 1, "source_guidance": 1.5, "target_guidance": 5.5}
    again = flowedit(flux_model, image, SRC, TGT, num_inference_steps=4, n_max=3, progress=False)
    assert torch.equal(again.final_latents, edited.final_latents)  # the seed's noise reproduces


def test_uniedit_on_flux_reconstructs_when_the_target_is_the_source_and_edits_otherwise(flux_model, image):
    from promptedit.methods.inversion import flow_inversion
    from promptedit.runner import denoise, encode_images

    same = uniedit(flux_model, image, SRC, SRC, num_inference_steps=5, alpha=0.6, progress=False)
    assert same.settings["edit_steps"] == 3 and same.velocity_mask.shape == same.latents.shape[-2:]
    # Uni-Inv for 3 of 5 steps under the empty prompt, then Euler back under the source prompt: nothing fused in
    z0 = encode_images(flux_model, image[None].astype(np.float32) / 255)
    start = flow_inversion(flux_model, z0, flux_model.encode([""], size=(32, 32)), num_inference_steps=5,
                           solver="uni-inv", stop=3, progress=False)[-1:]
    assert torch.equal(start, same.latents)
    plain = denoise(flux_model, flux_model.encode([SRC], size=(32, 32)), start, num_inference_steps=5,
                    guidance_scale=1.0, start_step=2, progress=False)
    torch.testing.assert_close(same.final_latents, plain, atol=1e-5, rtol=0)
    edited = uniedit(flux_model, image, SRC, TGT, num_inference_steps=5, progress=False)
    assert float((edited.final_latents - same.final_latents).abs().max()) > 1e-3
    assert edited.velocity_mask.min() == 0 and edited.velocity_mask.max() == 1


def test_velocity_edits_refuse_ddim_models_and_bad_parameters_in_one_line(tiny_model, flux_model, image):
    for fn, name in ((flowedit, "FlowEdit"), (uniedit, "UniEdit-Flow")):
        with pytest.raises(ParameterError, match=f"^{name} edits flow-matching models .* samples with DDIM") as e:
            fn(tiny_model, image, SRC, TGT, num_inference_steps=2, progress=False)
        one_line(e)
    for kw, match in ((dict(n_max=5), "n_max must be in"), (dict(n_max=2, n_min=3), "n_min must be in"),
                      (dict(n_avg=0), "n_avg must be in"), (dict(source_guidance=-1), "guidance_scale must be"),
                      (dict(seed=-1), "seed must be")):
        with pytest.raises(ParameterError, match=match) as e:
            flowedit(flux_model, image, SRC, TGT, num_inference_steps=4, **{"n_max": 3, **kw}, progress=False)
        one_line(e)
    for kw, match in ((dict(alpha=0), "alpha must be in"), (dict(alpha=1.5), "alpha must be in"),
                      (dict(omega=float("nan")), "omega must be a finite"), (dict(mask_patch=3), "mask_patch 3")):
        with pytest.raises(ParameterError, match=match) as e:
            uniedit(flux_model, image, SRC, TGT, num_inference_steps=4, **kw, progress=False)
        one_line(e)
    with pytest.raises(ParameterError, match="must be \\(H, W, 3\\) uint8"):
        flowedit(flux_model, image.astype(np.float32), SRC, TGT, progress=False)


# ----------------------------------------------------------------------------- the CLI on a tiny FLUX.1 folder


@pytest.fixture(scope="module")
def flux_dir(flux_model, tmp_path_factory):
    from promptedit.testing import save_model

    return save_model(flux_model, tmp_path_factory.mktemp("models") / "flux")


@pytest.fixture(scope="module")
def photo(image, tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "photo.png"
    Image.fromarray(image).save(path)
    return path


def test_flow_edit_cli_writes_an_edits_folder_with_either_method(flux_dir, photo, tmp_path, capsys):
    import json

    from helpers import run

    for method, extra in (("flowedit", ["--n-max", 2, "--source-guidance", 2]), ("uniedit", ["--alpha", 0.5])):
        out = tmp_path / method
        code, stdout, err = run(capsys, "flow-edit", "--image", photo, "--source", SRC, "--target", TGT, "--method", method,
                                "--steps", 3, *extra, "--out", out, "--model", flux_dir, "--quiet")
        assert code == 0, err
        for name in ("source.png", "edited.png", "grid.png", "result.json"):
            assert (out / name).is_file(), name
        rec = json.loads((out / "result.json").read_text())
        assert rec["method"] == method and rec["num_inference_steps"] == 3 and rec["prompts"] == [SRC, TGT]
        assert rec["settings"]["n_max" if method == "flowedit" else "alpha"] == (2 if method == "flowedit" else 0.5)


def test_flow_inversions_from_the_cli_invert_and_edit_on_flux(flux_dir, photo, tmp_path, capsys):
    import json

    from helpers import run

    inv = tmp_path / "inv.safetensors"
    code, stdout, err = run(capsys, "invert", photo, "--prompt", SRC, "--method", "direct", "--steps", 3, "--out", inv,
                            "--model", flux_dir, "--quiet")
    assert code == 0, err
    assert json.loads(inv.with_suffix(".json").read_text())["method"] == "direct"
    code, _, err = run(capsys, "edit", "--inversion", inv, "--target", TGT, "--out", tmp_path / "e", "--model",
                       flux_dir, "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "e" / "result.json").read_text())["inversion"]["method"] == "direct"


def test_flow_edit_cli_refuses_bad_input_in_one_line(flux_dir, tiny_model_dir, photo, tmp_path, capsys):
    from helpers import one_line_error, run

    cases = [
        (["--method", "uniedit", "--n-max", 3], flux_dir, "--n-max is not used with --method uniedit"),
        (["--method", "uniedit", "--seed", 1], flux_dir, "--seed is not used with --method uniedit"),
        (["--alpha", 0.5], flux_dir, "--alpha is not used with --method flowedit"),
        (["--n-max", 30, "--steps", 4], flux_dir, "n_max must be in [1, 4], got 30"),
        ([], tiny_model_dir, "FlowEdit edits flow-matching models (FLUX.1, SD3); this model samples with DDIM"),
        (["--method", "uniedit"], tiny_model_dir, "UniEdit-Flow edits flow-matching models"),
    ]
    for argv, model, message in cases:
        code, _, err = run(capsys, "flow-edit", "--image", photo, "--source", SRC, "--target", TGT, "--out", tmp_path / "o",
                           *argv, "--model", model, "--quiet")
        assert message in one_line_error(code, err), (argv, err)
    assert not (tmp_path / "o").exists()
    code, _, err = run(capsys, "flow-edit", "--image", tmp_path / "missing.png", "--source", SRC, "--target", TGT, "--out",
                       tmp_path / "o", "--model", flux_dir, "--quiet")
    assert "missing.png" in one_line_error(code, err)


def test_a_batch_runs_velocity_edits_as_the_command_does(flux_dir, photo, tmp_path, capsys):
    import json

    from helpers import run

    manifest = tmp_path / "m.jsonl"
    items = [{"id": "fe", "method": "flowedit", "image": str(photo), "source": SRC, "target": TGT, "steps": 3,
              "n-max": 2},
             {"id": "ue", "method": "uniedit", "image": str(photo), "source": SRC, "target": TGT, "steps": 3},
             {"id": "bad", "method": "uniedit", "image": str(photo), "source": SRC, "target": TGT, "n-avg": 2},
             {"id": "noimage", "method": "flowedit", "source": SRC, "target": TGT}]
    manifest.write_text("\n".join(json.dumps(item) for item in items))
    code, stdout, err = run(capsys, "batch", manifest, "--out", tmp_path / "run", "--model", flux_dir, "--quiet",
                            "--threads", 1)
    assert code == 3 and "2 done" in stdout and "2 failed" in stdout, (stdout, err)
    for item in ("fe", "ue"):
        rec = json.loads((tmp_path / "run" / item / "result.json").read_text())
        assert rec["method"] == {"fe": "flowedit", "ue": "uniedit"}[item] and rec["num_inference_steps"] == 3
    failures = {f["id"]: f["error"] for f in map(json.loads, (tmp_path / "run" / "failures.jsonl").read_text().splitlines())}
    assert "--n-avg is not used with --method uniedit" in failures["bad"]
    assert "method flowedit edits a real image: give an image" in failures["noimage"]


def test_the_web_apps_flow_edit_builds_the_same_request(flux_model, photo, tmp_path):
    import json

    pytest.importorskip("gradio")
    from promptedit.app import App

    app = App(flux_model, str(tmp_path / "app"))
    gallery, record = app.flow_edit(str(photo), SRC, TGT, "flowedit", 2, None, 3)
    assert [label for _, label in gallery] == ["input", "edit"]
    rec = json.loads(open(record).read())
    assert rec["method"] == "flowedit" and rec["seed"] == 3 and rec["num_inference_steps"] == 2
    with pytest.raises(ParameterError, match="flow-edit method must be one of flowedit, uniedit") as e:
        app.flow_edit(str(photo), SRC, TGT, "p2p", 2, None, 0)
    one_line(e)


def test_the_web_apps_real_image_tab_offers_the_inversions_the_model_runs(flux_model, tiny_model):
    pytest.importorskip("gradio")
    from promptedit.app import _inversion_methods
    from promptedit.testing import tiny_flux_model

    assert _inversion_methods(tiny_model) == (["null-text", "negative-prompt", "direct", "ddim"], "negative-prompt")
    assert _inversion_methods(flux_model) == (["null-text", "negative-prompt", "direct", "euler", "rf-solver",
                                               "fireflow", "uni-inv"], "negative-prompt")
    dev = tiny_flux_model(0, guidance_embeds=True)  # guidance-distilled: nothing to replace the unconditional branch
    assert _inversion_methods(dev) == (["direct", "euler", "rf-solver", "fireflow", "uni-inv"], "euler")
