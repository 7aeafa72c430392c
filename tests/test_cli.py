"""The command line on a tiny random-weight model folder: outputs, and one-line errors with exit 2."""

import json

import pytest
from PIL import Image

from helpers import run

pytestmark = pytest.mark.integration


def test_help_everywhere(capsys):
    for argv in ([], ["generate"], ["edit"], ["mask"], ["mask-edit"], ["invert"], ["attention"], ["demo"], ["train"],
                 ["bench", "world"], ["serve"], ["dev", "tiny-model"]):
        code, out, _ = run(capsys, *argv, "--help")
        assert code == 0 and "Usage:" in out
    code, out, _ = run(capsys, "train", "--arch", "flux", "--help")
    assert code == 0 and "sd|sdxl|flux" in out and "FLUX.1's" in out


def test_generate_writes_image_and_record(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "gen.png"
    code, _, err = run(capsys, "generate", "a photo of a cat", "--model", tiny_model_dir, "--seed", 7,
                       "--steps", 2, "--out", out, "--quiet")
    assert code == 0, err
    assert Image.open(out).size == (32, 32)
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["seed"] == 7 and rec["num_inference_steps"] == 2 and rec["prompts"] == ["a photo of a cat"]
    assert rec["timings"]["total"] > 0


def test_edit_writes_its_files(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "edit"
    code, _, err = run(capsys, "edit", "--model", tiny_model_dir, "--source", "a photo of a cat",
                       "--target", "a photo of a dog", "--out", out, "--cross-replace", "0.2,0.9",
                       "--cross-replace", "dog=0.5", "--self-replace", "0.5", "--reweight", "dog=2",
                       "--blend", "cat", "--blend", "dog", "--inject-features", "0.5", "--save-attention",
                       "--quiet")
    assert code == 0, err
    for name in ("source.png", "edited.png", "grid.png", "result.json", "attention.png", "blend-mask.png"):
        assert (out / name).is_file(), name
    rec = json.loads((out / "result.json").read_text())
    assert rec["mode"] == "replace"
    assert rec["spec"]["cross_replace"] == [0.2, 0.9] and rec["spec"]["cross_replace_words"] == {"dog": 0.5}
    assert rec["spec"]["reweight"] == {"dog": 2.0} and rec["seed"] == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_edit_several_targets_and_auto_refine(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "multi"
    code, _, err = run(capsys, "edit", "--model", tiny_model_dir, "--source", "a photo of a cat",
                       "--target", "a photo of a dog", "--target", "a photo of a big cat", "--out", out, "--quiet")
    assert code == 0, err
    assert (out / "edited-1.png").is_file() and (out / "edited-2.png").is_file()
    rec = json.loads((out / "result.json").read_text())
    assert rec["mode"] == "refine" and "refine" in rec["notes"][0] and err == ""  # --quiet: the note is recorded


def test_attention_writes_grids(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "maps.png"
    code, _, err = run(capsys, "attention", "a photo of a cat", "--model", tiny_model_dir, "--out", out, "--quiet")
    assert code == 0, err
    assert out.is_file() and (tmp_path / "maps-self.png").is_file() and (tmp_path / "maps.json").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "a cat", "--model", "{tmp}/nowhere", "--out", "{tmp}/x.png"], "not found"),
        (["generate", "a cat", "--model", "{tmp}", "--out", "{tmp}/x.png"], "model_index.json"),
        (["generate", "a cat", "--model", "{model}", "--out", "{tmp}/x.png", "--steps", "0"], "--steps"),
        (["generate", "a cat", "--model", "{model}", "--out", "{tmp}/x.png", "--guidance", "lots"], "guidance"),
        (["generate", "a cat", "--model", "{model}", "--out", "{tmp}/x.png", "--height", "30"], "multiple of"),
        (["generate", "a cat", "--model", "{model}", "--out", "{tmp}/blocker/x.png"], "not a folder"),
        (["generate", "a cat", "--model", "{model}", "--out", "{tmp}/x.jpg"], ".png"),
        (["edit", "--model", "{model}", "--source", "a cat", "--target", "a dog", "--out", "{tmp}/o",
          "--reweight", "horse=2"], "'horse'"),
        (["edit", "--model", "{model}", "--source", "a cat", "--target", "a big dog", "--out", "{tmp}/o",
          "--mode", "replace"], "refine"),
        (["edit", "--model", "{model}", "--source", "a cat", "--target", "a dog", "--out", "{tmp}/o",
          "--cross-replace", "1.5"], "0 <= start <= end <= 1"),
        (["edit", "--model", "{model}", "--source", "a cat", "--target", "a dog", "--out", "{tmp}/o",
          "--self-replace", "a,b"], "self-replace"),
        (["edit", "--model", "{model}", "--source", "a cat", "--target", "a dog", "--out", "{tmp}/o",
          "--blend", "horse"], "'horse'"),
        (["edit", "--model", "{model}", "--source", "cat", "--target", "dog", "--out", "{tmp}/o",
          "--mode", "refine"], "share no words"),
        (["edit", "--model", "{model}", "--source", "a cat", "--out", "{tmp}/o"], "--target"),
        (["edit", "--model", "{model}", "--source", "a cat", "--target", "a dog", "--out", "{tmp}/o",
          "--mode", "swap"], "swap"),
        (["train", "--out", "{tmp}/o", "--device", "bogus"], "unknown device 'bogus'"),
        (["train", "--out", "{tmp}/o", "--device", "cuda:99"], "cuda:99"),
        (["train", "--out", "{tmp}/o", "--workers", "-1"], "--workers"),
        (["train", "--out", "{tmp}/o", "--init-from", "{tmp}/nowhere"], "not found"),
        (["train", "--out", "{tmp}/o", "--init-from", "{model}"], "does not have this recipe's architecture"),
        (["train", "--out", "{tmp}/o", "--two-object-fraction", "1.5"], "two-object fraction"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, tiny_model_dir, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    argv = [a.format(tmp=tmp_path, model=tiny_model_dir) for a in argv]
    code, out, err = run(capsys, *argv, "--quiet") if argv[0] != "dev" else run(capsys, *argv)
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("loading model")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert message in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists(), "no partial output"
    assert not (tmp_path / "x.png").exists()


def test_overlong_prompt_warns_in_one_line(tiny_model_dir, tmp_path, capsys):
    code, _, err = run(capsys, "generate", "a cat " * 60, "--model", tiny_model_dir, "--steps", 1,
                       "--out", tmp_path / "long.png", "--quiet")
    assert code == 0
    assert sum(l.startswith("warning:") for l in err.splitlines()) == 1 and "truncated" in err


def test_demo_runs_without_a_model(tmp_path, capsys):
    """The demo's gallery and record; each progress bar names its row and what it counts; the re-weighting rows
    show their difference image."""
    import re

    out = tmp_path / "demo"
    code, _, err = run(capsys, "demo", "--out", out, "--steps", 2, "--threads", 1)
    assert code == 0, err
    assert (out / "gallery.png").is_file() and (out / "index.html").is_file()
    bars = {re.sub(r":\s*\d+%$", "", part.split("|")[0].strip()) for part in re.split(r"[\r\n]", err) if "%|" in part}
    assert bars and all(re.match(r"demo [1-6]/6 .+: (denoising|DDIM inversion|null-text)$", b) for b in bars), bars
    assert {b[:8] for b in bars} == {f"demo {k}/6" for k in range(1, 7)}
    assert "demo 5/6 real image: null-text" in bars
    page = (out / "index.html").read_text()
    assert page.count("<h2>") == 6 and "data:image/png;base64," in page
    assert page.count("<figcaption>difference x4</figcaption>") == 2
    edits = json.loads((out / "result.json").read_text())["edits"]
    assert [e.get("method", "p2p") for e in edits] == ["p2p"] * 4 + ["null-text", "instdiffedit"]
    assert edits[4]["edit_null"] in ("all", "source") and edits[5]["words"]["anchor"]
    assert (out / "gallery.png").stat().st_mode & 0o044, "outputs are readable like ordinary files"


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import numpy as np

    path = tmp_path_factory.mktemp("photos") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_invert_then_edit_the_inversion(tiny_model_dir, photo, tmp_path, capsys):
    inv = tmp_path / "inv" / "photo.safetensors"
    code, out, err = run(capsys, "invert", photo, "--prompt", "a photo of a cat", "--out", inv, "--model",
                         tiny_model_dir, "--inner-steps", 2, "--quiet")
    assert code == 0, err
    assert "PSNR" in out and (tmp_path / "inv" / "photo-reconstruction.png").is_file()
    rec = json.loads((tmp_path / "inv" / "photo.json").read_text())
    assert rec["method"] == "null-text" and "centre-cropped 50x40" in rec["inputs"]["image"]["rule"]
    code, _, err = run(capsys, "edit", "--inversion", inv, "--target", "a photo of a dog", "--out", tmp_path / "e",
                       "--model", tiny_model_dir, "--quiet")
    assert code == 0, err
    for name in ("reconstruction.png", "edited.png", "grid.png", "result.json"):
        assert (tmp_path / "e" / name).is_file(), name
    rec = json.loads((tmp_path / "e" / "result.json").read_text())
    assert rec["inversion"]["prompt"] == "a photo of a cat" and rec["edit_null"] == "all"  # the tiny model's default
    code, _, err = run(capsys, "edit", "--inversion", inv, "--target", "a photo of a dog", "--out", tmp_path / "s",
                       "--model", tiny_model_dir, "--quiet", "--edit-null", "source")
    assert code == 0, err
    assert json.loads((tmp_path / "s" / "result.json").read_text())["edit_null"] == "source"


@pytest.mark.parametrize("method", ["negative-prompt", "direct", "ddim"])
def test_edit_a_real_image_with_each_fast_method(method, tiny_model_dir, photo, tmp_path, capsys):
    code, _, err = run(capsys, "edit", "--image", photo, "--source", "a photo of a cat", "--target",
                       "a photo of a dog", "--method", method, "--out", tmp_path / "e", "--model", tiny_model_dir,
                       "--quiet")
    assert code == 0, err
    rec = json.loads((tmp_path / "e" / "result.json").read_text())
    assert rec["inversion"]["method"] == method and "reconstruction_psnr" in rec["inputs"]["image"]
    assert (tmp_path / "e" / "inversion.safetensors").is_file() and (tmp_path / "e" / "input.png").is_file()


def test_real_image_bad_inputs(tiny_model_dir, photo, tmp_path, capsys):
    (tmp_path / "text.png").write_text("hello")
    cases = [
        (["invert", tmp_path / "text.png", "--prompt", "a cat", "--out", tmp_path / "x.safetensors"], "not an image"),
        (["invert", tmp_path / "nope.png", "--prompt", "a cat", "--out", tmp_path / "x.safetensors"], "not found"),
        (["invert", photo, "--prompt", "a cat", "--out", tmp_path / "x.png"], ".safetensors"),
        (["edit", "--inversion", tmp_path / "text.png", "--target", "a dog", "--out", tmp_path / "o"],
         "not a promptedit inversion"),
        (["edit", "--image", photo, "--inversion", photo, "--source", "a", "--target", "b", "--out", tmp_path / "o"],
         "not both"),
        (["edit", "--image", photo, "--target", "a dog", "--out", tmp_path / "o"], "--source"),
        (["edit", "--source", "a cat", "--target", "a dog", "--edit-null", "source", "--out", tmp_path / "o"],
         "--edit-null is not used in an edit of a generated image"),
        (["edit", "--image", photo, "--source", "a cat", "--target", "a dog", "--edit-null", "none", "--out",
          tmp_path / "o"], "--edit-null"),
        (["invert", photo, "--prompt", "a cat", "--method", "euler", "--out", tmp_path / "x.safetensors"],
         "inversion method euler does not run on this model's DDIM sampler"),
        (["edit", "--image", photo, "--source", "a cat", "--target", "a dog", "--method", "fireflow", "--out",
          tmp_path / "o"], "inversion method fireflow does not run on this model's DDIM sampler"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, "--model", tiny_model_dir, "--quiet")
        lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("loading", "inverting"))]
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.safetensors").exists()


def test_an_inversions_edit_refuses_what_the_inversion_fixes(tiny_model_dir, photo, tmp_path, capsys):
    """--inversion runs at the inversion's steps, guidance and size: giving them is refused, not ignored."""
    inv = tmp_path / "photo.safetensors"
    code, _, err = run(capsys, "invert", photo, "--prompt", "a photo of a cat", "--method", "ddim", "--out", inv,
                       "--model", tiny_model_dir, "--quiet")
    assert code == 0, err
    for flag, value in (("--steps", 3), ("--height", 64), ("--width", 64), ("--guidance", 2), ("--seed", 1)):
        code, _, err = run(capsys, "edit", "--inversion", inv, "--target", "a photo of a dog", "--out",
                           tmp_path / "o", "--model", tiny_model_dir, "--quiet", flag, value)
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and f"{flag} is not used with --inversion" in lines[0], err
    assert not (tmp_path / "o").exists()


def test_bad_devices_seeds_and_sizes_end_in_one_line(tiny_model_dir, tmp_path, capsys):
    import torch

    cases = [(["--device", "tpu9"], "unknown device 'tpu9'"), (["--device", "cuda:99"], "cuda:99"),
             (["--seed", str(2**63)], "--seed"), (["--seed", "-1"], "--seed"), (["--width", "0"], "--width"),
             (["--height", "4096"], "allow large sizes"), (["--threads", "0"], "--threads")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA GPU"))
    for argv, message in cases:
        code, _, err = run(capsys, "generate", "a cat", "--model", tiny_model_dir, "--out", tmp_path / "x.png",
                           "--quiet", *argv)
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "x.png").exists()
    code, _, err = run(capsys, "generate", "a cat", "--model", tiny_model_dir, "--out", tmp_path / "x.png",
                       "--quiet", "--steps", 1, "--seed", str(2**63 - 1))
    assert code == 0, err


def test_non_files_and_decompression_bombs_are_refused(tiny_model_dir, tmp_path, capsys):
    """A FIFO (reading it would hang) and an image whose header claims 20000 x 20000 are one-line errors, for
    images and masks alike; zero or huge sizes are refused in every command."""
    import os
    import struct
    import zlib

    os.mkfifo(tmp_path / "fifo.png")

    def png_header(w, h):
        chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))

    (tmp_path / "bomb.png").write_bytes(png_header(20000, 20000))
    Image.new("RGB", (32, 32), "white").save(tmp_path / "ok.png")
    common = ["--model", tiny_model_dir, "--quiet"]
    cases = [
        (["invert", tmp_path / "fifo.png", "--prompt", "a cat", "--out", tmp_path / "x.safetensors"], "not a regular file"),
        (["invert", tmp_path / "bomb.png", "--prompt", "a cat", "--out", tmp_path / "x.safetensors"], "pixels"),
        (["invert", tmp_path / "ok.png", "--prompt", "a cat", "--out", tmp_path / "x.safetensors", "--width", "0"],
         "--width"),
        (["mask", tmp_path / "ok.png", "--source", "a cat", "--target", "a dog", "--out", tmp_path / "m.png",
          "--height", "0"], "--height"),
        (["mask-edit", "--source", "a cat", "--target", "a dog", "--mask", tmp_path / "bomb.png", "--out",
          tmp_path / "o"], "pixels"),
        (["mask-edit", "--source", "a cat", "--target", "a dog", "--mask", tmp_path / "fifo.png", "--out",
          tmp_path / "o"], "not a regular file"),
        (["edit", "--image", tmp_path / "ok.png", "--source", "a cat", "--target", "a dog", "--out", tmp_path / "o",
          "--width", "4096"], "allow large sizes"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, *common)
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.safetensors").exists()


def test_inputs_are_checked_before_the_model_loads(tmp_path, capsys):
    """A missing image is named even when the model folder is bad too: inputs are checked first."""
    code, _, err = run(capsys, "edit", "--image", tmp_path / "missing.png", "--source", "a cat", "--target", "a dog",
                       "--out", tmp_path / "o", "--model", tmp_path / "no-model")
    assert code == 2 and "missing.png not found" in err and "loading model" not in err


def test_model_folder_problems_are_named(tiny_model_dir, tmp_path, capsys):
    import json as _json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "unet")
    code, _, err = run(capsys, "generate", "a cat", "--model", broken, "--out", tmp_path / "x.png", "--quiet")
    assert code == 2 and "unet" in err and "folder is missing" in err
    bad = tmp_path / "bad-defaults"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "promptedit.json").write_text(_json.dumps({"sampling": {"guidance_scale": "lots"}}))
    code, _, err = run(capsys, "generate", "a cat", "--model", bad, "--out", tmp_path / "x.png", "--quiet")
    assert code == 2 and "promptedit.json" in err and "sampling.guidance_scale" in err
    (bad / "promptedit.json").write_text(_json.dumps({"sampling": {"num_steps": 3}}))
    code, _, err = run(capsys, "generate", "a cat", "--model", bad, "--out", tmp_path / "x.png", "--quiet")
    assert code == 2 and "unknown key sampling.num_steps" in err and str(bad) in err


