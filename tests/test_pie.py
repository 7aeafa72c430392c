"""PIE-Bench reading, the shapes-world PIE set and the benchmark's metrics (fast: tiny random networks)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from promptedit.pie import data as pie
from promptedit.errors import PromptEditError
from promptedit.world import pie as wpie
from promptedit.world import spec

pytestmark = pytest.mark.integration

# ----------------------------------------------------------------------------- masks and prompts


def test_mask_decode_matches_benchmark_on_hand_made_example():
    # 5 x 6 image, row-major indices 0..29. Runs: 7..9, 20..21, 28..37 (cut at 29), 40.. (past the end: ignored).
    encoded = [7, 3, 20, 2, 28, 10, 40, 5]
    annotated = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1],
        ],
        dtype=bool,
    )
    # the benchmark then sets the first/last rows and columns to 1
    with_border = np.array(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 0, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 0, 1, 1, 0, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=bool,
    )
    assert np.array_equal(pie.mask_decode(encoded, (5, 6), border=False), annotated)
    assert np.array_equal(pie.mask_decode(encoded, (5, 6)), with_border)
    assert pie.mask_decode([], (512, 512)).shape == (512, 512)  # default size is the benchmark's


def test_mask_encode_round_trips():
    rng = np.random.default_rng(0)
    for shape in [(5, 6), (64, 64), (3, 1)]:
        for p in (0.0, 0.3, 1.0):
            m = rng.random(shape) < p
            enc = pie.mask_encode(m)
            assert all(isinstance(v, int) for v in enc) and len(enc) % 2 == 0
            assert np.array_equal(pie.mask_decode(enc, shape, border=False), m)
    m = np.zeros((2, 3), bool)
    m[0, 2] = m[1, 0] = m[1, 1] = True  # one run across the row end: indices 2, 3, 4
    assert pie.mask_encode(m) == [2, 3]


@pytest.mark.parametrize("bad", [[1], [1, -2], [0.5, 2], [True, 2]])
def test_mask_decode_rejects_corrupt(bad):
    with pytest.raises(ValueError):
        pie.mask_decode(bad, (4, 4))


def test_prompt_marks():
    assert pie.strip_marks("a slanted [rusty] mountain bicycle") == "a slanted rusty mountain bicycle"
    assert pie.marked_words("a [red] circle and a [big star]") == ("red", "big star")
    assert pie.mark_difference("a red circle on a white background", "a blue circle on a white background") == (
        "a [red] circle on a white background",
        "a [blue] circle on a white background",
    )
    assert pie.mark_difference("a star on a gray background", "a star and a heart on a gray background") == (
        "a star on a gray background",
        "a star [and a heart] on a gray background",
    )


# ----------------------------------------------------------------------------- the world set


@pytest.fixture(scope="module")
def world_items():
    return wpie.make_pie_set(70, seed=3)


@pytest.fixture(scope="module")
def world_dir(world_items, tmp_path_factory):
    out = tmp_path_factory.mktemp("pie_world")
    from promptedit.cli.world import save_pie_set

    save_pie_set(world_items, out)
    return out


def test_world_set_covers_every_type_evenly(world_items):
    counts = {t: sum(1 for i in world_items if i.type_id == t) for t in wpie.WORLD_TYPES}
    assert counts == {t: 10 for t in wpie.WORLD_TYPES}
    assert [i.id for i in world_items] == sorted(i.id for i in world_items)
    assert all(i.id[0] == str(i.type_id) and len(i.id) == 12 for i in world_items)


def test_world_masks_match_the_edited_object(world_items):
    for item in world_items:
        src, tgt, e = item.source, item.target, item.entry
        obj = e["world"]["edited_object"]
        if item.type_id in (1, 6, 7):
            region = src.masks[obj] | tgt.masks[obj]
        elif item.type_id == 2:
            region = tgt.masks[1]
        elif item.type_id == 3:
            region = src.masks[1]
        elif item.type_id == 8:
            region = ~tgt.masks.any(0)
        else:
            region = np.ones((64, 64), bool)
        assert (item.mask >= region).all()
        # outside the mask the exact target is the source, pixel for pixel
        assert np.array_equal(src.image[~item.mask], tgt.image[~item.mask])
        styles = {src.scene.prefix, tgt.scene.prefix}
        if item.type_id != 9 and (styles == {None} or (styles == {spec.SKETCH} and item.type_id != 8)):
            # no style spreads the change (a sketch's interior is background): the region exactly
            assert np.array_equal(item.mask, region), item.id
        # the stored RLE decodes to the mask
        assert np.array_equal(pie.mask_decode(e["mask"], (64, 64), border=False), item.mask)


def test_world_prompts_strip_to_the_captions(world_items):
    for item in world_items:
        e = item.entry
        assert pie.strip_marks(e["original_prompt"]) == item.source.caption
        assert pie.strip_marks(e["editing_prompt"]) == item.target.caption
        assert "[" in e["original_prompt"] + e["editing_prompt"]
        words = e["blended_word"].split(" ") if e["blended_word"] else []
        if words:
            assert words[0] in item.source.caption.split(" ") and words[1] in item.target.caption.split(" ")


def test_world_check_passes_on_target_fails_on_source(world_items):
    checked = 0
    for item in world_items:
        world = item.entry["world"]
        if world["check"] is None:
            assert item.type_id == 9
            continue
        assert wpie.check_edit(item.target.image, world) is True
        assert wpie.check_edit(item.source.image, world) is False
        checked += 1
    assert checked >= 60


def test_read_world_set(world_dir, world_items):
    items = pie.read_pie(world_dir)
    assert [i.id for i in items] == [w.id for w in world_items]
    by_id = {w.id: w for w in world_items}
    for item in items:
        w = by_id[item.id]
        assert item.size == (64, 64)
        assert item.type_name == pie.EDITING_TYPES[w.type_id]
        assert item.source_prompt == w.source.caption and item.target_prompt == w.target.caption
        assert np.array_equal(item.annotated_mask, w.mask)
        assert item.mask[0].all() and item.mask[:, -1].all() and (item.mask >= w.mask).all()
        assert np.array_equal(pie.load_source(item), w.source.image)
        assert np.array_equal(pie.load_target(item), w.target.image)
        assert "world" in item.extra
    assert {i.type_id for i in pie.read_pie(world_dir, types=[6, 8])} == {6, 8}


# ----------------------------------------------------------------------------- reading errors


def _write_pie(root: Path, entry: dict, image: bool = True) -> Path:
    (root / "annotation_images" / "0_random_140").mkdir(parents=True, exist_ok=True)
    if image:
        from PIL import Image

        Image.new("RGB", (512, 512)).save(root / "annotation_images" / entry["image_path"])
    (root / "mapping_file.json").write_text(json.dumps({"000000000000": entry}))
    return root


ENTRY = {
    "image_path": "0_random_140/000000000000.jpg",
    "original_prompt": "a slanted mountain bicycle on the road in front of a building",
    "editing_prompt": "a slanted [rusty] mountain bicycle on the road in front of a building",
    "editing_instruction": "Make the frame of the bike rusty",
    "editing_type_id": "0",
    "blended_word": "bicycle bicycle",
    "mask": [262143, 1, 1000, 24],
}


def test_read_benchmark_entry(tmp_path):
    (item,) = pie.read_pie(_write_pie(tmp_path, ENTRY))
    assert item.size == (512, 512) and item.mask.shape == (512, 512)
    assert item.source_prompt == "a slanted mountain bicycle on the road in front of a building"
    assert item.target_prompt == "a slanted rusty mountain bicycle on the road in front of a building"
    assert item.target_marked == ("rusty",) and item.source_marked == ()
    assert item.blended_words == ("bicycle", "bicycle") and item.type_name == "random"
    assert item.annotated_mask.sum() == 25 and item.annotated_mask[1, 1000 - 512]
    assert not item.mask.flags.writeable
    image = pie.load_source(item)
    assert image.shape == (512, 512, 3)
    wide = np.zeros((512, 1024, 3), np.uint8)
    wide[:, 512:] = 7
    assert (pie.crop_output(wide) == 7).all()


def test_reading_errors_name_the_file(tmp_path):
    def one_line(exc, path):
        msg = str(exc.value)
        assert isinstance(exc.value, PromptEditError) and isinstance(exc.value, ValueError)
        assert "\n" not in msg and str(path) in msg

    with pytest.raises(pie.MappingFileError) as exc:
        pie.read_pie(tmp_path)
    one_line(exc, tmp_path / "mapping_file.json")
    (tmp_path / "mapping_file.json").write_text("{not json")
    with pytest.raises(pie.MappingFileError) as exc:
        pie.read_pie(tmp_path)
    one_line(exc, tmp_path / "mapping_file.json")
    root = _write_pie(tmp_path / "a", ENTRY, image=False)
    with pytest.raises(pie.PieImageError) as exc:
        pie.read_pie(root)
    one_line(exc, root / "annotation_images" / ENTRY["image_path"])
    for broken in ({**ENTRY, "mask": [1, 2, 3]}, {**ENTRY, "editing_type_id": "12"}, {k: v for k, v in ENTRY.items() if k != "mask"}):
        root = _write_pie(tmp_path / "b", broken)
        with pytest.raises(pie.MappingFileError) as exc:
            pie.read_pie(root)
        one_line(exc, root / "mapping_file.json")


def test_every_bad_entry_is_reported_at_once_and_cut_masks_warn(tmp_path):
    root = _write_pie(tmp_path, ENTRY)
    entries = {"000000000000": ENTRY, "a": {**ENTRY, "mask": [1, 2, 3]}, "b": {**ENTRY, "editing_type_id": "12"},
               "c": {k: v for k, v in ENTRY.items() if k != "mask"}}
    (root / "mapping_file.json").write_text(json.dumps(entries))
    with pytest.raises(pie.MappingFileError) as exc:
        pie.read_pie(root)
    msg = str(exc.value)
    assert "\n" not in msg and "3 bad entries" in msg and all(f"entry {k!r}" in msg for k in "abc"), msg
    # runs past the image's end are cut as the benchmark cuts them, with one warning naming the entries
    past = {**ENTRY, "mask": [262140, 10]}
    (root / "mapping_file.json").write_text(json.dumps({"x": past, "y": past, "z": ENTRY}))
    with pytest.warns(UserWarning) as caught:
        items = pie.read_pie(root)
    assert len(caught) == 1 and "2 entries have mask runs past the image's end" in str(caught[0].message)
    assert "'x', 'y'" in str(caught[0].message) and items[0].annotated_mask.sum() == 4


def test_an_edit_at_another_size_is_brought_to_its_source_frame():
    yy, xx = np.mgrid[0:48, 0:64]
    source = np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)  # 48 x 64, smooth
    from PIL import Image

    def resized(a, w, h):
        return np.asarray(Image.fromarray(a).resize((w, h), Image.LANCZOS))

    same, box, how = pie.output_at_size(resized(source, 128, 96), (48, 64))  # the same aspect ratio, twice as big
    assert box is None and same.shape == (48, 64, 3) and "128x96 to 64x48 (Lanczos)" in how
    assert np.abs(same.astype(int) - source).mean() < 2
    # a square model edited the centre 48 x 48 (--fit crop): measured over that box of the source
    crop, box, _ = pie.output_at_size(resized(source[:, 8:56], 32, 32), (48, 64), "crop")
    assert box == (0, 8, 48, 48) and crop.shape == (48, 48, 3)
    assert np.abs(crop.astype(int) - source[:, 8:56]).mean() < 3
    item = pie.PieItem("1", Path("x"), "x", "", "", "", "", "", 0, "random", (), (), (), (48, 64),
                       np.eye(48, 64, dtype=bool), np.eye(48, 64, dtype=bool))
    assert pie.crop_item(item, box).mask.shape == (48, 48) and pie.crop_item(item, box).size == (48, 48)
    # --fit pad: the source padded with white to 64 x 64, then resized: the padding is cut off
    padded = np.full((64, 64, 3), 255, np.uint8)
    padded[8:56] = source
    back, box, how = pie.output_at_size(resized(padded, 32, 32), (48, 64), "pad")
    assert box is None and back.shape == (48, 64, 3) and "padding cut off" in how
    assert np.abs(back[2:-2].astype(int) - source[2:-2]).mean() < 3


def test_pie_p2p_recipe_is_pnpinversion_controller(tmp_path):
    """--recipe pie-p2p gives each PIE item the controller PnPInversion's run_editing_p2p.py makes for it:
    make_controller(is_replace_controller=False, cross_replace_steps={"default_": 0.4}, self_replace_steps=0.6,
    blend_words=((w0,), (w1,)), equilizer_params={"words": (w1,), "values": (2,)}), 50 steps, guidance 7.5.
    The entry adds an object next to w0, so w0 is in both prompts: their blend looks it up in the source only."""
    import torch

    from promptedit.batch import item_plan, read_manifest
    from promptedit.control import AttentionRefine, AttentionReweight
    from promptedit.control.edit_spec import build_controller
    from promptedit.testing import tiny_tokenizer
    from promptedit.text.tokens import word_token_indices

    src, tgt = "a cat sitting on a bench", "a cat wearing a hat sitting on a bench"
    entry = {**ENTRY, "original_prompt": src, "editing_prompt": "a cat [wearing a hat] sitting on a bench",
             "editing_type_id": "2", "blended_word": "cat hat"}
    (item,), kind = read_manifest(_write_pie(tmp_path / "data", entry), {}, recipe="pie-p2p")
    plan = item_plan(item, tmp_path / "out")  # as batch runs an item
    assert (plan.sampling.steps, plan.sampling.guidance, plan.options["edit_null"]) == (50, 7.5, "all")
    assert plan.spec.blend_swapped is False  # an item without blended_word is not blended (theirs: blend_word None)
    tokenizer = tiny_tokenizer()
    steps, keys = 50, tokenizer.model_max_length
    ours, mode, _ = build_controller(plan.spec, tokenizer, steps)

    def tokens_of(prompt, word):  # (keys,), 1 at the word's tokens in the prompt
        row = torch.zeros(keys)
        row[word_token_indices(tokenizer, prompt, word)] = 1
        return row

    # theirs, built from the entry as their script builds it
    w0, w1 = entry["blended_word"].split(" ")
    blend_alphas = torch.stack([tokens_of(src, w0), tokens_of(tgt, w1)])  # LocalBlend: words[i] in prompts[i]
    equalizer = torch.where(tokens_of(tgt, w1) > 0, 2.0, 1.0)[None]  # get_equalizer(prompts[1], (w1,), (2,))
    cross = torch.zeros(steps, 1, keys)
    cross[: int(0.4 * (steps + 1))] = 1  # get_time_words_attention_alpha over num_steps + 1 rows: 20 steps
    assert mode == "refine" and isinstance(ours, AttentionReweight) and isinstance(ours.prev, AttentionRefine)
    assert torch.equal(ours.local_blend.word_alphas, blend_alphas)
    assert torch.equal(ours.equalizer, equalizer) and torch.equal(ours.cross_alpha, cross)
    assert ours.self_replace_steps == (0, int(steps * 0.6))  # num_self_replace
    assert ours.self_replace_min_downsample == 2  # replace_self_attention at <= 32 ** 2 pixels of SD's 64 x 64
    assert ours.local_blend.threshold == 0.3 and ours.local_blend.start_step == int(0.2 * steps)  # th, start_blend
    assert (ours.local_blend.downsample, ours.local_blend.pool_size) == (4, 3)  # 16 x 16 maps, max-pool k = 1
    # options given on the command line override the recipe's; a JSONL manifest or a mask method is refused
    (item,), _ = read_manifest(tmp_path / "data", {"steps": 2}, recipe="pie-p2p")
    assert item.argv[item.argv.index("--steps") + 1] == "2"
    for defaults, path in (({}, tmp_path / "data" / "mapping_file.json"), ({"method": "instant"}, tmp_path / "data")):
        with pytest.raises(PromptEditError, match="recipe"):
            read_manifest(path, defaults, recipe="pie-p2p")


@pytest.mark.parametrize("recipe, method, steps, window, blocks", [
    ("rf-solver-edit", "rf-solver", 15, 0.14, tuple(range(39, 57))),  # 2 of 15 steps, single-stream blocks 20-37
    ("fireflow", "fireflow", 8, 0.125, tuple(range(19, 57))),  # 1 of 8 steps, every single-stream block
])
def test_flux_recipes_invert_with_their_solver_and_inject_values_as_the_papers_code(tmp_path, recipe, method, steps,
                                                                                    window, blocks):
    """--recipe rf-solver-edit / fireflow: each PIE item inverted with the paper's solver at its steps and edited at
    FLUX.1-dev's embedded guidance 2 with the source's values (every token's) in its blocks for its first steps,
    and no Prompt-to-Prompt (no cross- or self-attention injection, no blend); the inversion's own method only."""
    from promptedit.batch import RECIPES, item_plan, read_manifest
    from promptedit.cli.batch import batch
    from promptedit.control.base import step_window

    assert list([p for p in batch.params if p.name == "recipe"][0].type.choices) == list(RECIPES)
    (item,), kind = read_manifest(_write_pie(tmp_path / "data", ENTRY), {}, recipe=recipe)
    plan = item_plan(item, tmp_path / "out")
    assert kind == "pie" and item.method == method and plan.options["method"] == method
    assert (plan.sampling.steps, plan.sampling.guidance, plan.sampling.height, plan.sampling.width) == (
        steps, 2, 512, 512)
    spec = plan.spec
    assert (spec.inject_values, spec.value_blocks, spec.value_tokens, spec.inject_keys) == (window, blocks, "all",
                                                                                             False)
    assert step_window(spec.inject_values, steps) == (0, {"rf-solver": 2, "fireflow": 1}[method])
    assert (spec.cross_replace, spec.self_replace, spec.blends, spec.blend_swapped) == (0, 0, False, False)
    other = {"rf-solver": "fireflow", "fireflow": "rf-solver"}[method]
    for defaults in ({"method": other}, {"method": "instant"}):
        with pytest.raises(PromptEditError, match=f"--recipe {recipe} edits an inversion with value injection"):
            read_manifest(tmp_path / "data", defaults, recipe=recipe)


def test_the_fireflow_recipe_edits_a_pie_item_on_a_flux_folder(tmp_path, flux_model, capsys):
    """The recipe runs end to end on a tiny FLUX.1 folder (its blocks and size given over the recipe's, which are
    FLUX.1-dev's): a FireFlow inversion edited with value injection, recorded in the item's result.json."""
    from helpers import run
    from promptedit.testing import save_model

    folder = save_model(flux_model, tmp_path / "flux")
    code, _, err = run(capsys, "batch", _write_pie(tmp_path / "data", ENTRY), "--out", tmp_path / "run", "--model",
                       folder, "--recipe", "fireflow", "--set", "value-blocks=1", "--set", "height=32", "--set",
                       "width=32", "--quiet", "--threads", 1)
    assert code == 0, err
    rec = json.loads((tmp_path / "run" / "000000000000" / "result.json").read_text())
    assert rec["method"] == "fireflow" and rec["inversion"]["num_inference_steps"] == 8
    assert (rec["spec"]["inject_values"], rec["spec"]["value_blocks"], rec["spec"]["cross_replace"]) == (0.125, [1], 0)
    assert "value injection: the targets take the source's values of every token in blocks 1 at steps 1-1 of 8" in \
        rec["notes"]


def test_velocity_edit_items_take_the_papers_flux_settings_by_default(tmp_path):
    """A batch item of flowedit / uniedit that sets nothing runs the function's defaults, the papers' FLUX.1
    settings: FlowEdit 28 steps, n_max 24, guidance 1.5 / 5.5; UniEdit-Flow 15 steps, α 0.6, ω 5, guidance 1."""
    import inspect

    from promptedit.batch import item_from_options, item_plan
    from promptedit.methods import velocityedit
    from promptedit.requests import FlowOptions

    (tmp_path / "in.png").write_bytes(b"")
    for method, papers in (("flowedit", {"num_inference_steps": 28, "source_guidance": 1.5, "target_guidance": 5.5}),
                           ("uniedit", {"num_inference_steps": 15, "alpha": 0.6, "omega": 5.0,
                                        "guidance_scale": 1.0})):
        item = item_from_options("a", {"image": str(tmp_path / "in.png"), "source": "a cat", "target": "a dog",
                                       "method": method})
        plan = item_plan(item, tmp_path / method)
        assert plan.method == method and plan.options == FlowOptions()
        assert (plan.sampling.steps, plan.sampling.guidance) == (None, None)  # nothing overrides the function's
        params = inspect.signature(getattr(velocityedit, method)).parameters
        assert {k: params[k].default for k in papers} == papers


# ----------------------------------------------------------------------------- metrics


torch = pytest.importorskip("torch")
ev = pytest.importorskip("promptedit.pie.evaluate")


@pytest.fixture(scope="module")
def tiny_dino():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64)
    return ViTModel(cfg, add_pooling_layer=False)


