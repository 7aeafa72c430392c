"""The benchmark scripts run from a checkout (on the tiny random model, minimal settings) and write their
tables: every case timed, ratios against the stated baseline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--model", "tiny",
                           "--repeats", "1", "--json", str(out), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def _rows(result: dict) -> dict:
    rows = {r["case"]: r for r in result["rows"]}
    assert all(r["seconds"] > 0 for r in rows.values())
    return rows


def test_p2p_benchmark_times_edits_against_plain_generation(tmp_path):
    rows = _rows(_run("p2p", "--steps", "2", "--cases", "loop,replace,explicit", tmp_path=tmp_path))
    assert set(rows) == {"plain (diffusers)", "loop (no control)", "edit: replace", "edit: replace, explicit probs"}
    assert rows["plain (diffusers)"]["ratio"] == pytest.approx(1.0)
    assert all("peak_mib" in r for r in rows.values())  # peak memory per case (CPU: resident-set growth)


def test_p2p_benchmark_refuses_unknown_cases(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "p2p.py"), "--cases", "nonsense"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "nonsense" in proc.stderr


def test_inversion_and_mask_benchmarks_run(tmp_path):
    inv = _rows(_run("inversion", "--steps", "2", "--images", "1", tmp_path=tmp_path))
    assert any("null-text" in name for name in inv)
    masks = _rows(_run("masks", "--steps", "4", "--images", "1", tmp_path=tmp_path))
    assert len(masks) >= 2


def test_p2p_benchmark_takes_the_sdxl_pipeline_as_baseline_for_sdxl(tmp_path):
    rows = _rows(_run_model("tiny-xl", tmp_path))
    assert set(rows) == {"plain (diffusers)", "loop (no control)", "edit: replace"}


def _run_model(model: str, tmp_path: Path) -> dict:
    out = tmp_path / "xl.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "p2p.py"), "--model", model, "--repeats", "1",
                           "--steps", "2", "--cases", "loop,replace", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["model"].startswith("tiny-sdxl")
    return result


def test_the_loop_profile_counts_host_syncs_per_step(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_loop.py"), "--model", "tiny", "--steps",
                           "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "profile.json").read_text())["rows"]
    assert [r["case"] for r in rows] == ["plain (diffusers)", "loop (no control)", "edit: replace"]
    assert all(Path(r["trace"]).is_file() and r["top_host_ops_ms"] for r in rows)
