"""The shapes-world benchmark: generation and each Prompt-to-Prompt edit, read back exactly.

Every prompt is a held-out caption of the shapes world (``docs/shapes-world.md``):
item ``i`` of a section's stream ``k`` is drawn with
``sample_caption_spec(numpy.random.default_rng(SeedSequence(HELD_OUT_SEED + k, spawn_key=(i,))))``
(the training data use seed 1, never these), items that do not fit the section
(e.g. two objects where one is wanted) are passed over, and the same generator then
picks the edit (e.g. the new colour). Item ``j`` of a section is generated from
x_T seed ``seed + j``. Images are read back with the world's independent reader
(:func:`promptedit.world.read_image`).

The reader works on the world's 64 x 64 canvas: images of any other size (e.g. the
32 px tiny random model) are resized to 64 x 64 with nearest-neighbour sampling
before reading (``BenchResult.settings["resized_from"]`` records it). Every
measurement is in canvas pixels.

A reading that finds no object counts as wrong (IoU 0, colour/shape wrong), never
as an error. An edit the library refuses for its prompts (a ``PromptEditError``:
prompts that cannot be aligned, a word past the token limit) is skipped and counted
by reason in ``SectionResult.skipped``.

Pure: functions return dataclasses; :mod:`promptedit.cli` writes the files.

    model = load_model("embedded")
    result = run_world_bench(model, n=50)
    print(markdown_report(result))
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..images import metrics
from ..methods.editing import EditSpec, edit, generate
from ..errors import ParameterError, PromptEditError
from ..world import CaptionSpec, mask_iou, read_image, sample_caption_spec, spec, texture_strength
from ..world.reader import ReadObject, Reading, looks_pixelated
from ..world.spec import HELD_OUT_SEED
from . import SECTIONS

CANVAS = spec.CANVAS_SIZE
#: Re-weighting scales of ``p2p_reweight``, in increasing order.
REWEIGHTS: tuple[float, ...] = (-1.0, 0.5, 1.0, 2.0, 4.0)
#: Stream offset k (seed HELD_OUT_SEED + k) of each section's captions.
STREAMS: dict[str, int] = {
    "generation_one": 0, "generation_two": 1, "p2p_colour_swap": 2, "p2p_background_swap": 3,
    "p2p_shape_swap": 4, "p2p_add_word": 5, "p2p_reweight": 6, "p2p_local_blend": 7,
}
#: PSNR of identical pixels (MSE 0) is counted as this many dB so that means stay finite.
PSNR_CAP = 100.0
#: ``a blurry photo of`` took effect when the edit's sharpness is below this fraction of the source's.
BLUR_SHARPNESS_RATIO = 0.8
IOU_GOOD = 0.9
#: Object sizes of the real-image section, by the share of the image its mask covers: (name, from, to).
SIZE_BINS = (("small", 0.0, 0.10), ("medium", 0.10, 0.25), ("large", 0.25, 1.01))


def size_bin(mask: np.ndarray) -> str:
    """``small``, ``medium`` or ``large`` (at least 25 % of the image) for an object's mask."""
    share = float(np.asarray(mask, bool).mean())
    return next(name for name, low, high in SIZE_BINS if low <= share < high)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Target:
    """A pass condition: ``value OP threshold`` with OP one of ``>=``, ``<=``, ``==``."""

    op: str
    threshold: float | bool

    def __post_init__(self):
        if self.op not in (">=", "<=", "=="):
            raise ValueError(f"unknown target operator {self.op!r}")

    def check(self, value) -> bool | None:
        """True / False, or None when there is no number to compare (n = 0)."""
        if value is None or isinstance(value, (list, tuple)):
            return None
        if isinstance(value, float) and math.isnan(value):
            return None
        if self.op == ">=":
            return bool(value >= self.threshold)
        if self.op == "<=":
            return bool(value <= self.threshold)
        return bool(value == self.threshold)

    def __str__(self) -> str:
        t = self.threshold
        text = str(t).lower() if isinstance(t, bool) else f"{t:g}"
        return f"{self.op} {text}"


@dataclass
class Metric:
    """One number of the benchmark.

    Attributes:
        value: a float (fractions in [0, 1], IoU, px, dB), a bool, a list (per-c means) or
            None when no item could be measured.
        n: how many items the value is computed over.
        target: the pass condition from the issue, or None (reported only).
        description: what exactly is measured.
    """

    value: Any
    n: int
    target: Target | None = None
    description: str = ""

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.target.check(self.value)

    def to_dict(self) -> dict:
        return {"value": self.value, "n": self.n, "target": str(self.target) if self.target else None,
                "passed": self.passed, "description": self.description}


@dataclass
class Example:
    """Images of one item for the picture grid: (label, image) pairs, model resolution."""

    title: str
    images: list[tuple[str, np.ndarray]]


@dataclass
class SectionResult:
    """One section: its metrics, per-item records, skipped items by reason, timing."""

    name: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    items: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skip_examples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    units: int = 0  # generate/edit calls made
    examples: list[Example] = field(default_factory=list)

    def skip(self, reason: str, message: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skip_examples.setdefault(reason, message)

    @property
    def seconds_per_item(self) -> float | None:
        return self.seconds / len(self.items) if self.items else None

    def to_dict(self) -> dict:
        return {
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "skipped": dict(self.skipped),
            "skip_examples": dict(self.skip_examples),
            "seconds": round(self.seconds, 3),
            "seconds_per_item": None if self.seconds_per_item is None else round(self.seconds_per_item, 4),
            "calls": self.units,
            "items": self.items,
        }


@dataclass
class BenchResult:
    """The whole benchmark: settings (model, seeds, steps, guidance, sizes) and sections."""

    settings: dict
    sections: dict[str, SectionResult]

    @property
    def passed(self) -> bool:
        """True when no metric with a target failed (metrics without a value do not count)."""
        return not any(m.passed is False for s in self.sections.values() for m in s.metrics.values())

    def to_dict(self) -> dict:
        return {"settings": self.settings, "passed": self.passed,
                "sections": {k: s.to_dict() for k, s in self.sections.items()}}


# ----------------------------------------------------------------------------- prompts


def held_out_items(stream: int, n: int, keep: Callable[[CaptionSpec], bool] = lambda s: True,
                   max_draws: int | None = None) -> Iterator[tuple[int, CaptionSpec, np.random.Generator]]:
    """The first ``n`` held-out captions of ``stream`` that ``keep`` accepts.

    Yields (draw index, caption spec, its generator positioned after the caption's draw:
    use it to pick the edit). Draw ``i`` uses
    ``default_rng(SeedSequence(HELD_OUT_SEED + stream, spawn_key=(i,)))``.
    """
    max_draws = max_draws if max_draws is not None else 1000 * max(n, 1)
    found = 0
    for i in range(max_draws):
        if found >= n:
            return
        rng = np.random.default_rng(np.random.SeedSequence(HELD_OUT_SEED + stream, spawn_key=(i,)))
        caption = sample_caption_spec(rng)
        if keep(caption):
            found += 1
            yield i, caption, rng
    if found < n:
        raise ParameterError(f"only {found} of {n} held-out captions of stream {stream} fit in {max_draws} draws")


def _unstyled(c: CaptionSpec) -> bool:
    return c.prefix is None and not c.night


def _other(rng: np.random.Generator, words: Sequence[str], exclude: Sequence[str]) -> str:
    options = [w for w in words if w not in exclude]
    return options[int(rng.integers(len(options)))]


def swap_object_word(caption: CaptionSpec, index: int, kind: str, word: str | None) -> CaptionSpec:
    """``caption`` with object ``index``'s ``kind`` word (colour, shape, size, texture) set to ``word``."""
    objects = list(caption.objects)
    objects[index] = dataclasses.replace(objects[index], **{kind: word})
    return dataclasses.replace(caption, objects=tuple(objects))


def colour_swap_target(caption: CaptionSpec | str, new_colour: str, index: int = 0) -> str:
    """The caption with object ``index``'s colour word swapped for ``new_colour`` (exactly one word changes)."""
    from ..world import parse_caption

    c = parse_caption(caption) if isinstance(caption, str) else caption
    if new_colour == c.objects[index].colour:
        raise ParameterError(f"the new colour {new_colour!r} is the object's colour already")
    return swap_object_word(c, index, "colour", new_colour).caption


# ----------------------------------------------------------------------------- reading


def to_canvas(image: np.ndarray) -> np.ndarray:
    """The image on the world's 64 x 64 canvas: unchanged if it is 64 x 64, else nearest-resized."""
    image = np.asarray(image)
    if image.shape[:2] == (CANVAS, CANVAS):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((CANVAS, CANVAS), Image.NEAREST))