@pytest.fixture(scope="module")
def tiny_clip():
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel

    import promptedit

    tok = AutoTokenizer.from_pretrained(Path(promptedit.__file__).parent / "assets" / "shapes-model" / "tokenizer")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=len(tok), max_position_embeddings=32, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    proc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPModel(cfg), tok, proc


@pytest.fixture(scope="module")
def tiny_lpips():
    torch.manual_seed(0)
    net = ev.SqueezeLpips()
    with torch.no_grad():
        for p in net.lins.parameters():
            p.uniform_(0, 0.1)
    return net


def _grey(level: int, size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), level, np.uint8)


def test_identical_images(tiny_dino, tiny_lpips):
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = pie.mask_decode(pie.mask_encode(np.pad(np.ones((20, 20), bool), 22)), (64, 64))
    assert ev.unedited_psnr(img, img, mask) == math.inf  # as torchmetrics (and the benchmark): no cap
    assert ev.unedited_mse(img, img, mask) == 0.0
    assert ev.unedited_ssim(img, img, mask) == pytest.approx(1.0, abs=1e-5)
    assert ev.unedited_lpips(img, img, mask, tiny_lpips) == pytest.approx(0.0, abs=1e-7)
    assert ev.structure_distance(img, img, ev.DinoStructure(tiny_dino)) == pytest.approx(0.0, abs=1e-10)