def test_quiet_prints_only_the_result_line_and_debug_shows_the_traceback(tiny_model_dir, tmp_path, capsys):
    code, out, err = run(capsys, "edit", "--source", "a photo of a cat", "--target", "a photo of a big cat", "--out",
                         tmp_path / "e", "--model", tiny_model_dir, "--steps", 1, "--quiet")
    assert code == 0 and err == "" and out.startswith("wrote")
    code, out, err = run(capsys, "edit", "--source", "a photo of a cat", "--target", "a photo of a big cat", "--out",
                         tmp_path / "e2", "--model", tiny_model_dir, "--steps", 1)
    assert code == 0 and "loading model" in err and "refine" in err
    code, _, err = run(capsys, "--debug", "generate", "a cat", "--model", tmp_path / "nowhere", "--out",
                       tmp_path / "x.png")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error:")


def test_thread_policy_leaves_the_busy_cores_alone(monkeypatch):
    from promptedit.cli import common
    from promptedit.errors import ParameterError

    monkeypatch.setattr(common.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for busy, expected in ((0, 4), (1, 3), (2.6, 1), (9, 1)):
        monkeypatch.setattr(common, "busy_cores", lambda busy=busy: busy)
        assert common.choose_threads() == expected
    assert common.choose_threads(3) == 3
    with pytest.raises(ParameterError, match="--threads"):
        common.choose_threads(0)
    assert common.busy_cores() >= 0


def test_world_render_writes_a_scene_and_its_ground_truth(tmp_path, capsys):
    """`world render CAPTION --out FILE.png`: the README's real image for invert and mask, with FILE.json holding
    the words, boxes and masks the pixels show; the same seed draws the same layout; a caption outside the
    world's grammar is one line, exit 2, and writes nothing."""
    import numpy as np

    from promptedit.world import rle_decode
    from promptedit.world.spec import PALETTE

    caption = "a red circle and a blue star on a white background"
    code, out, err = run(capsys, "world", "render", caption, "--out", tmp_path / "scene.png", "--seed", 3)
    assert code == 0, err
    image = np.asarray(Image.open(tmp_path / "scene.png"))
    truth = json.loads((tmp_path / "scene.json").read_text())
    assert image.shape == (64, 64, 3) and truth["caption"] == caption and truth["seed"] == 3
    for obj in truth["objects"]:
        inside = rle_decode(obj["mask"])
        x, y, s = obj["box"]
        assert inside.any() and not inside[:y].any() and not inside[y + s:].any()  # the mask lies in its box
        assert np.abs(image[inside].astype(int) - PALETTE[obj["colour"]]).max() <= 1  # and is its colour
    background = ~(rle_decode(truth["objects"][0]["mask"]) | rle_decode(truth["objects"][1]["mask"]))
    assert (image[background] == PALETTE["white"]).all()
    assert run(capsys, "world", "render", caption, "--out", tmp_path / "again.png", "--seed", 3)[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), image)
    assert run(capsys, "world", "render", caption, "--out", tmp_path / "other.png", "--seed", 4)[0] == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "other.png")), image)
    code, _, err = run(capsys, "world", "render", "a red circel on a white background", "--out", tmp_path / "x.png")
    assert code == 2 and "'circel'" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.json").exists()


