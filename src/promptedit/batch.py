"""Editing a dataset: a manifest of edits run item by item, in-process or on a Ray cluster, resumable.

A manifest is a JSONL file (one edit a line) or a PIE-Bench folder (``mapping_file.json`` +
``annotation_images/``). Every item's options are those of ``promptedit edit`` (or ``mask-edit`` for a
mask-guided method), converted and checked as the command checks them (:mod:`promptedit.options`: the same types,
defaults and one-line errors; :func:`item_plan`) and run as its request (:func:`~promptedit.options.run_edit`), on
a model loaded once per process; nothing goes through the command line. Its outputs land in ``OUT/<id>/``
with their ``result.json``, which records a key of the item's options: running the same manifest again skips
the items whose key matches and reruns those whose options changed. A failing item goes to
``OUT/failures.jsonl`` with its one-line reason, and the run goes on.

JSONL items (UTF-8, a byte-order mark allowed): ``id`` (letters, digits, ``.``, ``_``, ``-``; unique regardless
of case, as folder names are on a case-insensitive file system), ``image`` (a path, relative to the manifest) or
``seed``, ``source`` and ``target`` / ``targets``, or ``prompt`` (the whole edit in edit syntax), ``method``
(``p2p``, an inversion method (:data:`~promptedit.requests.INVERSION_METHODS`), ``instant``, ``diffedit``,
``kv-edit`` (with a ``mask`` file, or an instant mask), ``mask`` with a ``mask`` file, or a flow model's velocity
edit ``flowedit`` / ``uniedit`` with an ``image``), and any option ``edit`` / ``mask-edit`` / ``flow-edit`` takes
under its own name
(``cross-replace``, ``steps``, ``blend``, ``reweight``, …; ``-`` or ``_``). Lists repeat an option; a mapping
``{"dog": 0.5}`` gives ``WORD=VALUE`` options.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ParameterError, PromptEditError, internal_error_line
from .requests import INVERSION_METHODS, VELOCITY_EDIT_METHODS
from .options import (
    command_params,
    edit_options,
    flow_edit_options,
    mask_edit_options,
    parse_window,
    plan_edit,
    plan_flow_edit,
    plan_mask_edit,
    run_edit,
    run_flow_edit,
    run_mask_edit,
)

MASK_METHODS = {"instant": "instant", "instdiffedit": "instant", "diffedit": "diffedit", "kv-edit": "kv-edit"}
METHODS = ("p2p", *INVERSION_METHODS, "instant", "instdiffedit", "diffedit", "kv-edit", "mask", *VELOCITY_EDIT_METHODS)
#: item keys that are not command options, and options a manifest may not set (the batch sets them)
RESERVED = {"id", "method", "out", "model", "device", "threads", "quiet", "debug"}
PATH_OPTIONS = ("image", "mask", "inversion", "inpaint-model")
ID_RE = re.compile(r"^(?!\.\.?$)[A-Za-z0-9._-]{1,128}$")  # a folder name under --out: not "." or ".."
FAILURES = "failures.jsonl"
SUMMARY = "batch.json"
RUN = "run.json"  # the latest run's record: its data set's fingerprint and each item's latest status


class ManifestError(PromptEditError):
    """A manifest (or one of its items) cannot be used."""


#: the options an item may set, by the command whose options they are (``edit``, ``mask-edit``), as click declares
#: them for that command: their names, types and defaults
ITEM_PARAMS = {"edit": command_params(edit_options), "mask-edit": command_params(mask_edit_options),
               "flow-edit": command_params(flow_edit_options)}


@dataclass(frozen=True)
class BatchItem:
    """One edit of a manifest, as the command options it stands for.

    Attributes:
        id: the item's id (its output folder's name).
        command: ``edit`` or ``mask-edit``.
        options: the command's options as the manifest gives them, by option name (without ``out`` and the model
            options); :attr:`argv` says them as command options.
        method: the method asked for.
        relative_path: for PIE-Bench items, the image's path inside ``annotation_images/`` (``--layout pie``).
        error: a one-line reason when the line itself cannot be used (it then fails without running).
    """

    id: str
    command: str
    options: Mapping[str, object]
    method: str
    relative_path: str | None = None
    error: str | None = None

    @property
    def argv(self) -> tuple[str, ...]:
        """The options as command options (``--steps 2 …``): what the item is keyed by and its record lists."""
        return tuple(_argv(self.options, flag_options()))

    def key(self, model_id: str) -> str:
        """What the item's outputs are keyed by: its command, options and model (a changed option reruns it).

        ``model_id`` is the model's fingerprint, not its path: a moved checkpoint resumes, other weights rerun.
        Input files (``--image``, ``--mask``, ``--inversion``) count by their content: a replaced image reruns."""
        payload = json.dumps([self.command, list(self.argv), model_id, self._input_digests()], separators=(",", ":"))
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def _input_digests(self) -> list[str]:
        """The SHA-1 of each input file the options name (``missing`` where it cannot be read: the run fails)."""
        out = []
        for flag, value in zip(self.argv, self.argv[1:]):
            if flag in ("--image", "--mask", "--inversion"):
                try:
                    out.append(hashlib.sha1(Path(value).read_bytes()).hexdigest())
                except OSError:
                    out.append("missing")
        return out


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def flag_options() -> frozenset[str]:
    """The names of `edit`'s and `mask-edit`'s flag options (the options a manifest turns on with ``true``)."""
    return frozenset(opt.lstrip("-") for params in ITEM_PARAMS.values() for p in params
                     if getattr(p, "is_flag", False) for opt in p.opts)


def item_options() -> dict[str, tuple[str, ...]]:
    """The options a JSONL item may set, by the command that takes them (``edit``, ``mask-edit``): each command's
    option names, in its own order, less those the batch sets (:data:`RESERVED`)."""
    return {command: tuple(opt[2:] for p in params for opt in p.opts
                           if opt.startswith("--") and opt[2:] not in RESERVED)
            for command, params in ITEM_PARAMS.items()}


#: the options that take a step window (a fraction, START,END or WORD=…)
WINDOW_OPTIONS = frozenset({"cross-replace", "self-replace", "inject-features", "inject-values"})


def check_defaults(defaults: Mapping[str, object]) -> None:
    """The options every item shares (``--set`` and the batch's own) checked once, before any item runs: a key
    the batch sets itself or that no option of `edit` / `mask-edit` has, or a value that option refuses, is one
    error for the whole batch, not a failure of each item."""
    import difflib

    import click

    params = {opt.lstrip("-"): p for params in ITEM_PARAMS.values() for p in params for opt in p.opts}
    for key, value in defaults.items():
        name = key.replace("_", "-")
        if name in RESERVED - {"method"}:
            how = {"id": "each item names its own", "debug": "give promptedit --debug batch …"}.get(name,
                                                                                             f"give batch --{name}")
            raise ManifestError(f"--set {name} cannot be set for the items: {how}")
        if name == "method":
            if value not in METHODS:
                raise ManifestError(f"--set method must be one of {', '.join(METHODS)}, got {value!r}")
            continue
        p = params.get("target" if name == "targets" else name)
        if p is None:
            near = difflib.get_close_matches(name, params, n=1)
            raise ManifestError(f"--set {name}: no option of edit or mask-edit has that name"
                                + (f" (did you mean {near[0]}?)" if near else ""))
        if getattr(p, "is_flag", False):
            if not isinstance(value, bool):
                raise ManifestError(f"--set {name} is a flag: give {name}=true or {name}=false, got {value!r}")
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            try:
                p.type.convert(v, p, None)
            except click.BadParameter as e:
                raise ManifestError(f"--set {name}: {e.message}") from None
            if name in WINDOW_OPTIONS and "=" not in str(v):
                parse_window(str(v), f"--set {name}")


def _argv(options: Mapping[str, object], flags: frozenset[str]) -> list[str]:
    """Command options from a mapping: ``True`` / ``False`` a flag option on / off (any other option takes it as
    its value, and refuses it as it refuses a bad one), a list repeats, a mapping gives ``WORD=VALUE``
    (:func:`_option_texts`)."""
    argv: list[str] = []
    for key, value in options.items():
        flag = _flag(key)
        if value is None:
            continue
        if isinstance(value, bool) and key in flags:
            argv += [flag] if value else []
            continue
        for text in _option_texts(key.replace("_", "-"), value):
            argv += [flag, text]
    return argv


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    return str(v)


def _option_texts(name: str, value) -> list[str]:
    """An option's value as the texts the command line would give it (see :func:`_argv`): a mapping gives
    ``WORD=VALUE``, a (start, end) window ``START,END``, a list one text each."""
    if isinstance(value, Mapping):
        return [f"{word}={_value(v)}" for word, v in value.items()]
    if isinstance(value, (list, tuple)):
        if name in WINDOW_OPTIONS and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [f"{_value(value[0])},{_value(value[1])}"]
        return [_value(v) for v in value]
    return [str(value).lower() if isinstance(value, bool) else _value(value)]


def item_plan(item: BatchItem, out: Path, defaults=None):
    """The plan of an item (:func:`~promptedit.options.plan_edit` or :func:`~promptedit.options.plan_mask_edit`)
    writing into ``out``: its options converted by their command's own types and defaults (the same one-line
    errors), ``defaults`` the model's :class:`~promptedit.defaults.ModelDefaults` (the steps a ``prompt`` is read
    at)."""
    import click

    params = ITEM_PARAMS[item.command]
    ctx = click.Context(click.Command(item.command, params=params))
    by_option = {opt[2:]: p for p in params for opt in p.opts}
    raw = {}  # by parameter name: the texts the command line would give (True for a flag on)
    for name, value in item.options.items():
        p = by_option.get(name)
        if p is None:
            import difflib

            near = difflib.get_close_matches(name, by_option, n=1)
            raise ManifestError(f"no option of {item.command} is called {name}"
                                + (f" (did you mean {near[0]}?)" if near else ""))
        if value is None or (value is False and p.is_flag):
            continue
        if p.is_flag and value is not True:
            raise ManifestError(f"{name} is a flag: give {name}: true or false, got {value!r}")
        texts = _option_texts(name, value)
        raw[p.name] = True if p.is_flag else tuple(texts) if p.multiple else texts[-1]  # the last, as on a command line
    values = {}
    try:
        for p in params:
            if p.name != "out":  # the batch's own
                values[p.name] = p.process_value(ctx, raw[p.name] if p.name in raw else p.get_default(ctx))
    except click.ClickException as e:  # a value the command refuses, a missing one
        raise ManifestError(e.format_message()) from None
    values["out"] = str(out)
    given = {p.name: p.opts[0] for p in params if p.name in raw}  # in the command's order
    if item.command == "edit":
        return plan_edit(**values, given=given, defaults=defaults)
    return (plan_mask_edit if item.command == "mask-edit" else plan_flow_edit)(**values, given=given)


def item_from_options(item_id: str, options: Mapping[str, object], *, base: Path | None = None,
                      defaults: Mapping[str, object] | None = None, relative_path: str | None = None) -> BatchItem:
    """A manifest item from its options (``defaults`` under them): the command and the options it runs with."""
    opts = {k.replace("_", "-"): v for k, v in {**(defaults or {}), **options}.items()}
    if not isinstance(item_id, str) or not ID_RE.match(item_id):
        raise ManifestError(f"item id {item_id!r} must be 1-128 letters, digits, '.', '_' or '-', and not '.' or '..'")
    bad = sorted(RESERVED & set(opts) - {"id", "method"})
    if bad:
        raise ManifestError(f"item {item_id}: {', '.join(bad)} cannot be set per item (the batch sets them)")
    method = opts.pop("method", None)
    opts.pop("id", None)
    method = method or ("null-text" if opts.get("image") else "p2p")
    if method not in METHODS:
        raise ManifestError(f"item {item_id}: method must be one of {', '.join(METHODS)}, got {method!r}")
    if "targets" in opts:
        opts["target"] = opts.pop("targets")
    for key in PATH_OPTIONS:
        if isinstance(opts.get(key), str) and base is not None and not os.path.isabs(opts[key]):
            opts[key] = str(base / opts[key])
    if method in MASK_METHODS:
        command, opts = "mask-edit", {**opts, "method": MASK_METHODS[method]}
    elif method in VELOCITY_EDIT_METHODS:
        if not opts.get("image"):
            raise ManifestError(f"item {item_id}: method {method} edits a real image: give an image")
        command, opts = "flow-edit", {**opts, "method": method}
    elif method == "mask":
        if not opts.get("mask"):
            raise ManifestError(f"item {item_id}: method mask needs a mask file")
        command = "mask-edit"
    else:
        command = "edit"
        if method in INVERSION_METHODS:
            if not opts.get("image") and not opts.get("inversion"):
                raise ManifestError(f"item {item_id}: method {method} edits a real image: give an image")
            if opts.get("image"):
                opts["method"] = method
        elif opts.get("image") or opts.get("inversion"):
            raise ManifestError(f"item {item_id}: method p2p edits a generated image; give no image")
    return BatchItem(item_id, command, opts, method, relative_path)


def read_jsonl(path: Path, defaults: Mapping[str, object] | None = None) -> list[BatchItem]:
    """The items of a JSONL manifest; a line that cannot be used becomes an item with its error (it fails on its
    own, the others run)."""
    from .images.inputs import check_input_file

    check_input_file(path, "manifest")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a byte-order mark is no part of line 1
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read manifest {path}: {e}") from None
    items, seen = [], {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fallback, clash = f"line-{n}", None
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ManifestError(f"line {n} is not a JSON object")
            item_id = data.get("id", fallback)
            clash = _id_clash(seen, item_id, f"line {n}")
            if clash:
                raise ManifestError(clash)
            item = item_from_options(item_id, data, base=path.parent, defaults=defaults)
            seen[item.id.lower()] = (item.id, f"line {n}")
            items.append(item)
        except json.JSONDecodeError as e:
            items.append(BatchItem(fallback, "edit", {}, "", error=f"line {n} is not JSON ({e.msg}, column {e.colno})"))
        except ManifestError as e:
            item_id = fallback if clash else (data.get("id", fallback) if isinstance(data, dict) else fallback)
            item_id = item_id if isinstance(item_id, str) and ID_RE.match(item_id) else fallback
            items.append(BatchItem(item_id, "edit", {}, "", error=str(e)))
    if not items:
        raise ManifestError(f"manifest {path} has no items")
    return items


#: ``--recipe pie-p2p``: what PnPInversion's ``run_editing_p2p.py`` gives its ``P2PEditor`` for every PIE-Bench
#: item, as `edit` options: 50 DDIM steps, guidance 7.5, cross-replace 0.4, self-replace 0.6, always refine
#: (``is_replace_controller=False``), local blend at threshold 0.3 from 0.2 of the steps (their ``LocalBlend``),
#: self-attention injected down to 32 x 32 of SD's 64 x 64 latent (their ``replace_self_attention``: ``32 ** 2``),
#: the inversion's null in every branch; per item, :func:`pie_p2p_options`.
PIE_P2P: Mapping[str, object] = {
    "steps": 50, "guidance": 7.5, "cross-replace": 0.4, "self-replace": 0.6, "mode": "refine",
    "blend-threshold": 0.3, "blend-start": 0.2, "self-replace-downsample": 2, "edit-null": "all",
    "no-blend-swapped": True,
}
#: ``--recipe rf-solver-edit``: RF-Solver-Edit (Wang et al. 2024) on FLUX.1-dev as its repository's scripts edit
#: (FLUX_Image_Edit/src/run_*.sh, as of commit 3388e29): RF-Solver inversion at guidance 1 and sampling at
#: FLUX.1-dev's embedded guidance 2, 15 steps, V of the single-stream blocks ``info['id'] > 19``
#: (20–37: depths 39–56 after the 19 double-stream blocks) replaced by the source's, every token's, in the first 2
#: steps (``--inject 2``; 3 in its horse → camel script, "typically 2 to 8" in its README); no Prompt-to-Prompt;
#: at PIE-Bench's 512 × 512 (its ``edit.py`` edits an image at its own size, not FLUX.1's 1024).
RF_SOLVER_EDIT: Mapping[str, object] = {
    "method": "rf-solver", "steps": 15, "guidance": 2, "height": 512, "width": 512, "inject-values": 0.14,
    "value-blocks": "39-56",
    "value-tokens": "all", "cross-replace": 0, "self-replace": 0, "no-blend-swapped": True,
}
#: ``--recipe fireflow``: FireFlow (Deng et al. 2025) on FLUX.1-dev as its README's and scripts' fast editing runs
#: (HolmesShuan/FireFlow-Fast-Inversion-of-Rectified-Flow-for-Image-Semantic-Editing, commit 98588a6):
#: FireFlow inversion and sampling (guidance 1, then 2), 8 steps, V of every single-stream block
#: (``--start_layer_index 0 --end_layer_index 37``: depths 19–56) replaced by the source's in the first step
#: (``--inject 1``); no Prompt-to-Prompt; at 512 × 512, as RF-Solver-Edit.
FIREFLOW: Mapping[str, object] = {
    "method": "fireflow", "steps": 8, "guidance": 2, "height": 512, "width": 512, "inject-values": 0.125,
    "value-blocks": "19-56",
    "value-tokens": "all", "cross-replace": 0, "self-replace": 0, "no-blend-swapped": True,
}
RECIPES: Mapping[str, Mapping[str, object]] = {"pie-p2p": PIE_P2P, "rf-solver-edit": RF_SOLVER_EDIT,
                                               "fireflow": FIREFLOW}
#: the inversion methods each recipe edits (the first: its own, when --method gives none)
RECIPE_METHODS: Mapping[str, tuple[str, ...]] = {
    "pie-p2p": tuple(m for m in INVERSION_METHODS), "rf-solver-edit": ("rf-solver",), "fireflow": ("fireflow",)}


def pie_p2p_options(entry) -> dict:
    """One PIE item's own options under ``--recipe pie-p2p``, from its ``blended_word`` ``"w0 w1"`` as their script
    reads it: local blend on w0 looked up in the source and w1 in the target (``blend_word=((w0,), (w1,))``), and
    w1 re-weighted x2 in the target (``eq_params={"words": (w1,), "values": (2,)}``); none without a blended word.

    Raises:
        ManifestError: a blended_word of one word (their script fails on it: it reads word 1).
    """
    words = entry.blended_words
    if not words:
        return {}
    if len(words) < 2:
        raise ManifestError(f"item {entry.id}: blended_word {' '.join(words)!r} has one word; the pie-p2p recipe "
                            "blends on a source word and a target word")
    return {"blend-source": words[0], "blend-target": words[1], "reweight": {words[1]: 2}}


def _id_clash(seen: Mapping[str, tuple[str, str]], item_id, where: str) -> str | None:
    """Why ``item_id`` cannot have a folder beside those of the ids ``seen`` (by their lower case: where each
    was): the same id, or one that differs only by case (one folder on a case-insensitive file system)."""
    if not isinstance(item_id, str) or item_id.lower() not in seen:
        return None
    other, other_where = seen[item_id.lower()]
    if other == item_id:
        return f"{where}: id {item_id!r} was used before ({other_where})"
    return (f"{where}: id {item_id!r} and id {other!r} ({other_where}) differ only by case: they would share one "
            "folder on a case-insensitive file system")


def read_pie_items(folder: Path, defaults: Mapping[str, object] | None = None, *, blend: bool = False,
                   types: Iterable[int] | None = None, recipe: str | None = None) -> list[BatchItem]:
    """The items of a PIE-Bench folder: each image edited from its source prompt to its target prompt (the
    ``[ ]`` marks stripped), locally blended on its ``blended_word`` pair when ``blend``; with ``recipe``, as
    the paper's code edits it: ``pie-p2p`` PnPInversion's script (:data:`PIE_P2P`, :func:`pie_p2p_options`),
    ``rf-solver-edit`` and ``fireflow`` theirs on FLUX.1-dev (:data:`RF_SOLVER_EDIT`, :data:`FIREFLOW`);
    ``defaults`` over the recipe's."""
    from .pie.data import read_pie

    if recipe is not None:
        defaults = {**RECIPES[recipe], **(defaults or {})}
    items, seen = [], {}
    for entry in read_pie(folder, types=types):
        options: dict = {"image": str(entry.image_path), "source": entry.source_prompt,
                         "target": entry.target_prompt}
        if blend and len(entry.blended_words) == 2:
            options["blend"] = list(entry.blended_words)
        try:
            clash = _id_clash(seen, entry.id, f"entry {entry.id}")
            if clash:
                raise ManifestError(clash)
            seen[entry.id.lower()] = (entry.id, f"entry {entry.id}")
            if recipe == "pie-p2p":
                options.update(pie_p2p_options(entry))
            items.append(item_from_options(entry.id, options, defaults=defaults, relative_path=entry.relative_path))
        except ManifestError as e:
            items.append(BatchItem(entry.id, "edit", {}, "", relative_path=entry.relative_path, error=str(e)))
    return items