def test_known_grey_shift():
    a, b = _grey(100), _grey(110)
    err = (10 / 255) ** 2
    assert ev.mse(a, b) == pytest.approx(err, rel=1e-5)
    assert ev.zero_filled_psnr(a, b) == pytest.approx(10 * math.log10(1 / err), rel=1e-5)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True  # the edited part: 1024 of 4096 pixels, zeroed in both images but still counted
    keep = 1 - 1024 / 4096
    assert ev.unedited_mse(a, b, mask) == pytest.approx(err * keep, rel=1e-5)
    assert ev.unedited_psnr(a, b, mask) == pytest.approx(10 * math.log10(1 / (err * keep)), rel=1e-5)
    # ground-truth PSNR averages over the region only
    assert ev.region_psnr(a, b, ~mask) == pytest.approx(10 * math.log10(1 / err), rel=1e-9)
    assert math.isnan(ev.region_psnr(a, b, np.zeros((64, 64), bool)))


def test_mask_covering_everything_gives_nan(tiny_lpips, tiny_clip):
    a, b = _grey(100), _grey(110)
    full = pie.mask_decode([0, 64 * 64], (64, 64))
    for value in (ev.unedited_psnr(a, b, full), ev.unedited_mse(a, b, full), ev.unedited_ssim(a, b, full),
                  ev.unedited_lpips(a, b, full, tiny_lpips)):
        assert math.isnan(value)
    scorer = ev.ClipScorer(*tiny_clip)
    assert math.isnan(ev.clip_similarity(a, "a red circle", scorer, np.zeros((64, 64), bool)))


