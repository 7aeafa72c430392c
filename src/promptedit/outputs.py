"""File output for the front-ends (CLI, web app, batch runs): atomic writes, output-path checks.

The library never writes files; these helpers are the one place that does (records are built by
:mod:`promptedit.records`).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import OutputPathError


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file in its folder, renamed over it when complete: an interrupted
    write leaves no half-written file. The temporary file is created with mode 0666, so the process's umask
    gives it (and so the output) the usual mode."""
    path = Path(path)
    make_output_dir(path.parent)
    _remove_stale_parts(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


STALE_PART_SECONDS = 600


def _remove_stale_parts(path: Path) -> None:
    """Remove temporary files of ``path`` left by a process killed while writing it (SIGKILL, power loss) and
    untouched for 10 minutes: a writer still at work keeps its file fresh."""
    import glob
    import time

    for part in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        try:
            if time.time() - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass


def replace_run(out: Path, ours, record: str = "result.json") -> None:
    """Before a run writes its files into the folder ``out``, which may hold an earlier run's: remove the earlier
    record first (so that an interrupted run never leaves a record that describes images it did not make, and a
    batch resume redoes it), then the earlier run's files, the names ``ours(name)`` says this command writes (so
    that none is left that the new record does not list). Nothing else in the folder is touched."""
    out = Path(out)
    if not out.is_dir():
        return
    try:
        (out / record).unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OutputPathError(f"cannot replace {out / record}: {e.strerror or e}") from None
    for f in out.iterdir():
        if f.name != record and ours(f.name) and (f.is_file() or f.is_symlink()):
            try:
                f.unlink()
            except OSError as e:
                raise OutputPathError(f"cannot replace {f}: {e.strerror or e}") from None


def write_with(path: Path, write) -> None:
    """Write ``path`` atomically with ``write(f)`` on a binary file object (e.g. ``torch.save(obj, f)``)."""
    _atomic_write(path, write)


def write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as standard JSON: a float that is not finite (an exact reconstruction's infinite PSNR) is
    written as null, as JSON has no Infinity or NaN."""
    write_bytes(path, (json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n").encode())


def _finite(o):
    """``o`` with non-finite floats (also numpy's) replaced by None, through dicts, lists and tuples."""
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_image(path: Path, image: np.ndarray | Image.Image) -> None:
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    _atomic_write(path, lambda f: im.save(f, format="PNG"))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_output_file(path: str | os.PathLike, suffixes=(".png",)) -> Path:
    """An output file path whose folder exists or can be made, and can be written (nothing is created)."""
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise OutputPathError(f"output {p} must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise OutputPathError(f"output {p} is a folder, not a file")
    check_output_dir(p.parent if str(p.parent) else Path("."))
    return p


def check_output_dir(path: str | os.PathLike) -> Path:
    """Check, without creating anything, that the output folder exists or can be made, and is writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"output {p} exists and is not a folder")
    probe = p.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"cannot create {p}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write to {p}: {probe} is not writable")
    return p


def make_output_dir(path: Path) -> Path:
    """Create the output folder (just before the first file is written)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create {path}: {e.strerror or e}") from None
    return path