def to_model_size(image: np.ndarray, size: int) -> np.ndarray:
    """A canvas image at the model's size (nearest), for models whose size is not the canvas's."""
    if image.shape[0] == size:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST))


def _read(image: np.ndarray, n_objects: int, style: str | None = None) -> Reading:
    return read_image(to_canvas(image), n_objects=n_objects, style=style)


def _first(reading: Reading) -> ReadObject | None:
    return reading.objects[0] if reading.objects else None


def _mask_iou(a: ReadObject | None, b: ReadObject | None) -> float:
    return 0.0 if a is None or b is None else float(mask_iou(a.mask, b.mask))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two square boxes (x, y, s)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] ** 2 + b[2] ** 2 - inter
    return float(inter / union) if union > 0 else 0.0


def centre_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance in px between the centres of two square boxes (x, y, s)."""
    return float(math.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[2] / 2 - b[1] - b[2] / 2))


def capped_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """:func:`promptedit.images.metrics.psnr` over ``mask``, capped at PSNR_CAP (so that means stay finite)."""
    return metrics.psnr(a, b, mask, cap=PSNR_CAP)


def capped_pooled_psnr(errors: Sequence[float | None]) -> float | None:
    """:func:`promptedit.images.metrics.pooled_psnr`, capped at PSNR_CAP."""
    return metrics.pooled_psnr(errors, cap=PSNR_CAP)


def sharpness(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels (grey levels): falls under blur."""
    g = np.asarray(image, np.float64).mean(-1)
    return float((np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()) / 2)


def _find(reading: Reading, colour: str, shape: str) -> ReadObject | None:
    for o in reading.objects:
        if o.colour == colour and o.shape == shape:
            return o
    return None


# ----------------------------------------------------------------------------- aggregation


def _mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _rate(flags) -> float | None:
    flags = [bool(f) for f in flags if f is not None]
    return float(np.mean(flags)) if flags else None


def _count(xs) -> int:
    return sum(x is not None for x in xs)


def _metric(values, how: str, target: Target | None = None, description: str = "") -> Metric:
    fn = {"mean": _mean, "rate": _rate}[how]
    return Metric(fn(values), _count(values), target, description)


def _frac_ge(values, t: float = IOU_GOOD) -> list:
    return [None if v is None else v >= t for v in values]


# ----------------------------------------------------------------------------- running