def test_dino_resize_rule():
    assert ev.dino_size(512, 512) == (224, 224)
    assert ev.dino_size(64, 64) == (224, 224)
    assert ev.dino_size(512, 1024) == (224, 448)
    assert ev.dino_size(100, 1000) == (48, 480)


def test_tiny_networks_end_to_end(tiny_dino, tiny_clip, tiny_lpips, world_items):
    metrics = ev.Metrics(dino=ev.DinoStructure(tiny_dino), clip=ev.ClipScorer(*tiny_clip), lpips=tiny_lpips)
    assert metrics.skipped == {}
    item = next(i for i in world_items if i.type_id == 6)
    edited = item.target.image.copy()
    edited[:8] = 0  # a bit of damage outside the edit
    bench_mask = pie.mask_decode(item.entry["mask"], (64, 64))
    values = metrics.compute(item.source.image, edited, bench_mask, item.source.caption, item.target.caption,
                             target=item.target.image, region=item.mask)
    assert set(values) == set(ev.BENCHMARK_METRICS) | set(ev.TARGET_METRICS)
    for m in ev.BENCHMARK_METRICS:
        assert math.isfinite(values[m]), m
    for m in ("clip_similarity_source_image", "clip_similarity_target_image", "clip_similarity_target_image_edit_part"):
        assert 0 <= values[m] <= 100
    assert values["structure_distance"] > 0 and values["lpips_unedit_part"] > 0
    assert values["psnr_target_edit_part"] == math.inf and math.isfinite(values["psnr_target_unedit_part"])


