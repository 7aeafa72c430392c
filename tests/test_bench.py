"""The shapes-world benchmark (promptedit bench world) on a tiny random-weight model: plumbing, not quality."""

import json
import math

import numpy as np
import pytest
import torch

from promptedit.bench import SECTIONS
from promptedit.bench.world import (
    real_methods,
    REWEIGHTS,
    BenchResult,
    Metric,
    SectionResult,
    Target,
    box_iou,
    capped_psnr,
    colour_swap_target,
    held_out_items,
    markdown_report,
    metric_rows,
    run_world_bench,
    to_canvas,
)
from promptedit.errors import ParameterError
from promptedit.world import parse_caption, spec

from helpers import run

pytestmark = pytest.mark.integration

STEPS = 2  # the tiny model's images are noise whatever the steps; fewer keep the tests fast

EXPECTED = {
    "generation": {"colour_accuracy", "shape_accuracy", "background_accuracy", "two_objects_both_right",
                   "two_objects_both_colours"},
    "p2p_colour_swap": {"mask_iou_mean", "mask_iou_frac_ge_0.9", "new_colour_accuracy", "source_colour_accuracy",
                        "baseline_mask_iou_mean", "baseline_mask_iou_frac_ge_0.9", "baseline_colour_accuracy"},
    "p2p_background_swap": {"mask_iou_mean", "mask_iou_frac_ge_0.9", "new_background_accuracy", "colour_kept"},
    "p2p_shape_swap": {"new_shape_accuracy", "box_iou_mean", "box_iou_frac_ge_0.9", "centre_distance_px_mean",
                       "colour_kept"},
    "p2p_add_word": {"box_iou_mean", "box_iou_frac_ge_0.9", "texture_took_effect", "texture_strength_source_mean",
                     "texture_strength_edit_mean", "night_took_effect", "prefix_took_effect"},
    "p2p_reweight": {"texture_strength_by_c", "monotonic", "texture_strength_source_mean",
                     *(f"texture_strength_c={c:g}" for c in REWEIGHTS)},
    "p2p_local_blend": {"psnr_other_object_db", "psnr_background_db", "new_colour_accuracy"},
    "real_images": {f"{m}_{k}" for m in ("null-text", "null-text@7.5", "negative-prompt", "direct", "ddim")
                    for k in ("reconstruction_psnr", "seconds", "edit_colour_accuracy", "edit_background_psnr",
                              "time_ratio_to_null_text")}
                   | {f"{m}_edit_{k}_{size}" for m in ("null-text", "direct") for k in ("colour_accuracy", "background_psnr")
                      for size in ("small", "medium", "large")},
    "masks": {"instant_mask_iou", "diffedit_mask_iou", "instant_1step_mask_iou", "instant_iou_minus_diffedit",
              "instant_background_psnr", "diffedit_background_psnr", "instant_new_colour_accuracy",
              "diffedit_new_colour_accuracy", "instant_mask_seconds", "instant_1step_mask_seconds",
              "diffedit_mask_seconds", "instant_edit_seconds", "diffedit_edit_seconds", "instant_mask_time_ratio",
              "instant_1step_mask_time_ratio", "instant_authors_mask_iou", "instant_authors_background_psnr",
              "instant_background_psnr_item_mean", "instant_authors_new_colour_accuracy"},
}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_section_runs_and_returns_every_key(tiny_model, one_thread):
    assert tiny_model.image_size == 32  # exercises the resize to the 64 x 64 canvas
    result = run_world_bench(tiny_model, n=2, steps=STEPS, progress=False, examples=1,
                             n_overrides={"real_images": {"n": 1}, "masks": {"n": 1}})
    assert list(result.sections) == list(SECTIONS)
    assert result.settings["resized_from"] == [32, 32] and result.settings["num_inference_steps"] == STEPS
    for name, keys in EXPECTED.items():
        section = result.sections[name]
        assert set(section.metrics) == keys, name
        assert section.items and section.seconds > 0 and section.examples
        for m in section.metrics.values():
            assert m.n <= 6
    real = result.sections["real_images"].metrics
    assert real["direct_reconstruction_psnr"].value > real["ddim_reconstruction_psnr"].value
    assert real["null-text_time_ratio_to_null_text"].value == pytest.approx(1.0)
    assert real["direct_reconstruction_psnr"].target is None  # the flow's exact inversion's targets are not DDIM's
    assert str(result.sections["masks"].metrics["instant_mask_iou"].target) == ">= 0.7"
    assert "sampler" not in result.settings
    # calls: invert, reconstruct and edit per method and image; four mask-guided runs per mask scene
    methods = real_methods(tiny_model)
    assert [m[0] for m in methods] == ["null-text", "null-text@7.5", "negative-prompt", "direct", "ddim"]
    assert result.sections["real_images"].units == 3 * len(methods) * len(result.sections["real_images"].items)
    assert result.sections["masks"].units == 4 * len(result.sections["masks"].items)
    inversions = [r["methods"] for r in result.sections["real_images"].items]
    assert inversions and all(set(m) == {label for label, _, _ in methods} for m in inversions)
    assert result.sections["generation"].metrics["colour_accuracy"].n == 2
    assert result.sections["p2p_add_word"].metrics["box_iou_mean"].n == 6  # 2 each of texture, night, prefix
    seq = result.sections["p2p_reweight"].metrics["texture_strength_by_c"].value
    assert len(seq) == len(REWEIGHTS)
    # the report and the JSON record carry every metric
    text = markdown_report(result)
    for name, keys in EXPECTED.items():
        for k in keys:
            assert f"| {name}.{k} |" in text
    json.dumps(result.to_dict())