class _Run:
    """Shared settings of one benchmark run: model, sampling, progress, examples."""

    def __init__(self, model, seed: int, steps: int | None, guidance: float | None, examples: int, bar):
        self.model, self.seed, self.examples, self.bar = model, int(seed), int(examples), bar
        self.kw = dict(num_inference_steps=steps, guidance_scale=guidance, progress=False)

    def generate(self, prompt: str, seed: int) -> np.ndarray:
        return generate(self.model, prompt, seed=seed, **self.kw).images[0]

    def edit(self, edit_spec: EditSpec, seed: int) -> np.ndarray:
        """(source, edited) images; raises PromptEditError for prompts the edit cannot use."""
        return edit(self.model, edit_spec, seed=seed, **self.kw).images

    def tick(self, section: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(section, refresh=False)
            self.bar.update(1)


def _check_n(**ns) -> None:
    for name, n in ns.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ParameterError(f"{name} must be an integer >= 0, got {n!r}")


def _section(name: str, body) -> SectionResult:
    out = SectionResult(name)
    t0 = time.perf_counter()
    body(out)
    out.seconds = time.perf_counter() - t0
    return out


def _with_run(fn):
    """Let section functions be called on their own: builds the run from keyword arguments."""

    def wrapper(model, *args, seed: int = 0, steps: int | None = None, guidance: float | None = None,
                examples: int = 2, progress: bool = False, _run: _Run | None = None, **kwargs) -> SectionResult:
        if _run is not None:
            return fn(_run, *args, **kwargs)
        counts = {k: p.default for k, p in inspect.signature(fn).parameters.items() if k.startswith("n")}
        counts.update({k: v for k, v in kwargs.items() if k in counts})
        bar = _bar(sum(v for v in counts.values() if isinstance(v, int)), progress)
        try:
            return fn(_Run(model, seed, steps, guidance, examples, bar), *args, **kwargs)
        finally:
            if bar is not None:
                bar.close()

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench world", unit="item", dynamic_ncols=True)


@_with_run
def bench_generation(run: _Run, n_one: int = 50, n_two: int = 50) -> SectionResult:
    """Plain generation, read back.

    One-object captions as sampled (styles included), read with ``n_objects=1`` and the
    caption's style prefix: colour, shape and background accuracy. Two-object captions
    as sampled: both objects right = the multiset of (colour, shape) read equals the
    caption's (an object not found makes it wrong); both colours = the same for colours
    alone (attribute binding, whatever the shapes).
    """
    _check_n(n_one=n_one, n_two=n_two)

    def body(out: SectionResult):
        colour, shape, background = [], [], []
        for j, (i, cap, _) in enumerate(held_out_items(STREAMS["generation_one"], n_one, lambda c: len(c.objects) == 1)):
            image = run.generate(cap.caption, run.seed + j)
            out.units += 1
            reading = _read(image, 1, cap.prefix)
            o, r = cap.objects[0], _first(reading)
            colour.append(r is not None and r.colour == o.colour)
            shape.append(r is not None and r.shape == o.shape)
            background.append(reading.background == cap.background)
            out.items.append({"kind": "one", "draw": i, "seed": run.seed + j, "caption": cap.caption,
                              "read": _describe(reading)})
            if j < run.examples:
                out.examples.append(Example(cap.caption, [(_short(cap.caption), image)]))
            run.tick(out.name)
        both, colours = [], []
        for j, (i, cap, _) in enumerate(held_out_items(STREAMS["generation_two"], n_two, lambda c: len(c.objects) == 2)):
            image = run.generate(cap.caption, run.seed + j)
            out.units += 1
            reading = _read(image, 2, cap.prefix)
            want = sorted((o.colour, o.shape) for o in cap.objects)
            got = sorted((o.colour, o.shape) for o in reading.objects)
            both.append(got == want)
            colours.append(sorted(o.colour for o in reading.objects) == sorted(o.colour for o in cap.objects))
            out.items.append({"kind": "two", "draw": i, "seed": run.seed + j, "caption": cap.caption,
                              "read": _describe(reading)})
            if j < run.examples:
                out.examples.append(Example(cap.caption, [(_short(cap.caption), image)]))
            run.tick(out.name)
        out.metrics = {
            "colour_accuracy": _metric(colour, "rate", Target(">=", 0.95),
                                       "one object: read colour == caption colour"),
            "shape_accuracy": _metric(shape, "rate", Target(">=", 0.85), "one object: read shape == caption shape"),
            "background_accuracy": _metric(background, "rate", Target(">=", 0.98),
                                           "one object: read background == caption background"),
            "two_objects_both_right": _metric(both, "rate", Target(">=", 0.70),
                                              "two objects: read {(colour, shape)} == caption's, as a multiset"),
            "two_objects_both_colours": _metric(colours, "rate", None,
                                                "two objects: read colours == caption's, as a multiset (shapes aside)"),
        }

    return _section("generation", body)


def value_window(model, steps: int | None) -> float | None:
    """The value-injection window the word-swap sections also edit with on a transformer (None on a UNet):
    RF-Solver-Edit's share of the steps (2 of 15, ``--recipe rf-solver-edit``), at least one step of the run's."""
    if not model.backbone.block_depths():
        return None
    steps = model.defaults.sampling.num_inference_steps if steps is None else steps
    return max(2 / 15, 1 / steps)


def _same(key: str) -> bool:
    """Whether a word-swap figure is of the source or the no-control baseline: the same with value injection."""
    return key.startswith(("baseline", "source"))


def _swap_section(run: _Run, name: str, n: int, kind: str, measure, summarise) -> SectionResult:
    """Shared loop of the one-object word-swap sections (colour, background, shape).

    ``measure(run, out, row, target, seed, images)`` adds ``m_*`` entries to ``row`` (and may
    append example images); ``summarise(rows)`` returns the section's metrics. On a transformer the same edit is
    also made with value injection (:func:`value_window`, the model's default blocks) and measured alike: its
    metrics are ``values_…`` (the source's and the baselines', the same images, are not repeated).
    """
    _check_n(n=n)
    window = value_window(run.model, run.kw["num_inference_steps"])

    def body(out: SectionResult):
        rows, value_rows = [], []
        for j, (i, cap, rng) in enumerate(held_out_items(STREAMS[name], n, lambda c: len(c.objects) == 1 and _unstyled(c))):
            o = cap.objects[0]
            if kind == "background":
                new = _other(rng, spec.BACKGROUNDS, [cap.background])
                tgt = dataclasses.replace(cap, background=new)
            else:
                new = _other(rng, spec.COLOURS if kind == "colour" else spec.SHAPES, [getattr(o, kind)])
                tgt = swap_object_word(cap, 0, kind, new)
            seed = run.seed + j
            item = {"draw": i, "seed": seed, "source": cap.caption, "target": tgt.caption}
            try:
                src_img, edit_img = run.edit(EditSpec(cap.caption, (tgt.caption,), mode="replace"), seed)
            except PromptEditError as e:
                out.skip(type(e).__name__, str(e))
                item["skipped"] = str(e)
                out.items.append(item)
                run.tick(out.name)
                continue
            out.units += 1
            r_src, r_edit = _read(src_img, 1), _read(edit_img, 1)
            row = {"new": new, "cap": cap, "tgt": tgt, "src": r_src, "edit": r_edit,
                   "iou": _mask_iou(_first(r_src), _first(r_edit))}
            images = [("source", src_img), ("P2P edit", edit_img)]
            measure(run, out, row, tgt, seed, images)
            rows.append(row)
            item.update({"read_source": _describe(r_src), "read_edit": _describe(r_edit), "mask_iou": row["iou"]})
            item.update({k: v for k, v in row.items() if k.startswith("m_")})
            if window is not None:
                try:
                    values_img = run.edit(EditSpec(cap.caption, (tgt.caption,), mode="replace", inject_values=window),
                                          seed)[1]
                except PromptEditError as e:
                    out.skip(f"values: {type(e).__name__}", str(e))
                    item["values"] = {"skipped": str(e)}
                else:
                    out.units += 1
                    r_values = _read(values_img, 1)
                    vrow = {**{k: v for k, v in row.items() if not k.startswith("m_")}, "edit": r_values,
                            "iou": _mask_iou(_first(r_src), _first(r_values))}
                    measure(run, out, vrow, tgt, seed, images)
                    value_rows.append(vrow)
                    images.append(("P2P + values", values_img))
                    item["values"] = {"read_edit": _describe(r_values), "mask_iou": vrow["iou"],
                                      **{k: v for k, v in vrow.items() if k.startswith("m_") and not _same(k[2:])}}
            out.items.append(item)
            if len(out.examples) < run.examples:
                out.examples.append(Example(f"{cap.caption} -> {new}", images))
            run.tick(out.name)
        out.metrics = summarise(rows)
        if window is not None:
            for k, m in summarise(value_rows).items():
                if not _same(k):
                    m.description = f"with value injection over the first {window:.3g} of the steps: {m.description}"
                    out.metrics[f"values_{k}"] = m

    return _section(name, body)


@_with_run
def bench_colour_swap(run: _Run, n: int = 50) -> SectionResult:
    """Word swap of the object's colour (``replace``) on one-object unstyled captions.

    mask IoU = IoU of the object's mask read on the source and on the edit (0 when
    either reading finds no object). Beside it, the target prompt generated from the
    same seed without attention control (``generate``): its IoU with the source and
    its colour accuracy.
    """

    def measure(run, out, row, tgt, seed, images):
        if "r_base" not in row:  # once per item (a value-injection edit of the item measures against the same)
            base = run.generate(tgt.caption, seed)
            out.units += 1
            images.append(("no control", base))
            row["r_base"] = _read(base, 1)
        e, b, s = _first(row["edit"]), _first(row["r_base"]), _first(row["src"])
        row["m_new_colour_right"] = e is not None and e.colour == row["new"]
        row["m_source_colour_right"] = s is not None and s.colour == row["cap"].objects[0].colour
        row["m_baseline_mask_iou"] = _mask_iou(s, b)
        row["m_baseline_colour_right"] = b is not None and b.colour == row["new"]

    def summarise(rows):
        iou = [r["iou"] for r in rows]
        base_iou = [r["m_baseline_mask_iou"] for r in rows]
        return {
            "mask_iou_mean": _metric(iou, "mean", Target(">=", IOU_GOOD), "object mask read on source vs edit"),
            "mask_iou_frac_ge_0.9": _metric(_frac_ge(iou), "rate", None, "fraction of items with mask IoU >= 0.9"),
            "new_colour_accuracy": _metric([r["m_new_colour_right"] for r in rows], "rate", Target(">=", 0.90),
                                           "edit's read colour == the new colour"),
            "source_colour_accuracy": _metric([r["m_source_colour_right"] for r in rows], "rate", None,
                                              "source's read colour == caption colour (context)"),
            "baseline_mask_iou_mean": _metric(base_iou, "mean", None,
                                              "target regenerated from the same seed without control: mask IoU with source"),
            "baseline_mask_iou_frac_ge_0.9": _metric(_frac_ge(base_iou), "rate", None,
                                                     "same, fraction with IoU >= 0.9"),
            "baseline_colour_accuracy": _metric([r["m_baseline_colour_right"] for r in rows], "rate", None,
                                                "same, read colour == the new colour"),
        }

    return _swap_section(run, "p2p_colour_swap", n, "colour", measure, summarise)


@_with_run
def bench_background_swap(run: _Run, n: int = 50) -> SectionResult:
    """Word swap of the background (``replace``) on one-object unstyled captions:
    object mask IoU source vs edit, the new background read, the object's colour kept."""

    def measure(run, out, row, tgt, seed, images):
        e = _first(row["edit"])
        row["m_new_background_right"] = row["edit"].background == row["new"]
        row["m_colour_kept"] = e is not None and e.colour == row["cap"].objects[0].colour

    def summarise(rows):
        iou = [r["iou"] for r in rows]
        return {
            "mask_iou_mean": _metric(iou, "mean", Target(">=", IOU_GOOD), "object mask read on source vs edit"),
            "mask_iou_frac_ge_0.9": _metric(_frac_ge(iou), "rate", None, "fraction of items with mask IoU >= 0.9"),
            "new_background_accuracy": _metric([r["m_new_background_right"] for r in rows], "rate", None,
                                               "edit's read background == the new background"),
            "colour_kept": _metric([r["m_colour_kept"] for r in rows], "rate", None,
                                   "edit's object colour == caption colour"),
        }

    return _swap_section(run, "p2p_background_swap", n, "background", measure, summarise)


@_with_run
def bench_shape_swap(run: _Run, n: int = 50) -> SectionResult:
    """Word swap of the shape (``replace``) on one-object unstyled captions: the new shape read,
    the reader's fitted box kept (square-box IoU and centre distance, source vs edit), colour kept."""

    def measure(run, out, row, tgt, seed, images):
        s, e = _first(row["src"]), _first(row["edit"])
        row["m_new_shape_right"] = e is not None and e.shape == row["new"]
        row["m_box_iou"] = 0.0 if s is None or e is None else box_iou(s.box, e.box)
        row["m_centre_distance_px"] = None if s is None or e is None else centre_distance(s.box, e.box)
        row["m_colour_kept"] = e is not None and e.colour == row["cap"].objects[0].colour

    def summarise(rows):
        box = [r["m_box_iou"] for r in rows]
        return {
            "new_shape_accuracy": _metric([r["m_new_shape_right"] for r in rows], "rate", None,
                                          "edit's read shape == the new shape"),
            "box_iou_mean": _metric(box, "mean", None, "IoU of the reader's fitted boxes, source vs edit"),
            "box_iou_frac_ge_0.9": _metric(_frac_ge(box), "rate", None, "fraction with box IoU >= 0.9"),
            "centre_distance_px_mean": _metric([r["m_centre_distance_px"] for r in rows], "mean", None,
                                               "box centre distance source vs edit, canvas px (items with both read)"),
            "colour_kept": _metric([r["m_colour_kept"] for r in rows], "rate", None,
                                   "edit's object colour == caption colour"),
        }

    return _swap_section(run, "p2p_shape_swap", n, "shape", measure, summarise)


@_with_run
def bench_add_word(run: _Run, n_texture: int = 50, n_night: int = 50, n_prefix: int = 50) -> SectionResult:
    """Added words (``refine``) on one-object captions with no texture, prefix or suffix.

    Kinds: a texture word on the object (striped / dotted alternately), ``at night``,
    a style prefix (the three in turn). Boxes kept: IoU of the reader's fitted boxes,
    source vs edit (edit read with its style prefix). Took effect: texture -> the
    texture strength on the edit's object mask exceeds the source's (caption colour);
    night -> the edit reads as night; sketch -> the edit reads as a sketch; pixel art
    -> the edit is flat on 4 x 4 blocks; blurry -> its sharpness is below
    ``BLUR_SHARPNESS_RATIO`` x the source's (mean neighbour difference). The first item
    of each kind is kept as an example.
    """
    _check_n(n_texture=n_texture, n_night=n_night, n_prefix=n_prefix)
    plain = lambda c: len(c.objects) == 1 and _unstyled(c) and c.objects[0].texture is None  # noqa: E731

    def body(out: SectionResult):
        box, effect = [], {"texture": [], "night": [], "prefix": []}
        strengths = ([], [])
        plan = [("texture", k) for k in range(n_texture)] + [("night", k) for k in range(n_night)] + \
            [("prefix", k) for k in range(n_prefix)]
        captions = held_out_items(STREAMS["p2p_add_word"], len(plan), plain)
        for j, ((kind, k), (i, cap, _)) in enumerate(zip(plan, captions)):
            o = cap.objects[0]
            if kind == "texture":
                word = spec.TEXTURES[k % len(spec.TEXTURES)]
                tgt = swap_object_word(cap, 0, "texture", word)
            elif kind == "night":
                word, tgt = spec.NIGHT_SUFFIX, dataclasses.replace(cap, night=True)
            else:
                word = spec.PREFIXES[k % len(spec.PREFIXES)]
                tgt = dataclasses.replace(cap, prefix=word)
            seed = run.seed + j
            item = {"kind": kind, "word": word, "draw": i, "seed": seed, "source": cap.caption, "target": tgt.caption}
            try:
                src_img, edit_img = run.edit(EditSpec(cap.caption, (tgt.caption,), mode="refine"), seed)
            except PromptEditError as e:
                out.skip(type(e).__name__, str(e))
                item["skipped"] = str(e)
                out.items.append(item)
                run.tick(out.name)
                continue
            out.units += 1
            r_src, r_edit = _read(src_img, 1), _read(edit_img, 1, tgt.prefix)
            s, e = _first(r_src), _first(r_edit)
            b = 0.0 if s is None or e is None else box_iou(s.box, e.box)
            box.append(b)
            if kind == "texture":
                t_src = texture_strength(to_canvas(src_img), s.mask, o.colour) if s is not None else None
                t_edit = texture_strength(to_canvas(edit_img), e.mask, o.colour) if e is not None else None
                ok = t_src is not None and t_edit is not None and t_edit > t_src
                strengths[0].append(t_src)
                strengths[1].append(t_edit)
                item.update({"texture_strength_source": t_src, "texture_strength_edit": t_edit})
            elif kind == "night":
                ok = r_edit.night
            elif word == spec.SKETCH:
                ok = _read(edit_img, 1).sketch
            elif word == spec.PIXEL_ART:
                ok = looks_pixelated(to_canvas(edit_img))
            else:
                ok = sharpness(to_canvas(edit_img)) < BLUR_SHARPNESS_RATIO * sharpness(to_canvas(src_img))
            effect[kind].append(bool(ok))
            item.update({"box_iou": b, "took_effect": bool(ok), "read_source": _describe(r_src),
                         "read_edit": _describe(r_edit)})
            out.items.append(item)
            if run.examples and not any(x.title.endswith(f"+ {kind}") for x in out.examples):
                out.examples.append(Example(f"{cap.caption} + {kind}", [("source", src_img), (f"+ {word}", edit_img)]))
            run.tick(out.name)
        out.metrics = {
            "box_iou_mean": _metric(box, "mean", Target(">=", IOU_GOOD), "reader's fitted box, source vs edit, all kinds"),
            "box_iou_frac_ge_0.9": _metric(_frac_ge(box), "rate", None, "fraction with box IoU >= 0.9"),
            "texture_took_effect": _metric(effect["texture"], "rate", None,
                                           "texture strength on the object rises from source to edit"),
            "texture_strength_source_mean": _metric(strengths[0], "mean", None, "texture edits: source's strength"),
            "texture_strength_edit_mean": _metric(strengths[1], "mean", None, "texture edits: edit's strength"),
            "night_took_effect": _metric(effect["night"], "rate", None, "edit reads as night"),
            "prefix_took_effect": _metric(effect["prefix"], "rate", None,
                                          "sketch read / 4x4 flat blocks / sharpness < 0.8 x source"),
        }

    return _section("p2p_add_word", body)


@_with_run
def bench_reweight(run: _Run, n: int = 50, scales: Sequence[float] = REWEIGHTS) -> SectionResult:
    """Re-weighting the texture word of one-object unstyled textured captions by each c in ``scales``.

    For each c: ``EditSpec(src, (src,), mode="reweight", reweight={texture: c})``; the texture
    strength on the object's mask read from the edit (caption colour). Means per c; monotonic =
    the means are non-decreasing in c (over items where every c was measured).
    """
    _check_n(n=n)
    scales = sorted(float(c) for c in scales)
    keep = lambda c: len(c.objects) == 1 and _unstyled(c) and c.objects[0].texture is not None  # noqa: E731

    def body(out: SectionResult):
        per_c: dict[float, list] = {c: [] for c in scales}
        source = []
        for j, (i, cap, _) in enumerate(held_out_items(STREAMS["p2p_reweight"], n, keep)):
            o, seed = cap.objects[0], run.seed + j
            item = {"draw": i, "seed": seed, "caption": cap.caption, "word": o.texture, "strength": {}}
            images = []
            try:
                for c in scales:
                    src_img, edit_img = run.edit(
                        EditSpec(cap.caption, (cap.caption,), mode="reweight", reweight={o.texture: c}), seed)
                    out.units += 1
                    e = _first(_read(edit_img, 1))
                    t = texture_strength(to_canvas(edit_img), e.mask, o.colour) if e is not None else None
                    per_c[c].append(t)
                    item["strength"][str(c)] = t
                    images.append((f"c={c:g}", edit_img))
            except PromptEditError as err:
                for c in scales:  # keep the lists aligned by item; a skipped item has no values
                    if len(per_c[c]) > len(source):
                        per_c[c][-1] = None
                    else:
                        per_c[c].append(None)
                out.skip(type(err).__name__, str(err))
                item["skipped"] = str(err)
                source.append(None)
                out.items.append(item)
                run.tick(out.name)
                continue
            s = _first(_read(src_img, 1))
            source.append(texture_strength(to_canvas(src_img), s.mask, o.colour) if s is not None else None)
            out.items.append(item)
            if len(out.examples) < run.examples:
                out.examples.append(Example(cap.caption, [("source", src_img)] + images))
            run.tick(out.name)
        complete = [k for k in range(len(source)) if all(per_c[c][k] is not None for c in scales)]
        means = [_mean([per_c[c][k] for k in complete]) for c in scales]
        mono = None if not complete else all(a <= b for a, b in zip(means, means[1:]))
        out.metrics = {
            "texture_strength_by_c": Metric(means, len(complete), None,
                                            f"mean texture strength on the edit's object for c = {scales}"),
            "monotonic": Metric(mono, len(complete), Target("==", True), "the means are non-decreasing in c"),
            "texture_strength_source_mean": _metric(source, "mean", None, "source image (no re-weighting)"),
            **{f"texture_strength_c={c:g}": _metric(per_c[c], "mean", None, "items where the edit's object was read")
               for c in scales},
        }

    return _section("p2p_reweight", body)


@_with_run
def bench_local_blend(run: _Run, n: int = 50) -> SectionResult:
    """Colour swap of the first object of two-object captions with local blending.

    Captions: two objects of different colours and different shapes (so that the blend
    words name one object only), no prefix or suffix. The new colour differs from both.
    ``blend_words = (old colour, new colour, shape of the first object)``. On the source
    (read with ``n_objects=2``) the two objects are found by their caption words; PSNR
    between source and edit over the other object's mask, and over the pixels outside
    both masks (items where both were found on the source). New colour right = the
    edit's reading has an object of the new colour and the first object's shape.
    """
    _check_n(n=n)
    keep = lambda c: (len(c.objects) == 2 and _unstyled(c) and c.objects[0].colour != c.objects[1].colour  # noqa: E731
                      and c.objects[0].shape != c.objects[1].shape)

    def body(out: SectionResult):
        other_psnr, bg_psnr, right = [], [], []
        for j, (i, cap, rng) in enumerate(held_out_items(STREAMS["p2p_local_blend"], n, keep)):
            a, b = cap.objects
            new = _other(rng, spec.COLOURS, [a.colour, b.colour])
            tgt = swap_object_word(cap, 0, "colour", new)
            seed = run.seed + j
            item = {"draw": i, "seed": seed, "source": cap.caption, "target": tgt.caption}
            es = EditSpec(cap.caption, (tgt.caption,), mode="replace", blend_words=(a.colour, new, a.shape))
            try:
                src_img, edit_img = run.edit(es, seed)
            except PromptEditError as e:
                out.skip(type(e).__name__, str(e))
                item["skipped"] = str(e)
                out.items.append(item)
                run.tick(out.name)
                continue
            out.units += 1
            src_c, edit_c = to_canvas(src_img), to_canvas(edit_img)
            r_src, r_edit = _read(src_img, 2), _read(edit_img, 2)
            first, other = _find(r_src, a.colour, a.shape), _find(r_src, b.colour, b.shape)
            p_other = capped_psnr(src_c, edit_c, other.mask) if other is not None else None
            p_bg = capped_psnr(src_c, edit_c, ~(first.mask | other.mask)) if first is not None and other is not None else None
            if other is None:
                out.skip("psnr: other object not read on source")
            elif first is None:
                out.skip("background psnr: edited object not read on source")
            other_psnr.append(p_other)
            bg_psnr.append(p_bg)
            right.append(_find(r_edit, new, a.shape) is not None)
            item.update({"psnr_other": p_other, "psnr_background": p_bg, "new_colour_right": right[-1],
                         "read_source": _describe(r_src), "read_edit": _describe(r_edit)})
            out.items.append(item)
            if len(out.examples) < run.examples:
                out.examples.append(Example(f"{cap.caption} -> {new}", [("source", src_img), ("blend edit", edit_img)]))
            run.tick(out.name)
        out.metrics = {
            "psnr_other_object_db": _metric(other_psnr, "mean", None,
                                            f"source vs edit over the other object's source mask (capped {PSNR_CAP:g})"),
            "psnr_background_db": _metric(bg_psnr, "mean", None, "source vs edit outside both objects' source masks"),
            "new_colour_accuracy": _metric(right, "rate", None, "edit has an object of the new colour and first shape"),
        }

    return _section("p2p_local_blend", body)


#: Inversion methods of ``real_images``: (label, method, guidance, or None for the run's sampling guidance).
#: ``null-text@7.5`` is null-text at the paper's w = 7.5, beside the model's own guidance; then the plain inversions
#: of the model's sampler (DDIM; on a flow model Euler, RF-Solver, FireFlow and Uni-Inv).
REAL_METHODS: tuple[tuple[str, str, float | None], ...] = (
    ("null-text", "null-text", None), ("null-text@7.5", "null-text", 7.5), ("negative-prompt", "negative-prompt", None),
    ("direct", "direct", None),
)


def real_methods(model) -> list[tuple[str, str, float | None]]:
    """:data:`REAL_METHODS` that run on ``model`` (null-text and negative-prompt need classifier-free guidance),
    then its sampler's own plain inversions."""
    from ..methods.inversion import NEEDS_CLASSIFIER_FREE, sampler_methods

    own = sampler_methods(model.make_sampler())
    guided = model.make_guidance(2.0).branches > 1
    methods = [m for m in REAL_METHODS if m[1] in own and (guided or m[1] not in NEEDS_CLASSIFIER_FREE)]
    return methods + [(m, m, None) for m in own if m not in {r[1] for r in REAL_METHODS}]


def velocity_methods(model) -> tuple[str, ...]:
    """The velocity edits (FlowEdit, UniEdit-Flow: :data:`promptedit.methods.velocityedit.METHODS`) that
    ``real_images`` also measures on ``model``: all of them on a flow model, none on DDIM's."""
    from ..methods.velocityedit import METHODS, steers_velocity

    return METHODS if steers_velocity(model.make_sampler()) else ()


#: Targets of issue 32 for the exact (direct) inversion of a flow model in ``real_images``: reconstruction, the
#: colour swap's colour right, its PSNR outside the object (a DDIM model's direct inversion has none).
FLOW_DIRECT_TARGETS = {"reconstruction_psnr": Target(">=", 35.0), "edit_colour_accuracy": Target(">=", 0.90),
                       "edit_background_psnr": Target(">=", 32.0)}


@_with_run
def bench_real_images(run: _Run, n: int = 50, inner_steps: int = 10) -> SectionResult:
    """Real images: scenes rendered by the world's renderer (never generated by the model) are inverted by
    each method under their caption.

    Inversions take the model's ``inversion.num_inference_steps`` (the paper's 50) unless the run sets its steps; guidance
    is the sampling guidance. Per method: reconstruction PSNR against the rendered image and inversion time;
    then a colour word swap edited from the inversion as a user edits it (``promptedit edit --inversion`` with
    the model's defaults: a word swap of an inversion blends locally on the swapped words unless the model
    says otherwise): the edited object's colour (read inside its true mask) and the PSNR outside the edited
    object against the ground-truth render of the edited caption, i.e. what a user sees against what the
    edit should give. ``ddim`` (a flow model: ``euler``, ``rf-solver``, ``fireflow``, ``uni-inv``) is the plain
    inversion reconstructed at the sampling guidance (7.5 by the paper), to show what the pivotal methods add. When the model's edits give
    the inversion's null embeddings to the source branch only (``inversion.edit_null``), the methods that
    have such embeddings are also edited as their papers do, every branch taking them (``…_all_branches_…``).
    On a flow model the same colour swap is also made from the rendered scene by FlowEdit and UniEdit-Flow
    (:func:`velocity_methods`; no inversion file, each as ``promptedit flow-edit`` runs it) and measured alike,
    and the exact (``direct``) inversion carries issue 32's targets (:data:`FLOW_DIRECT_TARGETS`).
    """
    from ..methods.inversion import invert, reconstruct
    from ..world import colour_of, edit_scene, render
    from ..world.dataset import scene_at

    _check_n(n=n)
    stream = 8

    papers = run.model.defaults.inversion.edit_null != "all"  # also edit as the papers do
    methods = real_methods(run.model)
    velocity = velocity_methods(run.model)

    def body(out: SectionResult):
        per = {label: {"psnr": [], "seconds": [], "colour": [], "bg_psnr": [], "size": [], "all_colour": [],
                       "all_bg_psnr": []} for label, _, _ in methods}
        steered = {m: {"colour": [], "bg_psnr": [], "seconds": []} for m in velocity}
        found, i = 0, 0
        while found < n:
            scene = scene_at(HELD_OUT_SEED + stream, i)
            i += 1
            if len(scene.objects) != 1 or scene.prefix is not None or scene.night:
                continue
            rng = np.random.default_rng(np.random.SeedSequence(HELD_OUT_SEED + stream, spawn_key=(i, 1)))
            obj = scene.objects[0]
            new = _other(rng, spec.COLOURS, [obj.colour])
            src = render(scene)
            tgt_caption = colour_swap_target(scene.caption, new)
            truth = render(edit_scene(scene, tgt_caption))
            outside = ~truth.masks[0]
            size = size_bin(truth.masks[0])
            row = {"caption": scene.caption, "target": tgt_caption, "object_size": size, "methods": {}}
            images = [("rendered", src.image), ("truth", truth.image)]
            edit_spec = EditSpec(scene.caption, (tgt_caption,))  # as a user edits: the defaults, nothing more
            for label, method, w in methods:
                inv = invert(run.model, to_model_size(src.image, run.model.image_size), scene.caption, method=method,
                             num_inference_steps=run.kw["num_inference_steps"],
                             guidance_scale=run.kw["guidance_scale"] if w is None else w,
                             num_inner_steps=inner_steps, progress=False)
                rec = to_canvas(reconstruct(run.model, inv, progress=False).images[0])
                try:
                    edited = to_canvas(edit(run.model, edit_spec, start=inv, progress=False).images[1])
                except PromptEditError as e:
                    out.skip(type(e).__name__, str(e))
                    continue
                out.units += 3
                if papers and method in ("null-text", "negative-prompt"):
                    every = to_canvas(edit(run.model, edit_spec, start=inv, progress=False, edit_null="all").images[1])
                    out.units += 1
                    per[label]["all_colour"].append(colour_of(every, truth.masks[0]) == new)
                    per[label]["all_bg_psnr"].append(capped_psnr(every, truth.image, outside))
                rec_psnr = capped_psnr(rec, src.image, np.ones(rec.shape[:2], bool))
                colour_right = colour_of(edited, truth.masks[0]) == new
                bg = capped_psnr(edited, truth.image, outside)
                for key, value in (("psnr", rec_psnr), ("seconds", inv.seconds), ("colour", colour_right),
                                   ("bg_psnr", bg), ("size", size)):
                    per[label][key].append(value)
                row["methods"][label] = {"reconstruction_psnr": rec_psnr, "seconds": round(inv.seconds, 3),
                                         "edit_colour_right": bool(colour_right), "edit_background_psnr": bg}
                if found < run.examples:
                    images += [(f"{label} rec", rec), (f"{label} edit", edited)]
            for m in velocity:  # from the rendered scene itself, no inversion file
                result = _velocity_edit(run, m, to_model_size(src.image, run.model.image_size), scene.caption,
                                        tgt_caption, run.seed + found)
                edited = to_canvas(result.images[1])
                out.units += 1
                colour_right = colour_of(edited, truth.masks[0]) == new
                bg = capped_psnr(edited, truth.image, outside)
                for key, value in (("colour", colour_right), ("bg_psnr", bg), ("seconds", result.timings["total"])):
                    steered[m][key].append(value)
                row["methods"][m] = {"seconds": round(result.timings["total"], 3),
                                     "edit_colour_right": bool(colour_right), "edit_background_psnr": bg}
                if found < run.examples:
                    images.append((f"{m} edit", edited))
            out.items.append(row)
            if found < run.examples:
                out.examples.append(Example(f"{scene.caption} -> {new}", images))
            found += 1
            run.tick(out.name)
        _real_images_metrics(out, methods, per, velocity, steered)
    return _section("real_images", body)


def _real_images_metrics(out: SectionResult, methods, per: dict, velocity, steered: dict) -> None:
    """``real_images``' metrics from its per-method lists (``per``: inversions by label; ``steered``: the velocity
    edits FlowEdit and UniEdit-Flow, on a flow model)."""
    for label, method, _ in methods:
        m = per[label]
        main = label == "null-text"
        targets = FLOW_DIRECT_TARGETS if velocity and label == "direct" else {
            "reconstruction_psnr": Target(">=", 30.0), "edit_colour_accuracy": Target(">=", 0.85),
            "edit_background_psnr": Target(">=", 28.0)} if main else {}
        out.metrics[f"{label}_reconstruction_psnr"] = _metric(
            m["psnr"], "mean", targets.get("reconstruction_psnr"),
            "reconstruction vs the rendered image, dB"
            + ("" if method in {r[1] for r in REAL_METHODS} else " (plain inversion, sampled at the guidance)"))
        out.metrics[f"{label}_seconds"] = _metric(m["seconds"], "mean", None, "inversion time per image, s")
        out.metrics[f"{label}_edit_colour_accuracy"] = _metric(
            m["colour"], "rate", targets.get("edit_colour_accuracy"),
            "colour swap from the inversion: colour read inside the true mask == the new colour")
        out.metrics[f"{label}_edit_background_psnr"] = _metric(
            m["bg_psnr"], "mean", targets.get("edit_background_psnr"),
            "PSNR outside the edited object vs the ground-truth render of the edited caption, dB")
        for size, low, high in SIZE_BINS if label in ("null-text", "direct") else ():
            pick = [k for k, b in enumerate(m["size"]) if b == size]
            share = f"{low:.0%} to {min(high, 1):.0%} of the image" if high <= 1 else f"{low:.0%} of the image or more"
            out.metrics[f"{label}_edit_colour_accuracy_{size}"] = _metric(
                [m["colour"][k] for k in pick], "rate", None, f"the colour swap's colour right, {size} objects ({share})")
            out.metrics[f"{label}_edit_background_psnr_{size}"] = _metric(
                [m["bg_psnr"][k] for k in pick], "mean", None, f"its PSNR outside the object, {size} objects, dB")
        if m["all_colour"]:
            out.metrics[f"{label}_all_branches_edit_colour_accuracy"] = _metric(
                m["all_colour"], "rate", None, "same edit, every branch taking the inversion's null (the paper's)")
            out.metrics[f"{label}_all_branches_edit_background_psnr"] = _metric(
                m["all_bg_psnr"], "mean", None, "same edit, every branch taking the inversion's null, dB")
    for m in velocity:
        name = {"flowedit": "FlowEdit (inversion-free)", "uniedit": "UniEdit-Flow (Uni-Inv, then Uni-Edit)"}[m]
        out.metrics[f"{m}_edit_colour_accuracy"] = _metric(
            steered[m]["colour"], "rate", None, f"the same colour swap by {name} from the rendered scene: colour "
            "read inside the true mask == the new colour")
        out.metrics[f"{m}_edit_background_psnr"] = _metric(
            steered[m]["bg_psnr"], "mean", None, "its PSNR outside the edited object vs the ground-truth render "
            "of the edited caption, dB")
        out.metrics[f"{m}_seconds"] = _metric(steered[m]["seconds"], "mean", None,
                                               "the whole edit per image (no inversion file), s")
    nt = _mean(per["null-text"]["seconds"]) if "null-text" in per else None
    for label, _, _ in methods:
        t = _mean(per[label]["seconds"])
        out.metrics[f"{label}_time_ratio_to_null_text"] = Metric(
            None if not nt or t is None else t / nt, len(per[label]["seconds"]), None,
            "inversion time / null-text's, same images, same run")


def _velocity_edit(run: _Run, method: str, image: np.ndarray, source: str, target: str, seed: int):
    """FlowEdit or UniEdit-Flow of ``image`` as ``promptedit flow-edit`` runs it: the method's own settings, the
    run's steps and guidance where it sets them (FlowEdit's target guidance, UniEdit-Flow's guidance); ``seed``:
    FlowEdit's noise (UniEdit-Flow draws none)."""
    from ..requests import FlowEditRequest, SamplingOptions

    sampling = SamplingOptions(steps=run.kw["num_inference_steps"], guidance=run.kw["guidance_scale"],
                               seed=seed if method == "flowedit" else None)
    return FlowEditRequest(image, source, target, method, sampling=sampling).run(run.model, progress=False)


def _mask_edits(run: _Run, image: np.ndarray, caption: str, tgt: str, seed: int, authors: dict,
                with_diffedit: bool, out: SectionResult, true_mask: np.ndarray | None = None) -> dict:
    """The masks section's edits of one scene, by row name: InstDiffEdit with the model's and the authors'
    settings, the instant mask after one step alone, DiffEdit where diffusers has it, and, given the true mask
    ((H, W) bool at the image's size) on a model that runs it, KV-Edit in the instant mask and in the true one."""
    from ..methods.kvedit import kv_edit_with_mask
    from ..methods.maskedit import diffedit, instdiffedit, make_mask

    kw = {"num_inference_steps": run.kw["num_inference_steps"], "guidance_scale": run.kw["guidance_scale"]}
    results = {
        "instant": instdiffedit(run.model, image, caption, tgt, seed=seed, progress=False, **kw),
        "instant_authors": instdiffedit(run.model, image, caption, tgt, seed=seed, progress=False, **authors, **kw),
        "instant_1step": make_mask(run.model, image, caption, tgt, mask_steps=1, seed=seed, progress=False, **kw),
    }
    if with_diffedit:  # the baseline, where diffusers has it for the model's family
        results["diffedit"] = diffedit(run.model, image, caption, tgt, seed=seed, progress=False, **kw)
    else:
        out.skip("DiffEdit: diffusers has no pipeline for this model family")
    if true_mask is not None:  # KV-Edit, its instant mask made as InstDiffEdit's is
        for k, mask in (("kv_edit", None), ("kv_edit_true_mask", true_mask)):
            results[k] = kv_edit_with_mask(run.model, image, mask, caption, tgt, seed=seed, progress=False, **kw)
    return results


def _refined_masks(results: dict, image: np.ndarray, radius: int, peak: float, with_diffedit: bool) -> dict:
    """What each refinement step adds, masks alone (bool (H, W) tensors): the default instant mask without
    refinement or region selection, with the refinement but every region, DiffEdit's after the guided filter."""
    import torch

    from ..control.masks import image_soft_mask, upsample_mask

    soft, phi = torch.from_numpy(results["instant"].soft_mask), results["instant"].settings["threshold"]
    masks = {"instant_unrefined": upsample_mask(soft, image.shape[:2], phi)}
    if peak > 0:
        masks["instant_all_regions"] = image_soft_mask(soft, image, guided_filter_radius=radius) > phi
    if radius > 0 and with_diffedit:
        diff_mask = torch.from_numpy(results["diffedit"].latent_mask).float()
        masks["diffedit_refined"] = image_soft_mask(diff_mask, image, guided_filter_radius=radius) > 0.5
    return masks


def _mask_example(caption: str, new: str, src, truth, results: dict) -> Example:
    from ..images.visualize import mask_overlay

    tiles = [("rendered", src.image), ("truth", truth.image)]
    for k in ("instant", "diffedit"):
        if k in results:
            tiles += [(f"{k} mask", mask_overlay(src.image, to_canvas(results[k].mask.astype(np.uint8) * 255) > 127)),
                      (f"{k} edit", to_canvas(results[k].edited))]
    return Example(f"{caption} -> {new}", tiles)


def _mask_metrics(rows: dict, refined: dict, radius: int, instant_iou: float = 0.7) -> dict[str, Metric]:
    """The masks section's figures from its per-item rows (mask IoU, background error, colour, times);
    ``instant_iou``: the instant mask's IoU target."""
    inst, diff, one, auth = rows["instant"], rows["diffedit"], rows["instant_1step"], rows["instant_authors"]
    d_iou = _mean(diff["iou"])
    figures = {
        "instant_mask_iou": _metric(inst["iou"], "mean", Target(">=", instant_iou),
                                    "IoU with the edited object's true mask"),
        "instant_authors_mask_iou": _metric(auth["iou"], "mean", None,
                                            "same, instant masks with the authors' φ 0.2 and 2 smoothing passes"),
        "diffedit_mask_iou": _metric(diff["iou"], "mean", None, "same, DiffEdit"),
        "instant_1step_mask_iou": _metric(one["iou"], "mean", None, "same, instant mask after one step"),
        "instant_iou_minus_diffedit": Metric(None if d_iou is None or _mean(inst["iou"]) is None
                                             else _mean(inst["iou"]) - d_iou, len(inst["iou"]), Target(">=", 1e-9),
                                             "instant IoU − DiffEdit IoU (must be above 0)"),
        "instant_background_psnr": Metric(capped_pooled_psnr(inst["mse"]), _count(inst["mse"]), Target(">=", 30.0),
                                          "PSNR outside the true mask vs the ground-truth edit, dB, of the "
                                          "mean squared error over the items"),
        "instant_authors_background_psnr": Metric(capped_pooled_psnr(auth["mse"]), _count(auth["mse"]), None,
                                                  "same, the authors' mask settings"),
        "diffedit_background_psnr": Metric(capped_pooled_psnr(diff["mse"]), _count(diff["mse"]), None,
                                           "same, DiffEdit"),
        "instant_background_psnr_item_mean": _metric(inst["psnr"], "mean", None,
                                                     "instant: mean of per-item PSNRs (each capped at 100 dB)"),
        "instant_new_colour_accuracy": _metric(inst["colour"], "rate", None, "new colour read inside the true mask"),
        "instant_authors_new_colour_accuracy": _metric(auth["colour"], "rate", None,
                                                       "same, the authors' mask settings"),
        "diffedit_new_colour_accuracy": _metric(diff["colour"], "rate", None, "same, DiffEdit"),
        "instant_mask_seconds": _metric(inst["mask_s"], "mean", None, "instant mask: its whole denoising pass, s"),
        "instant_1step_mask_seconds": _metric(one["mask_s"], "mean", None, "instant mask after one step, s"),
        "diffedit_mask_seconds": _metric(diff["mask_s"], "mean", None, "DiffEdit's generate_mask, s"),
        "instant_edit_seconds": _metric(inst["total_s"], "mean", None, "whole InstDiffEdit edit incl. inpainting, s"),
        "diffedit_edit_seconds": _metric(diff["total_s"], "mean", None, "whole DiffEdit edit, s"),
    }
    kv_rows = {"kv_edit": "KV-Edit in the instant mask", "kv_edit_true_mask": "KV-Edit in the true mask"}
    for k, name in kv_rows.items() if "kv_edit" in rows else ():
        figures[f"{k}_background_psnr"] = Metric(capped_pooled_psnr(rows[k]["mse"]), _count(rows[k]["mse"]), None,
                                                 f"same, {name} (the pixels outside it are the input's)")
        figures[f"{k}_new_colour_accuracy"] = _metric(rows[k]["colour"], "rate", None, f"same, {name}")
        figures[f"{k}_edit_seconds"] = _metric(rows[k]["total_s"], "mean", None,
                                               f"whole edit, {name}" + (" incl. the mask's pass, s" if k == "kv_edit"
                                                                       else ", s"))
    described = {
        "instant_unrefined": "same, the instant mask without refinement or region selection (bilinear, then φ)",
        "instant_all_regions": "same, the instant mask refined but keeping every region",
        "diffedit_refined": f"same, DiffEdit's mask after the same guided filter ({radius} cells)"}
    for k, text in described.items():
        if refined[k]:
            figures[f"{k}_mask_iou"] = _metric(refined[k], "mean", None, text)
    dm = _mean(diff["mask_s"])
    for k, label in (("instant", "instant_mask_time_ratio"), ("instant_1step", "instant_1step_mask_time_ratio")):
        v = _mean(rows[k]["mask_s"])
        figures[label] = Metric(None if not dm or v is None else v / dm, len(rows[k]["mask_s"]),
                                 Target("<=", 0.2), f"{k} mask time / DiffEdit mask time, same run")
    return figures


@_with_run
def bench_masks(run: _Run, n: int = 50) -> SectionResult:
    """Mask-guided editing on two-object rendered scenes (real images to the model): the first object's
    colour is swapped. For instant masks (InstDiffEdit) and DiffEdit side by side, in the same run: mask IoU
    with the true mask of the edited object, PSNR outside that mask against the ground-truth render of the
    edited caption, the new colour read inside the true mask, and times (mask, whole edit). ``instant_1step``
    is the instant mask taken after the first step of the pass, alone; ``instant_authors`` the whole InstDiffEdit
    edit with the authors' φ and smoothing (no refinement, every region) instead of the model's. When the model
    refines its instant masks or selects their regions, masks alone (no edits) show what each step adds:
    ``instant_unrefined`` is the default instant mask with neither, ``instant_all_regions`` with the refinement
    but every region, and ``diffedit_refined`` DiffEdit's mask after the same guided filter. Background PSNRs are
    of the mean squared error over the items (an exact item would make a mean of per-item PSNRs infinite).
    On a model whose backbone runs KV-Edit (FLUX.1), ``kv_edit`` is KV-Edit in its instant mask and
    ``kv_edit_true_mask`` KV-Edit in the true mask, on the same scenes. On a flow model (MM-DiT: FLUX.1, SD3) the
    instant mask's IoU target is issue 32's for joint attention's maps (0.85; a UNet's 0.7).
    """
    from ..methods.maskedit import has_diffedit
    from ..defaults import MaskDefaults
    from ..world import colour_of, edit_scene, render
    from ..world.dataset import scene_at

    _check_n(n=n)
    stream = 9

    def body(out: SectionResult):
        kv = bool(run.model.backbone.token_subsets)  # KV-Edit runs on the model (a transformer's joint attention)
        rows = {k: {"iou": [], "psnr": [], "mse": [], "colour": [], "mask_s": [], "total_s": []}
                for k in ("instant", "instant_authors", "diffedit", "instant_1step")
                + (("kv_edit", "kv_edit_true_mask") if kv else ())}
        refined = {"instant_unrefined": [], "instant_all_regions": [], "diffedit_refined": []}  # mask IoUs
        radius, peak = run.model.defaults.masks.guided_filter_radius, run.model.defaults.masks.region_peak
        paper = MaskDefaults()
        authors = {"threshold": paper.threshold, "smooth_times": paper.smooth_times,
                   "guided_filter_radius": paper.guided_filter_radius, "region_peak": paper.region_peak}
        with_diffedit = has_diffedit(run.model)
        found, i = 0, 0
        while found < n:
            scene = scene_at(HELD_OUT_SEED + stream, i)
            i += 1
            if len(scene.objects) != 2 or scene.prefix is not None or scene.night:
                continue
            rng = np.random.default_rng(np.random.SeedSequence(HELD_OUT_SEED + stream, spawn_key=(i, 1)))
            new = _other(rng, spec.COLOURS, [o.colour for o in scene.objects])
            src = render(scene)
            tgt = colour_swap_target(scene.caption, new)
            truth = render(edit_scene(scene, tgt))
            true_mask = truth.masks[0]
            image = to_model_size(src.image, run.model.image_size)
            row = {"caption": scene.caption, "target": tgt}
            given = to_model_size(true_mask.astype(np.uint8) * 255, run.model.image_size) > 127 if kv else None
            results = _mask_edits(run, image, scene.caption, tgt, run.seed + found, authors, with_diffedit, out,
                                  given)
            out.units += len(results)
            for k, r in results.items():
                m = to_canvas(r.mask.astype(np.uint8) * 255) > 127
                rows[k]["iou"].append(float(mask_iou(m, true_mask)))
                rows[k]["mask_s"].append(r.timings.get("mask"))  # none where the mask was given
                if r.edited is not None:
                    edited = to_canvas(r.edited)
                    rows[k]["mse"].append(metrics.squared_error(edited, truth.image, ~true_mask))
                    rows[k]["psnr"].append(metrics.psnr_db(rows[k]["mse"][-1], PSNR_CAP))
                    rows[k]["colour"].append(colour_of(edited, true_mask) == new)
                    rows[k]["total_s"].append(r.timings["total"])
                row[k] = {"mask_iou": rows[k]["iou"][-1], "words": r.words,
                          "mask_seconds": None if rows[k]["mask_s"][-1] is None else round(rows[k]["mask_s"][-1], 4)}
            if radius > 0 or peak > 0:
                for k, m in _refined_masks(results, image, radius, peak, with_diffedit).items():
                    refined[k].append(float(mask_iou(to_canvas(m.numpy().astype(np.uint8) * 255) > 127, true_mask)))
                    row[k] = {"mask_iou": refined[k][-1]}
            out.items.append(row)
            if found < run.examples:
                out.examples.append(_mask_example(scene.caption, new, src, truth, results))
            found += 1
            run.tick(out.name)
        out.metrics = _mask_metrics(rows, refined, radius, 0.85 if velocity_methods(run.model) else 0.7)

    return _section("masks", body)


SECTION_FUNCTIONS = {
    "generation": (bench_generation, ("n_one", "n_two")),
    "p2p_colour_swap": (bench_colour_swap, ("n",)),
    "p2p_background_swap": (bench_background_swap, ("n",)),
    "p2p_shape_swap": (bench_shape_swap, ("n",)),
    "p2p_add_word": (bench_add_word, ("n_texture", "n_night", "n_prefix")),
    "p2p_reweight": (bench_reweight, ("n",)),
    "p2p_local_blend": (bench_local_blend, ("n",)),
    "real_images": (bench_real_images, ("n",)),
    "masks": (bench_masks, ("n",)),
}
assert tuple(SECTION_FUNCTIONS) == SECTIONS


def _units(name: str, ns: dict) -> int:
    """Progress units (items) of a section."""
    return sum(ns.values())


def run_world_bench(
    model,
    *,
    n: int = 50,
    sections: Sequence[str] | None = None,
    n_overrides: dict[str, dict[str, int]] | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    examples: int = 2,
    progress: bool = True,
    on_section: Callable[[BenchResult], None] | None = None,
) -> BenchResult:
    """Run the chosen ``sections`` (default: all of :data:`SECTIONS`) with ``n`` items per metric.

    ``n_overrides`` sets a section's own counts, e.g. ``{"generation": {"n_two": 10}}``.
    ``steps`` / ``guidance`` default to the model's. ``examples`` items per section are kept
    for the picture grid. A tqdm bar counts items when ``progress``. ``on_section`` is called with the
    results so far after each section (so a caller can save them before the next one starts).
    """
    _check_n(n=n, examples=examples)
    sections = list(SECTIONS if not sections else sections)
    for s in sections:
        if s not in SECTION_FUNCTIONS:
            raise ParameterError(f"unknown section {s!r}; expected one of {', '.join(SECTIONS)}")
    n_overrides = n_overrides or {}
    plan = {}
    for s in sections:
        fn, names = SECTION_FUNCTIONS[s]
        ns = {k: n for k in names}
        unknown = set(n_overrides.get(s, {})) - set(names)
        if unknown:
            raise ParameterError(f"section {s} has no count {sorted(unknown)}; it has {', '.join(names)}")
        ns.update(n_overrides.get(s, {}))
        _check_n(**ns)
        plan[s] = ns
    steps_used = model.defaults.sampling.num_inference_steps if steps is None else steps
    guidance_used = model.defaults.sampling.guidance_scale if guidance is None else guidance
    from ..runner import check_sampling

    check_sampling(steps_used, guidance_used, model)
    size = model.image_size
    settings = {
        "model": model.name, "seed": seed, "num_inference_steps": steps_used, "guidance_scale": float(guidance_used),
        "image_size": size, "resized_from": None if size == CANVAS else [size, size],
        "read_at": [CANVAS, CANVAS], "held_out_seed": HELD_OUT_SEED, "streams": STREAMS,
        "counts": plan, "model_defaults": model.defaults.to_dict(),
    }
    if velocity_methods(model):  # a flow model's sampler (a DDIM model's settings and report stay as they were)
        settings["sampler"] = model.make_sampler().name
    bar = _bar(sum(_units(s, ns) for s, ns in plan.items()), progress)
    run = _Run(model, seed, steps, guidance, examples, bar)
    out = {}
    try:
        for s, ns in plan.items():
            out[s] = SECTION_FUNCTIONS[s][0](model, _run=run, **ns)
            if on_section is not None:
                on_section(BenchResult(settings, dict(out)))
    finally:
        if bar is not None:
            bar.close()
    return BenchResult(settings, out)


# ----------------------------------------------------------------------------- report


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def metric_rows(result: BenchResult) -> list[dict]:
    """One row per metric: metric (``section.name``), value, target, result (pass / fail / —), n."""
    rows = []
    for sname, section in result.sections.items():
        for mname, m in section.metrics.items():
            p = m.passed
            rows.append({"metric": f"{sname}.{mname}", "value": _fmt(m.value),
                         "target": str(m.target) if m.target else "—",
                         "result": "—" if p is None else ("pass" if p else "fail"), "n": m.n})
    return rows


def markdown_report(result: BenchResult) -> str:
    """The benchmark as Markdown: settings, a table (metric, value, target, pass/fail, n), skips, timings."""
    s = result.settings
    lines = [
        "# Shapes-world benchmark",
        "",
        f"Model `{s['model']}`, {s['num_inference_steps']} {s.get('sampler', 'DDIM')} steps, guidance {s['guidance_scale']:g}, "
        f"x_T seeds from {s['seed']}, captions held out (seed {s['held_out_seed']} + stream).",
    ]
    if s.get("resized_from"):
        lines.append(f"Images are {s['resized_from'][0]} px; they were resized to 64 x 64 (nearest) before reading.")
    failed = [r for r in metric_rows(result) if r["result"] == "fail"]
    lines += ["", f"**{'All targets met' if not failed else f'{len(failed)} target(s) not met'}.**", "",
              "| metric | value | target | pass/fail | n |", "| --- | --- | --- | --- | --- |"]
    for r in metric_rows(result):
        lines.append(f"| {r['metric']} | {r['value']} | {r['target']} | {r['result']} | {r['n']} |")
    skips = [(name, reason, k) for name, sec in result.sections.items() for reason, k in sec.skipped.items()]
    if skips:
        lines += ["", "Skipped or partly measured items:", ""]
        lines += [f"- {name}: {reason} × {k}" for name, reason, k in skips]
    lines += ["", "| section | items | calls | seconds | s / item |", "| --- | --- | --- | --- | --- |"]
    for name, sec in result.sections.items():
        per = sec.seconds_per_item
        lines.append(f"| {name} | {len(sec.items)} | {sec.units} | {sec.seconds:.1f} | "
                     f"{'—' if per is None else f'{per:.2f}'} |")
    return "\n".join(lines) + "\n"


def example_cells(result: BenchResult, cols: int = 3) -> tuple[list[np.ndarray], list[str], int]:
    """Images and labels for a grid of the examples, one example per row (padded with white)."""
    examples = [(name, ex) for name, sec in result.sections.items() for ex in sec.examples]
    if not examples:
        return [], [], cols
    cols = max(cols, max(len(ex.images) for _, ex in examples))
    images, labels = [], []
    for name, ex in examples:
        blank = np.full_like(ex.images[0][1], 255)
        for k in range(cols):
            if k < len(ex.images):
                label, im = ex.images[k]
                images.append(im)
                labels.append(f"{name.replace('p2p_', '')}: {label}" if k == 0 else label)
            else:
                images.append(blank)
                labels.append("")
    return images, labels, cols


def _short(caption: str) -> str:
    return caption.replace(" background", "").replace(" on a ", " / ")


def _describe(reading: Reading) -> dict:
    return {"background": reading.background, "night": reading.night,
            "objects": [{"colour": o.colour, "shape": o.shape, "box": [round(v, 2) for v in o.box],
                         "area": o.area} for o in reading.objects]}


__all__ = [
    "SECTIONS", "REWEIGHTS", "STREAMS", "Target", "Metric", "Example", "SectionResult", "BenchResult",
    "velocity_methods", "held_out_items", "swap_object_word", "colour_swap_target", "to_canvas", "box_iou", "centre_distance",
    "capped_psnr", "sharpness", "bench_generation", "bench_colour_swap", "bench_background_swap", "bench_shape_swap",
    "bench_add_word", "bench_reweight", "bench_local_blend", "run_world_bench", "metric_rows",
    "markdown_report", "example_cells",
]
