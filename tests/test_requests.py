"""The request types (promptedit.requests), checked on construction with one-line ParameterErrors; batch's items
taken to plans with their command's checks; no CLI import below the front-ends. (Requests run on a model, and the
one writer of result folders: tests/test_cli.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from promptedit.errors import ParameterError
from promptedit.requests import (
    EditRequest,
    GenerateRequest,
    InstantOptions,
    InvertRequest,
    KVEditOptions,
    MaskEditRequest,
    SamplingOptions,
)
from promptedit.control.edit_spec import EditSpec

pytestmark = pytest.mark.unit

IMAGE = np.zeros((32, 32, 3), np.uint8)  # (H, W, 3) uint8


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and isinstance(excinfo.value, ValueError)
    return message


@pytest.mark.parametrize("kwargs, words", [
    (dict(steps=0), "steps must be in [1, 1000], got 0"),
    (dict(steps=2.5), "steps must be a whole number"),
    (dict(steps=True), "steps must be a whole number"),
    (dict(guidance=float("nan")), "guidance must be a finite number"),
    (dict(guidance=-1.0), "guidance must be in [0, None]"),
    (dict(seed=-1), "seed must be in [0, "),
    (dict(height=0), "height must be at least 1, got 0"),
    (dict(width="64"), "width must be a whole number"),
    (dict(allow_large="yes"), "allow_large must be true or false"),
])
def test_sampling_options_refuse_bad_values_in_one_line(kwargs, words):
    with pytest.raises(ParameterError) as e:
        SamplingOptions(**kwargs)
    assert words in one_line(e)
    assert SamplingOptions().is_default and not SamplingOptions(steps=2).is_default


def test_instant_options_refuse_bad_values_and_give_instdiffedits_keywords():
    for kwargs, words in [(dict(anchor="left"), "anchor must be one of source, edited, start-token"),
                          (dict(threshold=1.0), "threshold must be in [0, 1)"),
                          (dict(smooth_times=-1), "smooth must be at least 0"),
                          (dict(guided_filter_radius=65), "guided-filter radius must be in [0, 64]"),
                          (dict(region_peak=2), "region peak must be in [0, 1]"),
                          (dict(object_threshold=float("inf")), "object threshold must be a finite number"),
                          (dict(num_seeds=0), "seeds must be at least 1")]:
        with pytest.raises(ParameterError) as e:
            InstantOptions(**kwargs)
        assert words in one_line(e), kwargs
    assert InstantOptions(num_seeds=3).kwargs()["num_seeds"] == 3 and "anchor" in InstantOptions().kwargs()


def test_generate_and_invert_requests_refuse_bad_values():
    with pytest.raises(ParameterError) as e:
        GenerateRequest(None)
    assert "prompt must be a prompt" in one_line(e)
    for kwargs, words in [(dict(image=np.zeros((32, 32), np.uint8)), "(H, W, 3) uint8 array"),
                          (dict(image=IMAGE.astype(float)), "(H, W, 3) uint8 array"),
                          (dict(method="vae"), "inversion method must be one of null-text"),
                          (dict(inner_steps=0), "inner_steps must be at least 1"),
                          (dict(sampling=SamplingOptions(seed=1)), "a seed is not used by an inversion")]:
        with pytest.raises(ParameterError) as e:
            InvertRequest(**{"image": IMAGE, "prompt": "a cat", **kwargs})
        assert words in one_line(e), kwargs


def test_edit_request_refuses_what_its_start_does_not_take():
    spec = EditSpec("a cat", ("a dog",))
    invert = InvertRequest(IMAGE, "a cat")
    for kwargs, words in [(dict(spec="a cat"), "takes an EditSpec"),
                          (dict(invert=invert, sampling=SamplingOptions(steps=3)), "give them to the inversion"),
                          (dict(edit_null="all"), "edit_null applies to edits of a real image"),
                          (dict(invert=invert, edit_null="none"), "edit_null must be one of all, source"),
                          (dict(invert="photo.png"), "invert must be an InvertRequest"),
                          (dict(inversion=b"bytes"), "inversion must be an Inversion"),
                          (dict(save_attention=1), "save_attention must be true or false")]:
        with pytest.raises(ParameterError) as e:
            EditRequest(**{"spec": spec, **kwargs})
        assert words in one_line(e), kwargs
    assert EditRequest(spec, invert=invert, edit_null="source").real and not EditRequest(spec).real


def test_mask_edit_request_refuses_what_its_method_does_not_take():
    mask = np.ones((32, 32), bool)
    for kwargs, words in [(dict(method="lasso"), "mask-edit method must be one of instant, diffedit, mask"),
                          (dict(mask=mask), "a user mask is method 'mask'"),
                          (dict(method="mask"), "a user mask is method 'mask'"),
                          (dict(method="mask", mask=np.ones(3, bool)), "the mask must be an (H, W) array"),
                          (dict(strength=0.0), "strength must be in (0, 1]"),
                          (dict(method="diffedit", instant=InstantOptions(num_seeds=2)),
                           "not used with method diffedit"),
                          (dict(target=3), "target must be a prompt"),
                          (dict(method="kv-edit", mask=mask, instant=InstantOptions(threshold=0.3)),
                           "not used with method kv-edit and a mask"),
                          (dict(method="kv-edit", mask=mask, strength=0.3), "strength is not used by kv-edit"),
                          (dict(kv=KVEditOptions(re_init=True)), "KV-Edit options are not used with method instant"),
                          ]:
        with pytest.raises(ParameterError) as e:
            MaskEditRequest(**{"source": "a cat", "target": "a dog", "image": IMAGE, **kwargs})
        assert words in one_line(e), kwargs
    for kwargs, words in [(dict(skip_step=-1), "skip step must be at least 0"),
                          (dict(inversion_guidance=float("nan")), "inversion guidance must be a finite number"),
                          (dict(attn_mask=1), "attn_mask must be true or false")]:
        with pytest.raises(ParameterError) as e:
            KVEditOptions(**kwargs)
        assert words in one_line(e), kwargs
    # KV-Edit takes a mask, or makes an instant one with the instant options
    MaskEditRequest("a cat", "a dog", image=IMAGE, method="kv-edit", mask=mask, kv=KVEditOptions(skip_step=3))
    MaskEditRequest("a cat", "a dog", image=IMAGE, method="kv-edit", instant=InstantOptions(threshold=0.3),
                    strength=0.3)


def test_batch_and_the_benchmarks_import_no_cli_module():
    """The arrow runs one way: batch, the requests, the shared options, bench world and benchmarks/ import nothing
    from promptedit.cli (batch took each item through the edit command's click parsing and code)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [root / "src/promptedit" / name for name in ("batch.py", "requests.py", "options.py", "bench/world.py")]
    files += sorted((root / "benchmarks").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith(("promptedit.cli", ".cli", "..cli")) or n == "." and "cli" in
                           [a.name for a in node.names] for n in names), f"{path.name} imports {names}"


def test_a_manifest_item_becomes_its_plan_with_the_commands_checks(tmp_path):
    """batch.item_plan converts an item's options by their command's own types and defaults, with its one-line
    errors: an unknown option (and the name meant), a value the option refuses, a flag given a value, a missing
    option, an option the workflow would ignore."""
    from promptedit.batch import item_from_options, item_plan
    from promptedit.errors import PromptEditError

    image = tmp_path / "photo.png"
    image.write_bytes(b"")  # checked to exist only: nothing is read before the model loads

    def plan(**options):
        return item_plan(item_from_options("x", options), tmp_path / "out")

    p = plan(source="a cat", target="a dog", steps=3, **{"cross-replace": [0.2, 0.6], "reweight": {"dog": 2}})
    assert (p.sampling.steps, p.spec.cross_replace, p.spec.reweight) == (3, (0.2, 0.6), {"dog": 2.0})
    assert p.options["inner_steps"] == 10 and p.options["save_attention"] is False  # the command's defaults
    mask = tmp_path / "mask.png"
    mask.write_bytes(b"")
    p = plan(source="a cat", target="a dog", method="kv-edit", image=str(image), mask=str(mask),
             **{"skip-step": 2, "re-init": True})
    assert (p.method, p.mask_file) == ("kv-edit", str(mask))
    assert p.kv == KVEditOptions(skip_step=2, re_init=True) and p.instant == InstantOptions()
    for options, words in [(dict(source="a cat", target="a dog", stpes=3), "no option of edit is called stpes "
                                                                             "(did you mean steps?)"),
                           (dict(source="a cat", target="a dog", steps=True), "Invalid value for '--steps': 'true' "
                                                                              "is not a valid integer"),
                           (dict(source="a cat", target="a dog", steps=0), "0 is not in the range 1<=x<=1000"),
                           (dict(source="a cat", target="a dog", **{"save-attention": "yes"}),
                            "save-attention is a flag: give save-attention: true or false"),
                           (dict(source="a cat", method="instant"), "Missing option '--target'"),
                           (dict(source="a cat", target="a dog", image=str(image), seed=3),
                            "--seed is not used with --image"),
                           (dict(source="a cat", target="a dog", method="instant", **{"attn-mask": True}),
                            "--attn-mask is not used with --method instant (only with kv-edit)")]:
        with pytest.raises(PromptEditError) as e:
            plan(**options)
        assert words in one_line(e), options


def test_sampling_options_are_taken_out_of_a_front_ends_options():
    """SamplingOptions.take: the fields it has, by name, taken out of the dict; the rest stays the caller's."""
    options = {"steps": 4, "seed": 2, "mode": "refine", "threshold": 0.3}
    assert SamplingOptions.take(options) == SamplingOptions(steps=4, seed=2)
    assert options == {"mode": "refine", "threshold": 0.3}


def test_flow_edit_request_refuses_what_its_method_does_not_take():
    from promptedit.requests import FlowEditRequest, FlowOptions

    assert FlowEditRequest(IMAGE, "a", "b").method == "flowedit"
    assert FlowOptions(n_max=3, alpha=0.5).given() == {"n_max": 3, "alpha": 0.5}
    cases = [
        (dict(method="flow"), "flow-edit method must be one of flowedit, uniedit"),
        (dict(options=FlowOptions(alpha=0.5)), "alpha is not used by flowedit"),
        (dict(method="uniedit", options=FlowOptions(n_max=3, n_avg=2)), "n_max, n_avg are not used by uniedit"),
        (dict(method="uniedit", sampling=SamplingOptions(seed=1)), "a seed is not used by uniedit"),
        (dict(sampling=SamplingOptions(negative_prompt="x")), "flowedit takes no negative prompt"),
        (dict(options={"n_max": 3}), "options must be FlowOptions"),
        (dict(image=IMAGE[..., 0]), "the image to edit must be an \\(H, W, 3\\) uint8 array"),
    ]
    for kwargs, words in cases:
        with pytest.raises(ParameterError, match=words) as e:
            FlowEditRequest(**{"image": IMAGE, "source": "a", "target": "b", **kwargs})
        one_line(e)
    for kwargs, words in ((dict(n_max=0), "n-max must be at least 1"), (dict(n_min=-1), "n-min must be at least 0"),
                          (dict(alpha=0), "alpha must be in \\(0, 1\\]"), (dict(omega=float("inf")), "omega must be a "
                                                                                               "finite number")):
        with pytest.raises(ParameterError, match=words) as e:
            FlowOptions(**kwargs)
        one_line(e)
