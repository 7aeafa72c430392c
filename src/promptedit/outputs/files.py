"""File output for the front-ends (CLI, web app, batch runs): atomic writes, output sets written complete or not
at all, output-path checks.

The library never writes files; these helpers are the one place that does (records are built by
:mod:`promptedit.outputs.records`). A write the file system refuses (a full disk, a quota, a read-only or forbidden
folder) is an :class:`~promptedit.errors.OutputPathError` naming the folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import OutputPathError


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` through a temporary file in its folder, renamed over it when complete: an interrupted
    write leaves no half-written file. The temporary file is created with mode 0666, so the process's umask
    gives it (and so the output) the usual mode."""
    path = Path(path)
    make_output_dir(path.parent)
    _remove_stale_parts(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise cannot_write(path.parent, e)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno is not None:  # the file system's refusal, not a writer's defect
            raise cannot_write(path.parent, e)
        raise


def cannot_write(folder: Path, e: OSError) -> OutputPathError:
    """The one-line error of a write the file system refused (ENOSPC, EDQUOT, EROFS, EACCES …), naming the folder;
    the OSError stays its cause."""
    error = OutputPathError(f"cannot write to {folder}: {e.strerror or e}")
    error.__cause__ = e
    return error


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to the file ``path`` (made if missing) in one write, so that a log that grows item by item
    costs a line, not the whole file, each time. A line the disk cannot take whole is taken back: the file holds
    whole lines only."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise cannot_write(path.parent, e)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):  # a short write: the disk filled up within the line
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise cannot_write(path.parent, e)
    finally:
        os.close(fd)


STALE_PART_SECONDS = 600


def _remove_stale_parts(path: Path) -> None:
    """Remove temporary files of ``path`` left by a process killed while writing it (SIGKILL, power loss) and
    untouched for 10 minutes: a writer still at work keeps its file fresh."""
    import glob
    import time

    for part in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        try:
            if time.time() - part.stat().st_mtime > STALE_PART_SECONDS:
                if part.is_dir() and not part.is_symlink():  # an output set's temporary folder
                    shutil.rmtree(part)
                else:
                    part.unlink()
        except OSError:
            pass


#: the name of an output set's temporary folder, ``.promptedit-set.<random>.part`` inside the output folder
SET_STAGING = "promptedit-set"


@contextlib.contextmanager
def output_set(folder: str | os.PathLike, ours=frozenset(), record: str = "result.json"):
    """Write an output set, the files of one run that belong together (edit's folder: images, grid and
    ``result.json``; generate's FILE.png and FILE.json), complete or not at all.

    Yields a temporary folder inside ``folder``: the run writes its files there (``write_image(staged / name,
    …)``). When the block ends, the earlier run's files in ``folder`` (those of the new set, and the names
    ``ours`` holds, or says when it is a predicate: none is left that the new record does not list) are moved
    aside, the record first, then the new files moved in, the record last, and the earlier ones removed; nothing
    else in ``folder`` is touched. Any failure before the end (a full disk, an interrupt, an error of the run)
    removes the temporary folder and leaves ``folder`` as it was (a folder made for the set is removed again); a
    failure while moving puts the earlier files back. A write the file system refuses is an OutputPathError
    naming ``folder``.
    """
    folder = Path(folder)
    ours = ours if callable(ours) else frozenset(ours).__contains__
    created = not folder.exists()
    make_output_dir(folder)
    _remove_stale_parts(folder / SET_STAGING)
    try:
        staged = Path(tempfile.mkdtemp(prefix=f".{SET_STAGING}.", suffix=".part", dir=folder))
    except OSError as e:
        raise cannot_write(folder, e)
    try:
        yield staged
        _move_into_place(folder, staged, ours, record)
    except BaseException as e:
        shutil.rmtree(staged, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        cause = e.__cause__ if isinstance(e, OutputPathError) else e
        if isinstance(cause, OSError) and cause.errno is not None:
            raise cannot_write(folder, cause)
        raise
    shutil.rmtree(staged, ignore_errors=True)  # with the earlier run's files


def file_set(out: Path, *beside: Path):
    """:func:`output_set` for a command that writes the file ``out``, the files ``beside`` it and its record
    ``out.json``, all in ``out``'s folder (``write_image(staged / out.name, …)``).

    An ``out.json`` there that is not an earlier record of ``out`` (``world render``'s record of
    ``photo.png`` where ``invert --out photo.safetensors`` would write ``photo.json``; a user's own file) is never
    replaced: an OutputPathError naming it."""
    record = out.with_suffix(".json").name
    _check_record_is_ours(out.parent / record, out.name)
    return output_set(out.parent, {out.name, record, *(p.name for p in beside)}, record)


def _check_record_is_ours(record: Path, name: str) -> None:
    """Refuse to replace ``record`` unless it is a promptedit record listing ``name`` among its files."""
    if not record.exists():
        return
    try:
        files = json.loads(record.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        files = None
    if not (isinstance(files, dict) and name in files.values()):
        raise OutputPathError(f"{record} is not a record of {name} (another output's, or not promptedit's): it is "
                              f"kept; choose another output name")


def _move_into_place(folder: Path, staged: Path, ours, record: str) -> None:
    """The commit of :func:`output_set`: renames within one file system, undone on any failure."""
    new = sorted((p.name for p in staged.iterdir() if p.is_file() and not p.name.startswith(".")),
                 key=lambda name: name == record)  # the record last
    earlier = sorted((f.name for f in folder.iterdir() if (f.name in new or ours(f.name)) and not f.name.startswith(".")
                      and (f.is_file() or f.is_symlink())), key=lambda name: name != record)  # the record first
    aside = staged / ".earlier"
    aside.mkdir()
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in earlier:
            os.replace(folder / name, aside / name)
            moved.append(name)
        for name in new:
            os.replace(staged / name, folder / name)
            placed.append(name)
    except BaseException:
        for name in reversed(placed):
            with contextlib.suppress(OSError):
                os.replace(folder / name, staged / name)
        for name in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(aside / name, folder / name)
        raise


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


# ----------------------------------------------------------------------------- result folders

#: the files an edit writes into its folder (and edited-K.png for several targets)
EDIT_FILES = frozenset({"source.png", "reconstruction.png", "input.png", "grid.png", "result.json", "attention.png",
                        "blend-mask.png", "inversion.safetensors", "edited.png"})
#: the files a mask-guided edit writes into its folder
MASK_EDIT_FILES = frozenset({"input.png", "source.png", "edited.png", "mask.png", "mask-overlay.png", "grid.png",
                             "result.json"})


def is_edit_file(name: str) -> bool:
    """A file name an edit writes into its folder (edited-K.png for several targets)."""
    import re

    return name in EDIT_FILES or re.fullmatch(r"edited-\d+\.png", name) is not None


def write_result_folder(folder: str | os.PathLike, model, result, *, command: str, started: float | None = None,
                        input_image=None, write_inversion: bool = False, inputs: dict | None = None,
                        extra: dict | None = None) -> dict:
    """Write a result's folder as one output set (complete or not at all, an earlier run's files replaced): its
    images, grid, maps, masks and ``result.json`` (:func:`promptedit.outputs.records.build_record`); returns the files by
    role. The one writer of result folders, for the CLI, the web app and batch.

    A Prompt-to-Prompt edit (``source.png`` or ``reconstruction.png``, ``edited[-K].png``, ``attention.png`` and
    ``blend-mask.png`` when the result has them, ``inversion.safetensors`` with ``write_inversion``) or a
    mask-guided edit (a `MaskEditResult`: ``source.png`` or ``input.png``, ``edited.png``, ``mask.png``,
    ``mask-overlay.png``). ``input_image``: the :class:`~promptedit.images.inputs.PreparedImage` of a real image edited
    (written as ``input.png``)."""
    from ..methods.result import MaskEditResult

    writer = _write_mask_edit if isinstance(result, MaskEditResult) else _write_edit
    return writer(Path(folder), model, result, command=command, started=started, input_image=input_image,
                  write_inversion=write_inversion, inputs=inputs, extra=extra)


def _write_edit(folder: Path, model, result, *, command, started, input_image, write_inversion, inputs,
                extra) -> dict:
    """:func:`write_result_folder` for a Prompt-to-Prompt edit."""
    from .records import build_record
    from ..images.visualize import attention_sheet, image_grid, mask_overlay

    first = "reconstruction.png" if getattr(result, "inversion", None) is not None else "source.png"
    files: dict = {"source": first}
    n_targets = len(result.images) - 1
    names = ["edited.png"] if n_targets == 1 else [f"edited-{k + 1}.png" for k in range(n_targets)]
    with output_set(folder, is_edit_file) as staged:
        write_image(staged / first, result.images[0])
        for name, image in zip(names, result.images[1:]):
            write_image(staged / name, image)
        files["edited"] = names
        tiles, labels = list(result.images), [first.removesuffix(".png")] + [f"edit {k + 1}" for k in range(n_targets)]
        if input_image is not None:
            write_image(staged / "input.png", input_image.image)
            files["input"] = "input.png"
            tiles, labels = [input_image.image] + tiles, ["input"] + labels
        if write_inversion:
            write_bytes(staged / "inversion.safetensors", result.inversion.to_bytes())
            files["inversion"] = "inversion.safetensors"
        write_image(staged / "grid.png", image_grid(tiles, labels, cell=max(128, result.width)))
        files["grid"] = "grid.png"
        if getattr(result, "attention", None) is not None:
            write_image(staged / "attention.png", attention_sheet(model, result))
            files["attention"] = "attention.png"
        if getattr(result, "blend_mask", None) is not None:
            mask = result.blend_mask[1:].any(0)[0].cpu().numpy()  # (h, w): any edited branch blends there
            write_image(staged / "blend-mask.png", mask_overlay(result.images[1], np.asarray(mask)))
            files["blend_mask"] = "blend-mask.png"
        write_json(staged / "result.json", build_record(command, model, result, started=started, files=files,
                                                        inputs=inputs or None, extra=extra))
    return files


def _write_mask_edit(folder: Path, model, result, *, command, started, input_image, write_inversion, inputs,
                     extra) -> dict:
    """:func:`write_result_folder` for a mask-guided edit (``result.images``: the source (H, W, 3) and the edit)."""
    from .records import build_record
    from ..images.visualize import image_grid, mask_overlay, mask_tile

    source_image = result.images[0]
    first = "input.png" if input_image is not None else "source.png"
    overlay = mask_overlay(source_image, result.mask)
    files = {"source": first, "edited": "edited.png", "mask": "mask.png", "overlay": "mask-overlay.png",
             "grid": "grid.png"}
    with output_set(folder, MASK_EDIT_FILES) as staged:
        write_image(staged / first, source_image)
        write_image(staged / "edited.png", result.edited)
        write_image(staged / "mask.png", result.mask.astype("uint8") * 255)
        write_image(staged / "mask-overlay.png", overlay)
        write_image(staged / "grid.png", image_grid([source_image, mask_tile(result.mask), overlay, result.edited],
                                                    [first[:-4], "mask", "mask outline", "edited"],
                                                    cell=max(128, source_image.shape[1])))
        write_json(staged / "result.json", build_record(command, model, result, started=started, files=files,
                                                        inputs=inputs or None, extra=extra))
    return files
