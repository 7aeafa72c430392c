"""Batch runs: a JSONL manifest and a PIE-format set, resumed after a SIGKILL, on one process and on Ray;
`world pie` and `evaluate` on the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from helpers import run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("manifest")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "photo.png")
    lines = [
        {"id": "gen", "source": "a photo of a cat", "target": "a photo of a dog", "seed": 1, "steps": 2},
        {"id": "syntax", "prompt": "a photo of a [cat:dog:0.5]", "steps": 2},
        {"id": "real", "image": "photo.png", "source": "a photo of a cat", "target": "a photo of a dog",
         "method": "direct", "steps": 2, "cross-replace": [0.2, 0.8], "reweight": {"dog": 2}},
        {"id": "masked", "image": "photo.png", "source": "a photo of a cat", "target": "a photo of a dog",
         "method": "instant", "steps": 4, "seeds": 2},
        {"id": "badword", "source": "a photo of a cat", "target": "a photo of a dog", "blend": ["horse"], "steps": 2},
        {"id": "badopt", "source": "a photo of a cat", "target": "a photo of a dog", "frobnicate": 1},
        {"id": "../escape", "source": "a photo of a cat", "target": "a photo of a dog"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n"
    (folder / "edits.jsonl").write_text(text)
    return folder / "edits.jsonl"


def test_a_manifest_runs_fails_per_item_and_resumes(manifest, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "batch", manifest, "--out", out, "--model", tiny_model_dir, "--quiet",
                            "--threads", 1)
    assert code == 3, err  # some item failed: not 0, and not 2 (the batch itself was fine)
    assert "4 done, 0 skipped, 4 failed of 8" in stdout
    reasons = [line for line in err.splitlines() if line.startswith("failed ")]  # each as it happens
    assert len(reasons) == 4 and "failed badword: " in err and "'horse'" in err and "Traceback" not in err
    for item, files in (("gen", ["source.png", "edited.png"]), ("syntax", ["edited.png"]),
                        ("real", ["input.png", "reconstruction.png", "inversion.safetensors"]),
                        ("masked", ["mask.png", "edited.png"])):
        for name in files + ["result.json", "grid.png"]:
            assert (out / item / name).is_file(), (item, name)
    rec = json.loads((out / "real" / "result.json").read_text())
    assert rec["command"] == "batch edit" and rec["method"] == "direct" and rec["batch"]["id"] == "real"
    assert rec["spec"]["cross_replace"] == [0.2, 0.8] and rec["spec"]["reweight"] == {"dog": 2.0}
    assert json.loads((out / "syntax" / "result.json").read_text())["one_prompt"]["syntax"] == "a1111"
    failures = {f["id"]: f["error"] for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    assert "'horse'" in failures["badword"] and "frobnicate" in failures["badopt"]
    assert "not JSON" in failures["line-8"] and "letters, digits" in failures["line-7"]
    assert all("\n" not in e for e in failures.values())
    summary = json.loads((out / "batch.json").read_text())
    assert (summary["done"], summary["failed"], summary["engine"]) == (4, 4, "in-process")
    # the same command again: nothing done twice; a changed option reruns that item only
    stamp = (out / "gen" / "result.json").stat().st_mtime_ns
    code, stdout, _ = run(capsys, "batch", manifest, "--out", out, "--model", tiny_model_dir, "--quiet", "--threads", 1)
    assert code == 3 and "0 done, 4 skipped, 4 failed" in stdout
    assert (out / "gen" / "result.json").stat().st_mtime_ns == stamp
    changed = manifest.parent / "changed.jsonl"  # beside it: the image paths resolve to the same files
    changed.write_text(manifest.read_text().replace('"seed": 1, "steps": 2', '"seed": 1, "steps": 3'))
    real_stamp = (out / "real" / "result.json").stat().st_mtime_ns
    code, stdout, _ = run(capsys, "batch", changed, "--out", out, "--model", tiny_model_dir, "--quiet", "--threads", 1)
    assert code == 3 and "1 done, 3 skipped" in stdout
    assert (out / "gen" / "result.json").stat().st_mtime_ns != stamp
    assert (out / "real" / "result.json").stat().st_mtime_ns == real_stamp


def test_items_are_keyed_by_the_model_weights_not_its_folder(tiny_model_dir, tmp_path, capsys):
    """A run resumes with the same model moved to another folder; a model with other weights reruns every item."""
    import shutil

    from promptedit.testing import save_model, tiny_components

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "gen", "source": "a photo of a cat", "target": "a photo of a dog",
                                    "seed": 1, "steps": 2}))
    out = tmp_path / "run"
    assert run(capsys, "batch", manifest, "--out", out, "--model", tiny_model_dir, "--quiet", "--threads", 1)[0] == 0
    moved = shutil.copytree(tiny_model_dir, tmp_path / "moved")
    code, stdout, _ = run(capsys, "batch", manifest, "--out", out, "--model", moved, "--quiet", "--threads", 1)
    assert code == 0 and "0 done, 1 skipped" in stdout
    other = save_model(tiny_components(1), tmp_path / "other")  # the same architecture, other weights
    code, stdout, _ = run(capsys, "batch", manifest, "--out", out, "--model", other, "--quiet", "--threads", 1)
    assert code == 0 and "1 done, 0 skipped" in stdout


def test_set_turns_flag_options_on_and_passes_other_values_as_given(tiny_model_dir, tmp_path, capsys):
    """`--set NAME=true` turns a flag option of `edit` on; for an option that takes a value, "yes" stays the
    value (and is refused as that option refuses it), never read as a bare flag."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "gen", "source": "a photo of a cat", "target": "a photo of a dog",
                                    "steps": 2}))
    code, stdout, _ = run(capsys, "batch", manifest, "--out", tmp_path / "a", "--model", tiny_model_dir, "--quiet",
                          "--threads", 1, "--set", "save-attention=true")
    assert code == 0 and "1 done" in stdout and (tmp_path / "a" / "gen" / "attention.png").is_file()
    code, stdout, err = run(capsys, "batch", manifest, "--out", tmp_path / "b", "--model", tiny_model_dir,
                            "--quiet", "--threads", 1, "--set", "seed=yes")
    assert code == 2 and "--set seed: 'yes' is not a valid integer" in err  # once, for the whole batch
    assert not (tmp_path / "b").exists()
    # the same in a manifest's JSON: true turns a flag on, and is a value for any other option
    manifest.write_text("\n".join(json.dumps({"id": i, "source": "a photo of a cat", "target": "a photo of a dog",
                                              "steps": 2, **extra})
                                  for i, extra in (("on", {"save-attention": True}), ("off", {"save-attention": False}),
                                                   ("seed", {"seed": True}))))
    code, stdout, _ = run(capsys, "batch", manifest, "--out", tmp_path / "c", "--model", tiny_model_dir, "--quiet",
                          "--threads", 1)
    assert code == 3 and "2 done, 0 skipped, 1 failed" in stdout
    assert (tmp_path / "c" / "on" / "attention.png").is_file()
    assert not (tmp_path / "c" / "off" / "attention.png").exists()
    assert "'true' is not a valid integer" in (tmp_path / "c" / "failures.jsonl").read_text()