def test_masks_section_reports_the_refinement_when_the_model_refines(tiny_model, one_thread):
    """With a model that refines its instant masks and selects their regions, the section also gives the mask
    without either, with the refinement alone, and DiffEdit's mask refined, so that each step's share of the IoU
    is on the table (and a model that does neither gets none of these rows)."""
    import dataclasses

    from promptedit.bench.world import bench_masks

    refining = dataclasses.replace(tiny_model, defaults=tiny_model.defaults.replace(
        "masks", guided_filter_radius=1.0, region_peak=0.9))
    section = bench_masks(refining, n=1, steps=STEPS, examples=0)
    for k in ("instant_unrefined_mask_iou", "instant_all_regions_mask_iou", "diffedit_refined_mask_iou"):
        assert section.metrics[k].n == 1 and 0.0 <= section.metrics[k].value <= 1.0
        assert section.items[0][k.removesuffix("_mask_iou")]["mask_iou"] == section.metrics[k].value
    assert section.units == 4  # masks only: no extra denoising calls


def test_real_images_also_edit_as_the_papers_do_when_the_model_does_not(tiny_model, one_thread):
    """A model whose edits give the inversion's null to the source branch only is also measured with every
    branch taking it, for the methods that have such a null (one more edit each, no more inversions)."""
    import dataclasses

    from promptedit.bench.world import bench_real_images

    model = dataclasses.replace(tiny_model, defaults=tiny_model.defaults.replace("inversion", edit_null="source"))
    section = bench_real_images(model, n=1, steps=STEPS, inner_steps=1, examples=0)
    extra = {k for k in section.metrics if "all_branches" in k}
    assert extra == {f"{m}_all_branches_edit_{k}" for m in ("null-text", "null-text@7.5", "negative-prompt")
                     for k in ("colour_accuracy", "background_psnr")}
    assert all(section.metrics[k].n == 1 for k in extra)
    assert section.units == 3 * len(real_methods(model)) + 3


def test_pooled_psnr_is_not_hidden_by_exact_items():
    from promptedit.bench.world import PSNR_CAP, capped_pooled_psnr
    from promptedit.images.metrics import psnr as plain_psnr
    from promptedit.images.metrics import squared_error

    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    everywhere = np.ones((4, 4), bool)
    err = squared_error(a, b, everywhere)
    assert err == pytest.approx(255.0**2 / 16)
    assert capped_pooled_psnr([err]) == pytest.approx(10 * np.log10(16))
    # an exact item halves the mean error (+3 dB), where a mean of capped PSNRs would jump towards 100 dB
    assert capped_pooled_psnr([err, 0.0]) == pytest.approx(10 * np.log10(32))
    assert capped_pooled_psnr([0.0, None]) == PSNR_CAP and capped_pooled_psnr([None]) is None
    assert squared_error(a, b, np.zeros((4, 4), bool)) is None
    assert plain_psnr(a, a) == float("inf") and plain_psnr(a, b) == pytest.approx(10 * np.log10(16))