def test_missing_networks_are_reported(tmp_path):
    metrics = ev.Metrics()
    assert set(metrics.skipped) == {"structure_distance", "lpips_unedit_part", "clip_similarity_source_image",
                                    "clip_similarity_target_image", "clip_similarity_target_image_edit_part"}
    assert "DINO" in metrics.skipped["structure_distance"] and set(metrics.missing_networks) == {"dino", "clip", "lpips"}
    values = metrics.compute(_grey(1), _grey(2), np.zeros((64, 64), bool))
    assert set(values) == {"psnr_unedit_part", "mse_unedit_part", "ssim_unedit_part"}
    text, data = ev.report([ev.ItemResult("1", 6, values)], skipped=metrics.skipped)
    assert "Skipped" in text and "DINO" in text and data["skipped"] == metrics.skipped
    from promptedit.errors import ModelLoadError

    for kwargs in ({"dino": tmp_path / "none"}, {"clip": tmp_path / "none"}, {"lpips_backbone": tmp_path / "none.pth"}):
        with pytest.raises(ModelLoadError, match="none"):
            ev.Metrics.from_paths(**kwargs)


def test_networks_load_from_local_files(tmp_path, tiny_dino, tiny_clip, tiny_lpips):
    tiny_dino.save_pretrained(tmp_path / "dino")
    model, tok, proc = tiny_clip
    model.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    proc.save_pretrained(tmp_path / "clip")
    # torchvision's SqueezeNet 1.1 layout: features.* plus a classifier to ignore
    state = {f"features.{k}": v for k, v in tiny_lpips.features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(1000, 512, 1, 1)
    torch.save(state, tmp_path / "squeezenet1_1.pth")
    metrics = ev.Metrics.from_paths(dino=tmp_path / "dino", clip=tmp_path / "clip",
                                    lpips_backbone=tmp_path / "squeezenet1_1.pth")
    assert metrics.skipped == {}
    loaded = metrics.lpips.features.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in tiny_lpips.features.state_dict().items())
    a, b = _grey(90), _grey(120)
    assert metrics.clip.score(a, "a red circle") == pytest.approx(ev.ClipScorer(*tiny_clip).score(a, "a red circle"), abs=1e-4)
    assert metrics.dino.distance(a, b) == pytest.approx(ev.DinoStructure(tiny_dino).distance(a, b), rel=1e-5)
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
    from promptedit.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="bad.pth"):
        ev.SqueezeLpips.from_files(tmp_path / "bad.pth")