def read_manifest(path: str | os.PathLike, defaults: Mapping[str, object] | None = None, *, pie_blend: bool = False,
                  recipe: str | None = None) -> tuple[list[BatchItem], str]:
    """The items of a manifest and its kind (``jsonl`` or ``pie``)."""
    p = Path(path)
    if recipe is not None:
        if recipe not in RECIPES:
            raise ManifestError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        if pie_blend:
            raise ManifestError(f"--recipe {recipe} blends on each item's blended_word itself: give no --pie-blend")
        methods = RECIPE_METHODS[recipe]
        method = (defaults or {}).get("method", RECIPES[recipe].get("method", "null-text"))
        if method not in methods:
            what = "Prompt-to-Prompt" if recipe == "pie-p2p" else "value injection"
            raise ManifestError(f"--recipe {recipe} edits an inversion with {what}: --method must be "
                                f"{'one of ' if len(methods) > 1 else ''}{', '.join(methods)}, got {method}")
    if p.is_dir():
        if not (p / "mapping_file.json").is_file():
            raise ManifestError(f"{p} is a folder but not a PIE-Bench folder (no mapping_file.json)")
        return read_pie_items(p, defaults, blend=pie_blend, recipe=recipe), "pie"
    if pie_blend or recipe is not None:
        raise ManifestError(f"{'--pie-blend' if pie_blend else '--recipe ' + recipe} is for PIE-Bench folders "
                            "(blended_word); a JSONL item names its blend words")
    return read_jsonl(p, defaults), "jsonl"


