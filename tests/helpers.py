"""Helpers shared by the test modules (imported as ``from helpers import run``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from promptedit.cli import main


def run(capsys, *argv):
    """Run the CLI in this process with ``argv`` (each turned into a string); return ``(code, out, err)``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    """Assert that a CLI run refused bad input as the bar asks (exit code 2, exactly one ``error:`` line, no
    traceback or internal error); return that line."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]