def test_world_set_evaluated_against_exact_targets(world_dir):
    items = pie.read_pie(world_dir)
    metrics = ev.Metrics()
    results = metrics.evaluate(items, pie.load_target, extra={"world_check": wpie.world_check})
    for item, r in zip(items, results):
        assert r.values["psnr_target"] == math.inf
        if item.type_id == 9:  # the mask is the whole image: the benchmark's NaN
            assert math.isnan(r.values["psnr_unedit_part"]) and math.isnan(r.values["ssim_unedit_part"])
        else:
            assert r.values["psnr_unedit_part"] == math.inf and r.values["mse_unedit_part"] == 0
        assert r.values["world_check"] == 1.0 or (item.type_id == 9 and math.isnan(r.values["world_check"]))
    agg = ev.aggregate(results)
    assert set(agg.per_type) == set(wpie.WORLD_TYPES)
    assert agg.per_type[9].nans["psnr_unedit_part"] == 10 and math.isnan(agg.per_type[9].means["psnr_unedit_part"])
    assert agg.overall.counts["mse_unedit_part"] == 60 and agg.overall.means["mse_unedit_part"] == 0
    assert agg.overall.means["world_check"] == 1.0


def test_aggregate_report_plot():
    results = [
        ev.ItemResult("a", 1, {"psnr_unedit_part": 20.0, "mse_unedit_part": 0.01}),
        ev.ItemResult("b", 1, {"psnr_unedit_part": 30.0, "mse_unedit_part": 0.03}),
        ev.ItemResult("c", 9, {"psnr_unedit_part": float("nan"), "mse_unedit_part": float("nan")}),
        ev.ItemResult("d", 9, {"psnr_unedit_part": 40.0, "mse_unedit_part": 0.02}),
    ]
    agg = ev.aggregate(results)
    assert agg.per_type[1].means["psnr_unedit_part"] == 25.0
    assert agg.per_type[9].means["psnr_unedit_part"] == 40.0 and agg.per_type[9].nans["psnr_unedit_part"] == 1
    assert agg.overall.means["psnr_unedit_part"] == 30.0  # pooled over the 3 non-NaN items
    assert agg.overall.n_items == 4 and agg.overall.counts["psnr_unedit_part"] == 3
    text, data = ev.report(results, title="t")
    assert "| 1 change object | 2 | 25.00 | 200.00 |" in text  # MSE printed x1e4, as in the paper
    assert "| **all** | 4 | 30.00 |" in text
    json.dumps(data, allow_nan=False)
    assert data["items"][2]["psnr_unedit_part"] is None
    inf_text, inf_data = ev.report([ev.ItemResult("x", 2, {"psnr_unedit_part": math.inf}),
                                    ev.ItemResult("y", 2, {"psnr_unedit_part": 30.0}),
                                    ev.ItemResult("z", 2, {"psnr_unedit_part": 40.0})])
    assert "| **all** | 3 | inf (1 exact; others 35.00) |" in inf_text  # the mean stays the benchmark's
    overall = inf_data["overall"]
    assert overall["means"]["psnr_unedit_part"] == "inf" and overall["exact"]["psnr_unedit_part"] == 1
    assert overall["finite_means"]["psnr_unedit_part"] == 35.0
    image = ev.plot(agg)
    assert image.mode == "RGB" and image.size == (840, 260)
    assert np.asarray(image).std() > 0