# ----------------------------------------------------------------------------- the run's record


class RunRecord:
    """``DIR/run.json``: what the latest run of a folder was given and what became of each of its items, kept up to
    date as items end. Written before the first item runs (every item ``pending``), then as outcomes come
    (``done``, ``skipped``: done before with the same options and model, ``failed``), so that ``evaluate`` scores
    exactly the items whose latest run succeeded, also after an interrupted run, and refuses a run made on
    another data set (``data``: a PIE folder's :func:`promptedit.pie.data.fingerprint`).

    Rewritten at most every :attr:`LAG_SECONDS` while a run goes on, and by :meth:`flush` at its end: a rewrite of
    the whole record per outcome made a run of many quick items quadratic (6,000 failing items: 37 s against 7 s).
    A run killed between two writes leaves its last items ``pending``, which ``evaluate`` leaves out."""

    LAG_SECONDS = 1.0

    def __init__(self, out: Path, manifest: str, kind: str, items: Sequence[BatchItem], data: str | None):
        self.path = Path(out) / RUN
        self.record = {"command": "batch", "manifest": str(manifest), "kind": kind, "data": data,
                       "items": {item.id: "pending" for item in items}}
        self.flush()

    def update(self, outcome: Outcome) -> None:
        self.record["items"][outcome.id] = outcome.status
        if time.monotonic() - self._written >= self.LAG_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the record as it stands."""
        from .outputs.files import write_json

        write_json(self.path, self.record)
        self._written = time.monotonic()

    @staticmethod
    def read(out: Path) -> dict | None:
        """The record of the latest run in ``out``, or None where there is none (a run by an older promptedit);
        an unreadable one is a ManifestError."""
        path = Path(out) / RUN
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ManifestError(f"cannot read the run's record {path}: {e}") from None
        if not isinstance(record, dict) or not isinstance(record.get("items"), dict):
            raise ManifestError(f"{path} is not a run record of promptedit batch (no items)")
        return record


# ----------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What became of one item: ``done``, ``skipped`` (done before, same key) or ``failed`` (with the reason)."""

    id: str
    status: str
    seconds: float = 0.0
    error: str | None = None