def test_held_out_captions_are_reproducible_and_not_training_seeds():
    from promptedit.train.shapes import TrainConfig
    from promptedit.world.spec import HELD_OUT_SEED
    from promptedit.world import scene_at

    a = [(i, c.caption) for i, c, _ in held_out_items(2, 5, lambda c: len(c.objects) == 1)]
    b = [(i, c.caption) for i, c, _ in held_out_items(2, 5, lambda c: len(c.objects) == 1)]
    assert a == b and len(a) == 5 and all(len(parse_caption(c).objects) == 1 for _, c in a)
    # draw i of stream k is the caption of scene_at(HELD_OUT_SEED + k, i), far from the training seeds
    assert all(scene_at(HELD_OUT_SEED + 2, i).caption == c for i, c in a)
    assert HELD_OUT_SEED not in (TrainConfig().seed, TrainConfig().data_seed)
    assert [c for _, c in a] != [scene_at(TrainConfig().data_seed, i).caption for i, _ in a]


def test_colour_swap_target_changes_exactly_one_word():
    for i, cap, rng in held_out_items(2, 30):
        for k in range(len(cap.objects)):
            new = next(c for c in spec.COLOURS if c != cap.objects[k].colour)
            tgt = colour_swap_target(cap, new, k)
            a, b = cap.caption.split(), tgt.split()
            assert len(a) == len(b)
            diff = [j for j in range(len(a)) if a[j] != b[j]]
            assert len(diff) == 1 and a[diff[0]] == cap.objects[k].colour and b[diff[0]] == new
            assert parse_caption(tgt).objects[k].colour == new
    with pytest.raises(ParameterError):
        colour_swap_target("a red circle on a white background", "red")


def _result(metrics: dict[str, Metric]) -> BenchResult:
    return BenchResult({"model": "m", "seed": 0, "num_inference_steps": 1, "guidance_scale": 1.0,
                        "held_out_seed": 1, "resized_from": None}, {"s": SectionResult("s", metrics=metrics)})


def test_table_marks_pass_and_fail_from_hand_made_numbers():
    result = _result({
        "at": Metric(0.95, 10, Target(">=", 0.95)),
        "below": Metric(0.9499, 10, Target(">=", 0.95)),
        "above": Metric(1.0, 10, Target(">=", 0.95)),
        "max_ok": Metric(2.0, 5, Target("<=", 3.0)),
        "max_bad": Metric(3.5, 5, Target("<=", 3.0)),
        "flag_ok": Metric(True, 4, Target("==", True)),
        "flag_bad": Metric(False, 4, Target("==", True)),
        "empty": Metric(None, 0, Target(">=", 0.5)),
        "nan": Metric(math.nan, 0, Target(">=", 0.5)),
        "info": Metric(0.1, 3),
    })
    rows = {r["metric"]: r for r in metric_rows(result)}
    assert {k: rows[f"s.{k}"]["result"] for k in ("at", "below", "above", "max_ok", "max_bad", "flag_ok",
                                                   "flag_bad", "empty", "nan", "info")} == {
        "at": "pass", "below": "fail", "above": "pass", "max_ok": "pass", "max_bad": "fail",
        "flag_ok": "pass", "flag_bad": "fail", "empty": "—", "nan": "—", "info": "—"}
    assert rows["s.below"]["n"] == 10 and rows["s.below"]["target"] == ">= 0.95"
    text = markdown_report(result)
    assert "| s.below | 0.950 | >= 0.95 | fail | 10 |" in text
    assert "| s.at | 0.950 | >= 0.95 | pass | 10 |" in text
    assert "3 target(s) not met" in text and not result.passed
    assert _result({"a": Metric(0.99, 1, Target(">=", 0.95))}).passed


def test_helpers():
    assert box_iou((0, 0, 10), (0, 0, 10)) == 1.0
    assert box_iou((0, 0, 10), (10, 0, 10)) == 0.0
    assert box_iou((0, 0, 10), (5, 0, 10)) == pytest.approx(50 / 150)
    img = np.zeros((64, 64, 3), np.uint8)
    mask = np.ones((64, 64), bool)
    assert capped_psnr(img, img, mask) == 100.0 and capped_psnr(img, img, ~mask) is None
    assert capped_psnr(img, img + 1, mask) == pytest.approx(20 * math.log10(255))
    small = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    big = to_canvas(small)
    assert big.shape == (64, 64, 3) and (big[::2, ::2] == small).all()
    assert to_canvas(big) is big


