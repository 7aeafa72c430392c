"""FLUX.1 on tiny random-weight components built in code: every command runs on a FLUX folder, bad input gives
one line, and what a FLUX folder cannot do is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers import run

pytestmark = pytest.mark.integration

SRC, TGT = "a photo of a cat", "a photo of a dog"


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    from promptedit.testing import TINY_MODELS, save_model

    return save_model(TINY_MODELS["flux"](0), tmp_path_factory.mktemp("models") / "tiny-flux")


@pytest.fixture(scope="module")
def image():
    img = np.full((32, 32, 3), 220, np.uint8)
    img[8:24, 8:24] = (200, 30, 30)
    return img


def test_every_command_runs_on_a_tiny_flux_folder(flux_dir, image, tmp_path, capsys):
    Image.fromarray(image).save(tmp_path / "in.png")
    m = ["--model", flux_dir, "--quiet"]
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
    assert rec["model_family"] == "flux" and rec["mode"] == "replace"
    bad = [
        (["mask-edit", "--image", tmp_path / "in.png", "--source", SRC, "--target", TGT, "--out", tmp_path / "x",
          "--method", "diffedit"], "no FLUX version"),
        (["generate", SRC, "--out", tmp_path / "x.png", "--height", 30], "multiple of"),
        (["edit", "--source", SRC, "--target", "a photo of a horse and a cow", "--mode", "replace", "--out",
          tmp_path / "x"], "not a word swap"),
        (["attention", SRC, "--out", tmp_path / "x.png", "--resolution", 4], "no cross-attention maps at 1/4"),
    ]
    for argv, message in bad:
        code, _, err = run(capsys, *argv, *m)
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    assert not (tmp_path / "x").exists()


def test_a_flux_folder_without_promptedit_json_takes_the_familys_defaults(flux_dir, tmp_path):
    import shutil

    from promptedit.models import load_model

    folder = shutil.copytree(flux_dir, tmp_path / "bare")
    (folder / "promptedit.json").unlink()
    d = load_model(folder).defaults
    assert (d.sampling.num_inference_steps, d.sampling.guidance_scale) == (28, 1.0)  # undistilled: no guidance
    assert d.p2p.self_replace_min_downsample == 2 and d.masks.downsample == 2  # the packed tokens' grid
    assert load_model(flux_dir).defaults.sampling.num_inference_steps == 4  # its own promptedit.json wins