def _done_before(out: Path, key: str) -> bool:
    try:
        return json.loads((out / "result.json").read_text()).get("batch", {}).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False


class Runner:
    """Runs items on one loaded model (one per process: the in-process engine, or each Ray worker).

    Args:
        model: a loaded :class:`~promptedit.models.DiffusionModel`.
        out: the run's output folder.
        layout: ``pie`` also writes each edited image where PnPInversion's scripts put theirs.
    """

    def __init__(self, model, out: Path, *, layout: str | None = None):
        from .models import model_fingerprint

        self.model = model
        self.model_id = model_fingerprint(model)
        self.out = Path(out)
        self.layout = layout

    def __call__(self, item: BatchItem) -> Outcome:
        if item.error:
            return Outcome(item.id, "failed", error=item.error)
        key = item.key(self.model_id)
        folder = self.out / item.id
        pie = self._pie_path(item)
        if _done_before(folder, key) and (pie is None or pie.is_file()):  # a failed copy in PIE's layout: redone
            return Outcome(item.id, "skipped")
        started = time.perf_counter()
        run_fn = {"edit": run_edit, "mask-edit": run_mask_edit, "flow-edit": run_flow_edit}[item.command]
        extra = {"batch": {"id": item.id, "key": key, "method": item.method, "options": list(item.argv)}}
        try:
            plan = item_plan(item, folder, self.model.defaults)  # a prompt is read at the steps the model will run
            result = run_fn(self.model, plan, quiet=True, started=started, command=f"batch {item.command}",
                            extra=extra)
            if pie is not None:
                self._write_pie(pie, result)
        except PromptEditError as e:
            return Outcome(item.id, "failed", time.perf_counter() - started, str(e))
        except Exception as e:  # a defect of ours on one item: listed with the failures, and the run goes on
            return Outcome(item.id, "failed", time.perf_counter() - started,
                           f"{internal_error_line(e)}; please report it")
        return Outcome(item.id, "done", time.perf_counter() - started)

    def _pie_path(self, item: BatchItem) -> Path | None:
        """Where PnPInversion's layout puts the item's edited image: ``pie/<method>/annotation_images/<image_path>``
        (None without ``--layout pie``)."""
        if self.layout != "pie" or not item.relative_path:
            return None
        return self.out / "pie" / item.method / "annotation_images" / item.relative_path

    @staticmethod
    def _write_pie(path: Path, result) -> None:
        """The edited image in PnPInversion's layout, saved in the format its extension says (as their scripts save
        theirs)."""
        import io

        from PIL import Image

        from .outputs.files import write_bytes

        buf = io.BytesIO()
        Image.fromarray(result.edited).save(buf, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        write_bytes(path, buf.getvalue())


@dataclass
class Summary:
    """A run's outcome: counts, failures, items per minute (done items over the run's wall time) and seconds per
    item done (each item's own time, on its worker)."""

    engine: str
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def to_dict(self) -> dict:
        done = [o.seconds for o in self.outcomes if o.status == "done"]
        return {"engine": self.engine, "items": len(self.outcomes), "done": self.count("done"),
                "skipped": self.count("skipped"), "failed": self.count("failed"), "seconds": round(self.seconds, 3),
                "seconds_per_item": round(sum(done) / len(done), 3) if done else None,
                "items_per_minute": round(60 * len(done) / self.seconds, 3) if done and self.seconds else None,
                "outcomes": [{"id": o.id, "status": o.status, "seconds": round(o.seconds, 3),
                              **({"error": o.error} if o.error else {})} for o in self.outcomes]}

    def line(self) -> str:
        d = self.to_dict()
        per = (f", {d['items_per_minute']:.1f} items per minute ({d['seconds_per_item']:.1f} s an item on "
               f"{'its worker' if self.engine == 'ray' else 'this process'})") if d["seconds_per_item"] else ""
        return (f"{d['done']} done, {d['skipped']} skipped, {d['failed']} failed of {d['items']} in "
                f"{d['seconds']:.1f} s{per} ({self.engine})")


def run_in_process(items: Sequence[BatchItem], runner: Runner, *, on_outcome=None) -> Iterator[Outcome]:
    """The items one after the other in this process."""
    for item in items:
        outcome = runner(item)
        if on_outcome is not None:
            on_outcome(outcome)
        yield outcome


class RayWorker:
    """A Ray Data callable class: loads the model once per worker (``load``: the front-end's loader, called with
    no arguments), then edits the rows it is given."""

    def __init__(self, load, out: str, layout: str | None):
        import torch

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        torch.set_grad_enabled(False)
        self.runner = Runner(load(), Path(out), layout=layout)

    def __call__(self, batch: dict) -> dict:
        out = {"id": [], "status": [], "seconds": [], "error": []}
        for raw in batch["item"]:
            data = json.loads(raw)
            item = BatchItem(data["id"], data["command"], data["options"], data["method"],
                             data.get("relative_path"), data.get("error"))
            o = self.runner(item)
            out["id"].append(o.id)
            out["status"].append(o.status)
            out["seconds"].append(o.seconds)
            out["error"].append(o.error or "")
        return out


def run_on_ray(items: Sequence[BatchItem], *, load, out: Path,
               layout: str | None, address: str | None, workers: int, gpus_per_worker: float,
               threads: int) -> Iterator[Outcome]:
    """The items on Ray Data (``map_batches`` with :class:`RayWorker`, one model per worker, loaded by ``load``
    (a picklable callable with no arguments; ``threads`` CPU threads each)), streamed back."""
    try:
        import ray
        import ray.data  # configures its loggers on import: before they are quietened below
    except ImportError:
        raise ParameterError("--ray needs Ray: pip install 'promptedit[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=None if address in (None, "local") else address, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR", configure_logging=False,
                     runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE", "TRANSFORMERS_VERBOSITY": "error",
                                               "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}})
        except Exception as e:  # a cluster that cannot be reached is the user's input
            raise ParameterError(f"cannot start or reach Ray at {address or 'this machine'}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    data_log = logging.getLogger("ray.data")  # its own progress and "execution finished" lines: ours say that
    level = data_log.level
    data_log.setLevel(logging.ERROR)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        rows = [{"item": json.dumps({"id": i.id, "command": i.command, "options": i.options, "method": i.method,
                                     "relative_path": i.relative_path, "error": i.error})} for i in items]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows))).map_batches(
            RayWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=gpus_per_worker or None, num_cpus=threads,
            fn_constructor_kwargs={"load": load, "out": str(out),
                                   "layout": layout})
        for row in ds.iter_rows():
            yield Outcome(row["id"], row["status"], float(row["seconds"]), row["error"] or None)
    finally:
        data_log.setLevel(level)
        if started_here:
            ray.shutdown()