def test_cli_bench_world_writes_json_and_markdown(tiny_model_dir, tmp_path, capsys, one_thread):
    out = tmp_path / "bench"
    code, stdout, err = run(capsys, "bench", "world", "--only", "generation", "--n", 2, "--steps", STEPS,
                            "--model", tiny_model_dir, "--out", out, "--quiet")
    assert code == 0, err
    rec = json.loads((out / "bench-world.json").read_text())
    assert list(rec["sections"]) == ["generation"]
    assert rec["sections"]["generation"]["metrics"]["colour_accuracy"]["n"] == 2
    assert rec["settings"]["num_inference_steps"] == STEPS and rec["complete"] is True
    md = (out / "bench-world.md").read_text()
    assert "| metric | value | target | pass/fail | n |" in md and "generation.colour_accuracy" in md
    assert (out / "bench-world.png").is_file()
    assert "wrote" in stdout


@pytest.mark.parametrize("argv", [["--n", 0], ["--only", "nonsense"], ["--n", 1, "--examples", -1]])
def test_cli_bench_world_bad_input_is_one_error_line(argv, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code, _, err = run(capsys, "bench", "world", *argv, "--model", tiny_model_dir, "--out", out, "--quiet")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert not out.exists()


def test_results_are_handed_over_after_each_section_so_a_later_failure_loses_nothing(tiny_model, one_thread,
                                                                                        monkeypatch):
    from promptedit.bench import world

    def broken(model, _run=None, **ns):
        raise RuntimeError("section exploded")

    monkeypatch.setitem(world.SECTION_FUNCTIONS, "p2p_colour_swap", (broken, ("n",)))
    seen = []
    with pytest.raises(RuntimeError, match="exploded"):
        world.run_world_bench(tiny_model, n=1, sections=["generation", "p2p_colour_swap"], steps=STEPS,
                              progress=False, on_section=seen.append)
    assert [list(r.sections) for r in seen] == [["generation"]]
    assert "generation.colour_accuracy" in world.markdown_report(seen[0])


def test_object_sizes_split_at_a_tenth_and_a_quarter_of_the_image():
    from promptedit.bench.world import size_bin

    mask = np.zeros((64, 64), bool)
    for rows, size in ((6, "small"), (7, "medium"), (15, "medium"), (16, "large"), (64, "large")):
        mask[:] = False
        mask[:rows] = True  # rows / 64 of the image: 6 -> 9.4 %, 7 -> 10.9 %, 15 -> 23.4 %, 16 -> 25 %
        assert size_bin(mask) == size, rows


FLOW_REAL_KEYS = {f"{m}_{k}" for m in ("flowedit", "uniedit")
                  for k in ("edit_colour_accuracy", "edit_background_psnr", "seconds")}
FLOW_MASK_KEYS = {f"{m}_{k}" for m in ("kv_edit", "kv_edit_true_mask")
                  for k in ("background_psnr", "new_colour_accuracy", "edit_seconds")}


def test_real_images_on_a_flow_model_also_measure_flowedit_uniedit_and_the_exact_inversions_targets(flux_model,
                                                                                                  one_thread):
    """On a flow model the colour swap of real_images is also made by FlowEdit and UniEdit-Flow from the rendered
    scene (one call each, no inversion), measured as the inversions' edits are; the exact (direct) inversion carries
    issue 32's targets. A DDIM model has none of these keys (the EXPECTED sets above) and no such targets."""
    from promptedit.bench.world import bench_real_images, velocity_methods

    assert velocity_methods(flux_model) == ("flowedit", "uniedit")
    section = bench_real_images(flux_model, n=2, steps=STEPS, inner_steps=1, examples=1)
    assert FLOW_REAL_KEYS <= set(section.metrics)
    assert section.units == (3 * len(real_methods(flux_model)) + 2) * 2
    for m in ("flowedit", "uniedit"):
        per_item = [row["methods"][m] for row in section.items]
        assert section.metrics[f"{m}_edit_colour_accuracy"].n == 2
        assert section.metrics[f"{m}_edit_colour_accuracy"].value == np.mean([r["edit_colour_right"] for r in per_item])
        assert section.metrics[f"{m}_edit_background_psnr"].value == pytest.approx(
            np.mean([r["edit_background_psnr"] for r in per_item]))
        assert section.metrics[f"{m}_seconds"].value > 0
    assert [label for label, _ in section.examples[0].images[-2:]] == ["flowedit edit", "uniedit edit"]
    targets = {k: str(section.metrics[f"direct_{k}"].target) for k in
               ("reconstruction_psnr", "edit_colour_accuracy", "edit_background_psnr")}
    assert targets == {"reconstruction_psnr": ">= 35", "edit_colour_accuracy": ">= 0.9",
                       "edit_background_psnr": ">= 32"}
    text = markdown_report(BenchResult({"model": "tiny-flux", "seed": 0, "num_inference_steps": STEPS,
                                        "guidance_scale": 1.0, "held_out_seed": 1, "resized_from": None,
                                        "sampler": "flow-match-euler"}, {"real_images": section}))
    assert "flow-match-euler steps" in text and "| real_images.flowedit_edit_background_psnr |" in text


def test_masks_on_a_flow_transformer_also_measure_kv_edit_in_the_instant_and_the_true_mask(flux_model, one_thread):
    """KV-Edit beside InstDiffEdit on the same scenes: in its instant mask and in the true one (two calls more per
    scene; no DiffEdit on FLUX.1), background PSNR against the true target and the new colour; the instant mask
    takes issue 32's IoU target for joint attention. A UNet model gets none of these rows."""
    from promptedit.bench.world import bench_masks

    section = bench_masks(flux_model, n=1, steps=STEPS, examples=0)
    assert FLOW_MASK_KEYS <= set(section.metrics) and not FLOW_MASK_KEYS & set(EXPECTED["masks"])
    assert section.units == 5  # instant, instant_authors, instant_1step, kv_edit, kv_edit_true_mask
    assert all(section.metrics[k].n == 1 for k in FLOW_MASK_KEYS)
    item = section.items[0]
    assert item["kv_edit"]["mask_seconds"] > 0 and item["kv_edit_true_mask"]["mask_seconds"] is None
    assert item["kv_edit_true_mask"]["mask_iou"] > 0.8  # the true mask itself, at the model's 32 px and back
    assert str(section.metrics["instant_mask_iou"].target) == ">= 0.85"


def test_masks_on_sd3_take_the_joint_attention_target_but_no_kv_edit(one_thread):
    """SD3 is a flow MM-DiT whose backbone cannot run KV-Edit: its instant masks take issue 32's IoU target for
    joint attention, and the section has no KV-Edit rows (nor calls)."""
    from promptedit.bench.world import bench_masks
    from promptedit.testing import TINY_MODELS

    section = bench_masks(TINY_MODELS["sd3"](0), n=1, steps=STEPS, examples=0)
    assert not FLOW_MASK_KEYS & set(section.metrics) and section.units == 3
    assert str(section.metrics["instant_mask_iou"].target) == ">= 0.85"


@pytest.mark.parametrize("name", ["p2p_colour_swap", "p2p_background_swap", "p2p_shape_swap"])
def test_word_swaps_on_a_transformer_are_also_measured_with_value_injection(name, flux_model, one_thread):
    """On an MM-DiT the word swap is also made with value injection (RF-Solver-Edit's share of the steps, at least
    one; the model's default blocks) on the same items and measured by the same rules (``values_…``; the source's
    and the baseline's figures are not repeated): one edit more per item. A UNet gets none (EXPECTED above)."""
    from promptedit.bench import world

    fn = world.SECTION_FUNCTIONS[name][0]
    section = fn(flux_model, n=2, steps=STEPS, examples=1)
    plain = {k for k in EXPECTED[name] if not k.startswith(("baseline", "source"))}
    assert set(section.metrics) == EXPECTED[name] | {f"values_{k}" for k in plain}
    assert all(section.metrics[f"values_{k}"].n == section.metrics[k].n == 2 for k in plain)
    assert section.units == (3 if name == "p2p_colour_swap" else 2) * 2  # + the no-control baseline of colour
    assert all("values" in item and "mask_iou" in item["values"] for item in section.items)
    assert section.metrics["values_mask_iou_mean" if "mask_iou_mean" in plain else "values_box_iou_mean"].value \
        == pytest.approx(np.mean([item["values"]["mask_iou" if "mask_iou_mean" in plain else "m_box_iou"]
                                  for item in section.items]))
    tiles = dict(section.examples[0].images)
    assert not np.array_equal(tiles["P2P + values"], tiles["P2P edit"])  # the injection took effect
    assert world.value_window(flux_model, STEPS) == 0.5 and world.value_window(flux_model, 30) == pytest.approx(2 / 15)