def test_batch_help_lists_a_manifest_items_keys(capsys):
    """`batch --help` lists the keys a JSONL item may have (they had been in a docstring only), read from the code
    that takes them, and its example line is an item the batch accepts."""
    import re

    from promptedit.batch import item_from_options

    code, out, _ = run(capsys, "batch", "--help")
    assert code == 0
    text = " ".join(out.split()).replace("- ", "-")  # unwrapped (click breaks lines after hyphens)
    keys = text[text.index("A JSONL item's keys"):]
    for key in ("id (", "method (p2p, null-text", "targets (", "source", "prompt", "image", "inversion", "mask",
                "cross-replace", "no-blend-swapped", "reweight", "blend", "edit-null", "seeds", "anchor",
                "strength", "inpaint-model", "steps", "seed"):
        assert key in keys, key
    assert not re.search(r"(?<![\w-])(out|model|device|threads|quiet),", keys)  # the batch sets those
    example = json.loads(re.search(r"An example line: (\{.*\})", keys).group(1))
    item = item_from_options(example.pop("id"), example)
    assert item.command == "edit" and "--cross-replace" in item.argv


def test_batch_bad_input_is_one_line(manifest, tiny_model_dir, tmp_path, capsys):
    """Mistakes of the batch itself, the options every item shares among them, fail it once, up front (exit 2,
    before any item runs or the output folder is made), not as a failure of each item."""
    (tmp_path / "empty.jsonl").write_text("\n")
    for argv, message in (([tmp_path / "nope.jsonl"], "not found"), ([tmp_path / "empty.jsonl"], "no items"),
                          ([manifest, "--layout", "pie"], "PIE-Bench folder"),
                          ([manifest, "--workers", 2], "for --ray"), ([tmp_path], "not a PIE-Bench folder"),
                          ([manifest, "--set", "model=/etc"], "--set model cannot be set for the items: give batch "
                                                              "--model"),
                          ([manifest, "--set", "id=x"], "--set id cannot be set"),
                          ([manifest, "--set", "frobnicate=1"], "--set frobnicate: no option of edit or mask-edit"),
                          ([manifest, "--set", "blend-treshold=0.3"], "did you mean blend-threshold?"),
                          ([manifest, "--set", "steps=0"], "--set steps: 0 is not in the range"),
                          ([manifest, "--set", "guidance=nan"], "--set guidance: 'nan' is not a finite number"),
                          ([manifest, "--set", "mode=swap"], "--set mode: 'swap' is not one of"),
                          ([manifest, "--set", "save-attention=maybe"], "--set save-attention is a flag"),
                          ([manifest, "--set", "method=magic"], "--set method must be one of"),
                          ([manifest, "--cross-replace", "0.2,0.4,0.6"], "--set cross-replace must be F or START,END")):
        code, _, err = run(capsys, "batch", *argv, "--out", tmp_path / "o", "--model", tiny_model_dir, "--quiet")
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
        assert not (tmp_path / "o").exists()