def test_help_and_the_shapes_world_import_no_torch():
    """`promptedit --help` answers without importing torch (it used to take 4-14 s), and `import promptedit.world`
    needs numpy and Pillow only."""
    import subprocess
    import sys

    code = ("import sys; from promptedit.cli import main; rc = main(['--help']); import promptedit.world; "
            "print(rc, 'torch' in sys.modules, 'diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "0 False False", out.stderr


def test_the_web_app_reads_uploads_by_the_image_rules_and_names_them_by_their_own_name(tmp_path):
    import struct
    import zlib

    from promptedit.app import _check_upload
    from promptedit.errors import ImageInputError

    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    header = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
              + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    upload = tmp_path / "gradio-tmp-1234" / "big.png"
    upload.parent.mkdir()
    upload.write_bytes(header)
    with pytest.raises(ImageInputError, match="upload big.png has more than") as e:
        _check_upload(str(upload))
    assert "gradio-tmp-1234" not in str(e.value)
    Image.new("RGB", (40, 40), "red").save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match="cut.png") as e:
        _check_upload(str(tmp_path / "cut.png"))
    assert str(tmp_path) not in str(e.value)


def test_shipped_models_are_named_and_a_missing_one_is_one_line(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """--model embedded / embedded-xl, and load_model's names, are the shipped shapes-world models; an
    installation without one says so in one line (exit 2; a ModelLoadError from the API) and writes nothing; a
    folder is still a folder."""
    from promptedit import load_model
    from promptedit.cli import common
    from promptedit.errors import ModelLoadError

    monkeypatch.setitem(common.EMBEDDED_MODELS, "embedded-xl", tmp_path / "absent")
    out = tmp_path / "gen.png"
    code, _, err = run(capsys, "generate", "a red circle", "--model", "embedded-xl", "--out", out, "--quiet")
    assert code == 2 and "embedded-xl" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(ModelLoadError, match="'embedded-xl'.*lacks that shipped model"):
        load_model("embedded-xl")
    monkeypatch.setitem(common.EMBEDDED_MODELS, "embedded-xl", tiny_model_dir)
    assert common.resolve_model_path("embedded-xl") == str(tiny_model_dir)
    assert common.resolve_model_path(str(tmp_path)) == str(tmp_path)
    code, _, err = run(capsys, "generate", "a red circle", "--model", "embedded-xl", "--out", out, "--steps", 1,
                       "--quiet")
    assert code == 0, err
    assert out.is_file()


def test_requests_run_the_method_functions_exactly_and_the_one_writer_writes_their_folders(tiny_model, tmp_path):
    """A request gives the very pixels of the library call it stands for (same seed, steps, size); the CLI's one
    writer (outputs.write_result_folder) writes an edit's folder and a mask-guided edit's."""
    import numpy as np

    from promptedit.methods.editing import EditSpec, edit, generate
    from promptedit.methods.maskedit import masked_edit
    from promptedit.outputs.files import write_result_folder
    from promptedit.requests import EditRequest, GenerateRequest, MaskEditRequest, SamplingOptions

    sampling = SamplingOptions(steps=1, seed=3, height=32, width=32)
    want = generate(tiny_model, "a red circle", seed=3, num_inference_steps=1, height=32, width=32, progress=False)
    assert np.array_equal(GenerateRequest("a red circle", sampling).run(tiny_model, progress=False).images, want.images)
    spec = EditSpec("a red circle", ("a blue circle", "a green circle"))
    got = EditRequest(spec, sampling).run(tiny_model, progress=False)
    assert np.array_equal(got.images, edit(tiny_model, spec, seed=3, num_inference_steps=1, height=32, width=32,
                                           progress=False).images) and got.method == "p2p"
    assert write_result_folder(tmp_path / "e", tiny_model, got, command="edit")["edited"] == ["edited-1.png",
                                                                                             "edited-2.png"]
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["edited-1.png", "edited-2.png", "grid.png",
                                                                  "result.json", "source.png"]
    mask = np.zeros((32, 32), bool)  # (H, W)
    mask[8:24, 8:24] = True
    got = MaskEditRequest("a red circle", "a blue circle", method="mask", mask=mask, sampling=sampling).run(
        tiny_model, progress=False)  # the source generated from the seed
    assert np.array_equal(got.images, masked_edit(tiny_model, want.images[0], mask, "a blue circle",
                                                  num_inference_steps=1, seed=3, progress=False).images)
    write_result_folder(tmp_path / "m", tiny_model, got, command="mask-edit", extra={"note": 1})
    record = json.loads((tmp_path / "m" / "result.json").read_text())
    assert record["command"] == "mask-edit" and record["note"] == 1 and record["files"]["mask"] == "mask.png"
    assert {"source.png", "edited.png", "mask.png", "mask-overlay.png", "grid.png"} <= {
        p.name for p in (tmp_path / "m").iterdir()}