def test_lpips_equals_torchmetrics_computation(tiny_lpips):
    """torchmetrics' own LPIPS module, given our backbone instead of torchvision's, agrees exactly."""
    tl = pytest.importorskip("torchmetrics.functional.image.lpips")
    net = ev.SqueezeLpips()
    net.load_linear(torch.load(ev.default_lpips_linear(), map_location="cpu"))
    net.features.load_state_dict(tiny_lpips.features.state_dict())
    original = tl._get_tv_model_features
    try:
        tl._get_tv_model_features = lambda name, pretrained=False: net.features
        reference = tl._NoTrainLpips(net="squeeze")
    except (AttributeError, TypeError) as exc:  # pragma: no cover - torchmetrics internals moved
        pytest.skip(f"torchmetrics LPIPS internals changed: {exc}")
    finally:
        tl._get_tv_model_features = original
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True
    x, y = ev._pair(a, b, ~mask)
    expected = float(tl._lpips_update(x * 2 - 1, y * 2 - 1, reference, normalize=False))
    assert ev.unedited_lpips(a, b, mask, net) == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore:.*max_length.*")
def test_clip_equals_torchmetrics_clip_score(tiny_clip):
    """torchmetrics' clip_score (the benchmark's CLIPScore) on the same model gives the same number."""
    from torchmetrics.functional.multimodal import clip_score
    from transformers import CLIPProcessor

    model, tok, proc = tiny_clip

    class TensorFeatures(torch.nn.Module):  # transformers 5 returns outputs; torchmetrics expects tensors
        def __init__(self, m):
            super().__init__()
            self.m, self.config = m, m.config

        def get_image_features(self, *a, **k):
            return ev._embedding(self.m.get_image_features(*a, **k))

        def get_text_features(self, *a, **k):
            return ev._embedding(self.m.get_text_features(*a, **k))

    processor = CLIPProcessor(image_processor=proc, tokenizer=tok)
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ours = ev.ClipScorer(model, tok, proc)
    for text in ("a red circle on a white background", "a sketch of a big striped blue star and a yellow heart on a gray background at night"):
        expected = float(clip_score(torch.from_numpy(image).permute(2, 0, 1), text,
                                    model_name_or_path=lambda: (TensorFeatures(model), processor)).detach())
        assert ours.score(image, text) == pytest.approx(expected, abs=1e-4)


def test_dino_uses_every_token_of_the_last_block(tiny_dino):
    dino = ev.DinoStructure(tiny_dino)
    assert dino.key_layer is tiny_dino.layers[-1].attention.k_proj
    sim = dino.self_similarity(_grey(128, 512))
    assert sim.shape == (1 + 28 * 28, 1 + 28 * 28)  # CLS + (224 / 8)^2 patches
    assert torch.allclose(sim.diagonal(), torch.ones(sim.shape[0]), atol=1e-5)


def test_world_set_is_reproducible(world_items):
    again = wpie.make_pie_set(7, seed=3)
    first = {w.id: w for w in world_items}
    for w in again:
        ref = first[w.id]
        assert w.entry["original_prompt"] == ref.entry["original_prompt"]
        assert w.entry["mask"] == ref.entry["mask"] and np.array_equal(w.target.image, ref.target.image)