def test_strict_stops_at_the_first_failure(tiny_model_dir, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"id": i, "source": "a photo of a cat", "target": "a photo of a dog",
                                              "steps": 2, **extra})
                                  for i, extra in (("a", {}), ("bad", {"blend": ["horse"]}), ("c", {}))))
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "batch", manifest, "--out", out, "--model", tiny_model_dir, "--quiet",
                            "--threads", 1, "--strict")
    assert code == 3 and "1 done, 0 skipped, 1 failed of 2" in stdout and "--strict), 1 not run" in stdout
    assert "failed bad: " in err and "'horse'" in err
    assert (out / "a" / "result.json").is_file() and not (out / "c").exists()
    assert json.loads((out / "batch.json").read_text())["not_run"] == 1


def test_failures_are_appended_not_rewritten(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """failures.jsonl grows by a line a failure (it was rewritten whole after each: 20,000 failing items took
    552 s); each reason is printed as it happens."""
    from promptedit.outputs import files as outputs

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("not json\n" * 2000)
    real, rewrites = outputs._atomic_write, []

    def atomic_write(path, write):
        rewrites.append(path.name)
        real(path, write)

    monkeypatch.setattr(outputs, "_atomic_write", atomic_write)
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "batch", manifest, "--out", out, "--model", tiny_model_dir, "--threads", 1)
    assert code == 3 and "0 done, 0 skipped, 2000 failed of 2000" in stdout
    assert rewrites.count("failures.jsonl") <= 1  # the empty file a run starts with, then appended to
    assert rewrites.count("run.json") <= 10  # at the start, at most once a second, at the end (not per outcome)
    assert set(json.loads((out / "run.json").read_text())["items"].values()) == {"failed"}
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == [f"line-{n}" for n in range(1, 2001)]
    assert sum(line.startswith("failed line-") for line in err.splitlines()) == 2000
    # a second run starts its own list
    manifest.write_text("not json\n")
    assert run(capsys, "batch", manifest, "--out", out, "--model", tiny_model_dir, "--quiet", "--threads", 1)[0] == 3
    assert len((out / "failures.jsonl").read_text().splitlines()) == 1


def test_a_failed_item_leaves_no_file_and_the_others_run(tiny_model_dir, tmp_path, capsys, disk_full_at):
    """A disk that refuses the second file of the second item: that item fails with the folder named, keeps none
    of its files; the first and third are complete."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"id": i, "source": "a photo of a cat", "target": "a photo of a dog",
                                              "steps": 2}) for i in ("a", "b", "c")))
    out = tmp_path / "run"
    disk_full_at(1, inside=out / "b")  # b's second file
    code, stdout, err = run(capsys, "batch", manifest, "--out", out, "--model", tiny_model_dir, "--quiet",
                            "--threads", 1)
    assert code == 3 and "2 done, 0 skipped, 1 failed" in stdout
    assert f"failed b: cannot write to {out / 'b'}: No space left on device" in err
    assert not (out / "b").exists()
    for item in ("a", "c"):
        assert sorted(p.name for p in (out / item).iterdir()) == ["edited.png", "grid.png", "result.json",
                                                                 "source.png"]


def tiny_pie(folder, *keys):
    """A PIE-Bench folder of one 32 x 32 image, edited once under each key."""
    (folder / "annotation_images").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "annotation_images" / "x.png")
    entry = {"image_path": "x.png", "original_prompt": "a photo of a [cat]", "editing_prompt": "a photo of a [dog]",
             "editing_type_id": "1", "blended_word": "cat dog", "mask": []}
    (folder / "mapping_file.json").write_text(json.dumps({key: entry for key in keys}))
    return folder


def test_an_item_whose_copy_in_pie_layout_failed_is_redone(tiny_model_dir, tmp_path, capsys, disk_full_at):
    data, out = tiny_pie(tmp_path / "pie", "a1"), tmp_path / "run"
    argv = ["batch", data, "--out", out, "--model", tiny_model_dir, "--method", "ddim", "--steps", 2, "--layout",
            "pie", "--quiet", "--threads", 1]
    copy = out / "pie" / "ddim" / "annotation_images" / "x.png"
    disk_full_at(0, inside=out / "pie")  # its copy in PIE's layout
    code, stdout, err = run(capsys, *argv)
    assert code == 3 and "1 failed" in stdout and "No space left on device" in err and not copy.exists()
    assert (out / "a1" / "result.json").is_file()  # the item's own set is complete: only its copy failed
    code, stdout, err = run(capsys, *argv)  # not skipped as done: its copy is missing
    assert code == 0 and "1 done, 0 skipped" in stdout and copy.is_file()
    assert "0 done, 1 skipped" in run(capsys, *argv)[1]


def test_manifest_ids_and_encoding(tmp_path):
    """A byte-order mark before line 1 is no part of it; ids that differ only by case would share one folder on
    a case-insensitive file system: the second is refused, naming both."""
    from promptedit.batch import read_jsonl

    manifest = tmp_path / "m.jsonl"
    lines = [{"id": i, "source": "a photo of a cat", "target": "a photo of a dog"} for i in ("cat", "dog", "Cat",
                                                                                            "dog")]
    manifest.write_bytes(b"\xef\xbb\xbf" + "\n".join(map(json.dumps, lines)).encode())
    items = read_jsonl(manifest)
    assert [i.error for i in items[:2]] == [None, None] and items[0].id == "cat"
    assert items[2].error == ("line 3: id 'Cat' and id 'cat' (line 1) differ only by case: they would share one "
                              "folder on a case-insensitive file system")
    assert items[3].error == "line 4: id 'dog' was used before (line 2)"
    assert items[2].id == "line-3" and items[3].id == "line-4"
    # a PIE-Bench folder's keys alike
    from promptedit.batch import read_pie_items

    items = read_pie_items(tiny_pie(tmp_path / "pie", "a1", "A1"))
    assert items[0].error is None and "id 'A1' and id 'a1' (entry a1) differ only by case" in items[1].error


def test_a_batch_killed_with_sigkill_loses_nothing_and_redoes_nothing(tiny_model_dir, tmp_path):
    """Kill the run after its first items are written; the rerun skips them (their files untouched) and does the
    rest."""
    lines = [{"id": f"item{i}", "source": "a photo of a cat", "target": "a photo of a dog", "seed": i, "steps": 3}
             for i in range(8)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(map(json.dumps, lines)))
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from promptedit.cli import main; sys.exit(main(sys.argv[1:]))",
           "batch", str(manifest), "--out", str(out), "--model", str(tiny_model_dir), "--quiet", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(out.glob("*/result.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    assert 2 <= len(finished) < 8, finished
    assert not list(out.rglob("*.part")) or all(p.name.startswith(".") for p in out.rglob("*.part"))
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{8 - len(finished)} done, {len(finished)} skipped, 0 failed" in done.stdout
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json") if p.parent.name in finished} == finished
    assert len(list(out.glob("*/edited.png"))) == 8


def test_world_pie_set_batch_in_pie_layout_and_evaluate(tiny_model_dir, tmp_path, capsys):
    data, out = tmp_path / "pie", tmp_path / "run"
    code, stdout, err = run(capsys, "world", "pie", "--out", data, "--n", 7)
    assert code == 0, err
    mapping = json.loads((data / "mapping_file.json").read_text())
    assert len(mapping) == 7 and {e["editing_type_id"] for e in mapping.values()} == set("1236789")
    code, stdout, err = run(capsys, "batch", data, "--out", out, "--model", tiny_model_dir, "--method", "ddim",
                            "--steps", 2, "--pie-blend", "--layout", "pie", "--quiet", "--threads", 1)
    assert code == 0, err
    assert "7 done" in stdout
    for key, entry in mapping.items():
        assert (out / key / "edited.png").is_file()
        assert (out / "pie" / "ddim" / "annotation_images" / entry["image_path"]).is_file()
    # the tiny model edits at 32 x 32, the set is 64 x 64: evaluated at the set's size, and the report says so
    code, stdout, err = run(capsys, "evaluate", out, "--data", data)
    assert code == 0, err
    assert "psnr_target" in stdout and "7 of 7 items;" in stdout
    assert "no CLIP" in err and "no DINO" in err  # the missing networks are named, nothing crashes
    report = json.loads((out / "evaluation.json").read_text())
    assert report["evaluated"] == 7 and (out / "evaluation.md").is_file() and (out / "evaluation.png").is_file()
    assert report["resized"] == 7 and "32x32 to 64x64 (Lanczos)" in (out / "evaluation.md").read_text()
    code, _, err = run(capsys, "evaluate", out / "pie" / "ddim", "--data", data, "--layout", "pie", "--out",
                       tmp_path / "again")
    assert code == 0, err
    assert json.loads((tmp_path / "again.json").read_text())["evaluated"] == 7
    # a rerun where every item fails leaves the earlier edited images in place: none of them is scored
    code, stdout, err = run(capsys, "batch", data, "--out", out, "--model", tiny_model_dir, "--method", "ddim",
                            "--steps", 2, "--pie-blend", "--layout", "pie", "--quiet", "--threads", 1,
                            "--set", "self-replace=7")
    assert "7 failed" in stdout and all((out / key / "edited.png").is_file() for key in mapping)
    for layout_args in ([out], [out / "pie" / "ddim", "--layout", "pie"]):
        code, _, err = run(capsys, "evaluate", *layout_args, "--data", data, "--out", tmp_path / "stale")
        assert code == 2 and err.count("\n") == 1 and "7 of 7 items failed in the latest run" in err, err


def _scored_ids(report_path):
    return {item for item in json.loads(report_path.read_text())["evaluated_ids"]}


def test_evaluate_scores_exactly_the_items_whose_latest_run_succeeded(tmp_path, capsys):
    """A run's record (run.json) says what became of each item in its latest run: edited images left by an
    earlier run of an item that failed, or that the latest run has not reached, are not scored; a run made on
    another data set with the same ids is refused; an older run without a record is scored with a warning."""
    from promptedit.batch import Outcome, RunRecord, read_pie_items
    from promptedit.cli.world import save_pie_set
    from promptedit.pie.data import fingerprint
    from promptedit.world.pie import make_pie_set

    data, other, out = tmp_path / "pie", tmp_path / "pie-seed1", tmp_path / "run"
    save_pie_set(make_pie_set(5, seed=0, verify=False), data)
    save_pie_set(make_pie_set(5, seed=1, verify=False), other)
    mapping = json.loads((data / "mapping_file.json").read_text())
    assert list(mapping) == list(json.loads((other / "mapping_file.json").read_text()))  # the same ids
    ids = list(mapping)
    for key, entry in mapping.items():  # every item has an edited image (its exact target) from some run
        (out / key).mkdir(parents=True)
        (out / key / "edited.png").write_bytes((data / "target_images" / entry["target_image_path"]).read_bytes())
    record = RunRecord(out, str(data), "pie", read_pie_items(data), fingerprint(data))
    for key, status in zip(ids, ["done", "skipped", "failed"]):  # ids[3:] still pending
        record.update(Outcome(key, status))
    record.flush()  # as batch does when its run ends or is interrupted
    code, stdout, err = run(capsys, "evaluate", out, "--data", data)
    assert code == 0, err
    assert _scored_ids(out / "evaluation.json") == {ids[0], ids[1]}
    assert "2 of 5 items, 1 failed, 2 not run" in stdout
    markdown = (out / "evaluation.md").read_text()
    assert "1 of 5 items failed in the latest run" in markdown and "2 of 5 items have no edited image" in markdown
    code, _, err = run(capsys, "evaluate", out, "--data", other, "--out", tmp_path / "other")
    assert code == 2 and err.count("\n") == 1 and "another data set" in err, err
    (out / "run.json").unlink()  # a run by an older promptedit: its failures.jsonl is all it says
    (out / "failures.jsonl").write_text(json.dumps({"id": ids[2], "error": "x"}) + "\n")
    code, _, err = run(capsys, "evaluate", out, "--data", other, "--out", tmp_path / "older")
    assert code == 0 and err.startswith("warning: ") and "no record of its latest run" in err, err
    assert _scored_ids(tmp_path / "older.json") == set(ids) - {ids[2]}


def test_ray_and_in_process_give_the_same_images(manifest, tiny_model_dir, tmp_path, capfd):
    """The same manifest and seeds on a local Ray cluster (2 workers, each with the model loaded once) and in
    this process, one thread each: identical images; Ray's own log lines stay out of a quiet run."""
    pytest.importorskip("ray")  # here, not at module level: there it skipped every batch test where Ray is absent
    here, there = tmp_path / "here", tmp_path / "ray"
    code, stdout, err = run(capfd, "batch", manifest, "--out", here, "--model", tiny_model_dir, "--quiet",
                            "--threads", 1)
    assert code == 3, err
    code, stdout, err = run(capfd, "batch", manifest, "--out", there, "--model", tiny_model_dir, "--quiet",
                            "--threads", 1, "--ray", "--workers", 2)
    assert code == 3, err
    assert "4 done, 0 skipped, 4 failed" in stdout and "(ray)" in stdout
    assert "execution finished" not in err and "Progress bars disabled" not in err, err  # capfd: Ray's handlers
    for item in ("gen", "syntax", "real", "masked"):
        a = np.asarray(Image.open(here / item / "edited.png"))
        b = np.asarray(Image.open(there / item / "edited.png"))
        assert np.array_equal(a, b), item
    failed = {json.loads(line)["id"] for line in (there / "failures.jsonl").read_text().splitlines()}
    assert failed == {"badword", "badopt", "line-7", "line-8"}
