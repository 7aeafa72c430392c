"""The web app: ``promptedit serve`` (Gradio).

Tabs: Prompt-to-Prompt on generated images; real images (upload, invert, see the reconstruction and its
PSNR, then edit as often as wanted from the same inversion); masks (instant and DiffEdit masks with
overlays, or a painted mask); attention maps. Every result comes as a gallery (downloadable) and a
``result.json``.

Safe by default: binds 127.0.0.1; uploads are limited in bytes and pixels and must be images; the app
reads no path given by a browser and writes only to its own temporary folder; requests queue.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import PromptEditError, internal_error_line

#: every event's concurrency group: requests run one at a time on the one model (Gradio gives each event its own
#: group otherwise, and two edits at once would install their attention hooks on the same UNet)
MODEL_QUEUE = "model"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 16_000_000


def _parse_weights(text: str) -> dict[str, float]:
    from .errors import ParameterError

    out = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        if "=" not in item:
            raise ParameterError(f"re-weighting must be WORD=C, got {item!r}")
        word, value = item.rsplit("=", 1)
        try:
            out[word.strip()] = float(value)
        except ValueError:
            raise ParameterError(f"re-weighting of {word.strip()!r} needs a number, got {value!r}") from None
    return out


def _words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in (text or "").split(",") if w.strip())


def _check_upload(path: str | None) -> tuple[Path, str]:
    """An uploaded file checked by the image reader's rules: (its path, the name to show for it, never the
    server's temporary path)."""
    from .errors import ImageInputError
    from .images.inputs import open_image

    from .images.inputs import check_input_file

    if not path:
        raise ImageInputError("upload an image first")
    p = Path(path)
    name = p.name  # Gradio keeps the uploaded file's own name as the last component
    check_input_file(p, "upload", name)  # gone (an expired upload), a folder, unreadable
    if p.stat().st_size > MAX_UPLOAD_BYTES:
        raise ImageInputError(f"the upload {name} is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    with open_image(p, what="upload", name=name, max_pixels=MAX_UPLOAD_PIXELS):
        pass
    return p, name


def _seed(value) -> int:
    """A seed from the browser's number box: a whole number in [0, 2^63)."""
    from .errors import ParameterError

    if value is None or value == "":
        raise ParameterError("enter a seed (a whole number from 0)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"the seed must be a whole number, got {value!r}") from None
    if not number.is_integer() or not 0 <= number < 2**63:
        raise ParameterError(f"the seed must be a whole number in [0, 2^63), got {value!r}")
    return int(value) if isinstance(value, int) else int(number)


def _number(value, name: str, whole: bool = False):
    """A number from a slider or number box (which can send None or text): a finite float, or a whole int."""
    from .errors import ParameterError

    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number) or (whole and not number.is_integer()):
        raise ParameterError(f"{name} must be a finite {'whole ' if whole else ''}number, got {value!r}")
    return int(number) if whole else number


def _optional(value, name: str):
    """An optional setting: None stays None (the model's default)."""
    return None if value is None else _number(value, name)


def _negative(text) -> str | None:
    """A negative-prompt textbox: None when left blank."""
    return text if (text or "").strip() else None


class App:
    """The app's state: one model and a private output folder (removed by :meth:`close`, or when the app is
    garbage-collected or the interpreter exits, unless the folder was given)."""

    def __init__(self, model, out_dir: str | None = None):
        import weakref

        self.model = model
        self.out = Path(out_dir or tempfile.mkdtemp(prefix="promptedit-app-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.out), True) if out_dir is None else None
        self.blocks = None  # the Gradio app, once served

    def close(self) -> None:
        """Stop the server (when one runs) and remove the app's temporary folder (when it made one)."""
        if self.blocks is not None:
            self.blocks.close()
            self.blocks = None
        if self._cleanup is not None:
            self._cleanup()

    def _name(self, kind: str) -> Path:
        """A new output's path in the app's folder, without its suffix: ``KIND-<time>-<counter>``."""
        return self.out / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{time.perf_counter_ns() % 10**6}"

    def _record(self, kind: str, result=None, **fields) -> str:
        """The record alone (an inversion, attention maps), as KIND-….json; returns its path."""
        from .outputs.files import write_json
        from .outputs.records import build_record

        path = self._name(kind).with_suffix(".json")
        write_json(path, build_record(f"app {kind}", self.model, result, extra=fields or None))
        return str(path)

    def _save(self, kind: str, result, **fields) -> str:
        """An edit's result folder (images, grid, masks, result.json) as the CLI writes it
        (:func:`promptedit.outputs.files.write_result_folder`), in KIND-…/; returns its record's path."""
        from .outputs.files import write_result_folder

        folder = self._name(kind)
        write_result_folder(folder, self.model, result, command=f"app {kind}", extra=fields or None)
        return str(folder / "result.json")

    # ------------------------------------------------------------------ Prompt-to-Prompt
    def p2p(self, source, target, mode, cross_start, cross_end, self_replace, reweight, blend, seed, steps, guidance,
            negative=None):
        from .methods.editing import EditSpec
        from .requests import EditRequest, SamplingOptions
        from .images.visualize import cross_attention_grid, token_labels

        # a re-weighting may leave the edited prompt empty (it re-weights the source); other edits need one
        target = source if mode == "reweight" and not (target or "").strip() else target
        spec = EditSpec(source=source, targets=(target,), mode=mode,
                        cross_replace=(_number(cross_start, "cross-attention start"),
                                       _number(cross_end, "cross-attention end")),
                        self_replace=_number(self_replace, "self-attention window"),
                        reweight=_parse_weights(reweight), blend_words=_words(blend))
        sampling = SamplingOptions(steps=_number(steps, "steps", whole=True), guidance=_number(guidance, "guidance"),
                                   seed=_seed(seed), negative_prompt=_negative(negative))
        res = EditRequest(spec, sampling, save_attention=True).run(self.model, progress=True)
        maps = res.attention.maps(downsample=res.attention_downsample)
        grids = [np.asarray(cross_attention_grid(res.images[i], maps[i], token_labels(self.model.tokenizer, p), cols=4))
                 for i, p in enumerate(res.prompts)]
        gallery = [(res.images[0], "source"), (res.images[1], "edit"), (grids[0], "attention: source"),
                   (grids[1], "attention: edit")]
        record = self._save("edit", res)
        mode_text = res.mode + (f" ({res.notes[0]})" if res.notes else "")
        return gallery, mode_text, record

    def one_prompt(self, text, syntax, seed, steps, guidance, negative=None):
        """A Prompt-to-Prompt edit said in one prompt (AUTOMATIC1111's or compel's edit syntax): the gallery, the
        equivalent command-line flags, and the record."""
        from .methods.editing import EditSpec
        from .requests import EditRequest, SamplingOptions
        from .text.syntax import parse_edit_prompt

        steps = _number(steps, "steps", whole=True)
        parsed = parse_edit_prompt(text or "", syntax or "auto", num_inference_steps=steps)
        spec = EditSpec(**parsed.spec_kwargs())
        sampling = SamplingOptions(steps=steps, guidance=_number(guidance, "guidance"), seed=_seed(seed),
                                   negative_prompt=_negative(negative))
        res = EditRequest(spec, sampling).run(self.model, progress=True)
        flags = shlex.join(parsed.flags())
        record = self._save("edit", res, one_prompt={**parsed.to_dict(), "equivalent_flags": parsed.flags()})
        gallery = [(res.images[0], f"source: {spec.source}"), (res.images[1], f"edit: {spec.targets[0]}")]
        return gallery, f"{parsed.syntax}: promptedit edit {flags}", record

    # ------------------------------------------------------------------ real images
    def invert(self, upload, caption, method, steps, guidance):
        from .images.inputs import load_image
        from .methods.inversion import reconstruct
        from .images.metrics import psnr
        from .requests import InvertRequest, SamplingOptions

        size = (self.model.image_size, self.model.image_size)
        path, name = _check_upload(upload)
        prepared = load_image(path, size, name=name)
        sampling = SamplingOptions(steps=_number(steps, "steps", whole=True), guidance=_number(guidance, "guidance"))
        inv = InvertRequest(prepared.image, caption, method=method, sampling=sampling,
                            image_rule=prepared.rule).run(self.model, progress=True)
        rec = reconstruct(self.model, inv, progress=False)
        value = psnr(rec.images[0], prepared.image)
        record = self._record("invert", rec, reconstruction_psnr=round(value, 3), image_rule=prepared.rule)
        info = f"{method}: reconstruction PSNR {value:.2f} dB in {inv.seconds:.1f} s ({prepared.rule})"
        return [(prepared.image, "input"), (rec.images[0], "reconstruction")], info, inv.to_bytes(), record

    def edit_real(self, inversion_bytes, target, mode, blend, reweight, edit_null=None, negative=None):
        """An edit of the inversion made by ``invert``; ``edit_null``: which branches take its null embeddings
        (``all`` or ``source``; None for the model's default); ``negative``: the edit's negative prompt (ddim and
        direct inversions)."""
        from .methods.editing import EditSpec
        from .errors import ParameterError
        from .methods.inversion import Inversion
        from .requests import EditRequest, SamplingOptions

        if not inversion_bytes:
            raise ParameterError("invert an image first")
        inv = Inversion.from_bytes(inversion_bytes)
        spec = EditSpec(source=inv.prompt, targets=(target,), mode=mode, blend_words=_words(blend),
                        reweight=_parse_weights(reweight))
        res = EditRequest(spec, SamplingOptions(negative_prompt=_negative(negative)), inversion=inv,
                          edit_null=edit_null or None).run(self.model, progress=True)
        record = self._save("edit", res)
        return [(res.images[0], "reconstruction"), (res.images[1], "edit")], record

    # ------------------------------------------------------------------ velocity edits (flow models)
    def flow_edit(self, upload, source, target, method, steps, guidance, seed):
        """A velocity edit of an uploaded image on a flow model (FlowEdit or UniEdit-Flow: ``method``); None or
        blank steps and guidance take the method's defaults."""
        from .images.inputs import load_image
        from .requests import FlowEditRequest, SamplingOptions

        size = (self.model.image_size, self.model.image_size)
        path, name = _check_upload(upload)
        prepared = load_image(path, size, name=name)
        blank = (None, "")
        sampling = SamplingOptions(steps=None if steps in blank else _number(steps, "steps", whole=True),
                                   guidance=None if guidance in blank else _number(guidance, "guidance"),
                                   seed=None if method == "uniedit" else _seed(seed))
        res = FlowEditRequest(prepared.image, source, target, method=method, sampling=sampling).run(self.model,
                                                                                                   progress=True)
        record = self._save("flow-edit", res)
        return [(prepared.image, "input"), (res.edited, "edit")], record

    # ------------------------------------------------------------------ masks
    def masks(self, upload, painted, source, target, method, seed, steps, guidance, strength=0.5, threshold=None,
              guided_filter=None, region_peak=None, negative=None):
        """A mask (instant, DiffEdit or painted) and the edit inside it. ``strength``: the noise level the edit
        starts from; ``threshold`` (φ), ``guided_filter`` (its radius in map cells) and ``region_peak`` are
        the instant mask's, None for the model's defaults."""
        from .images.inputs import load_image
        from .requests import InstantOptions, MaskEditRequest, SamplingOptions
        from .images.visualize import mask_overlay, mask_tile

        from .errors import ParameterError

        if method not in MASK_CHOICES:
            raise ParameterError(f"choose a mask: {', '.join(MASK_CHOICES)} (got {method!r})")
        kv, painted_mask = method.startswith("kv-edit"), method in ("painted", "kv-edit (painted)")
        size = (self.model.image_size, self.model.image_size)
        path, name = _check_upload(upload)
        prepared = load_image(path, size, name=name)
        sampling = SamplingOptions(steps=_number(steps, "steps", whole=True), guidance=_number(guidance, "guidance"),
                                   seed=_seed(seed), negative_prompt=_negative(negative))
        instant = InstantOptions()
        if method in ("instant", "kv-edit (instant)"):
            instant = InstantOptions(threshold=_optional(threshold, "threshold"),
                                     guided_filter_radius=_optional(guided_filter, "guided-filter radius"),
                                     region_peak=_optional(region_peak, "region peak"))
        mask = _painted_mask(painted, size, like=prepared.oriented_size) if painted_mask else None
        res = MaskEditRequest(source, target, image=prepared.image,
                              method="kv-edit" if kv else "mask" if painted_mask else method,
                              mask=mask, strength=_number(strength, "strength"), instant=instant,
                              sampling=sampling).run(self.model, progress=True)
        record = self._save("mask-edit", res)
        made = f", made in {res.timings['mask']:.2f} s" if "mask" in res.timings else ""
        info = f"{res.method}: mask {res.mask.mean():.0%} of the image{made}"
        return ([(prepared.image, "input"), (mask_overlay(prepared.image, res.mask), "mask outline"),
                 (mask_tile(res.mask), "mask (white = edited)"), (res.edited, "edit")], info, record)

    # ------------------------------------------------------------------ attention
    def attention(self, prompt, seed, steps, guidance):
        from .methods.editing import attention
        from .images.visualize import cross_attention_grid, token_labels

        res = attention(self.model, prompt, seed=_seed(seed), num_inference_steps=_number(steps, "steps", whole=True),
                        guidance_scale=_number(guidance, "guidance"), self_attention=False, progress=True)
        maps = res.attention.maps(downsample=res.attention_downsample)[0]
        grid = np.asarray(cross_attention_grid(res.images[0], maps, token_labels(self.model.tokenizer, prompt), cols=4))
        record = self._record("attention", res)
        return [(res.images[0], "image"), (grid, "cross-attention per token")], record


#: the Masks tab's choices: the mask (and the edit inside it; kv-edit: KV-Edit on FLUX.1 inside an instant or a
#: painted mask, strength then only the instant mask's noise level)
MASK_CHOICES = ("instant", "diffedit", "painted", "kv-edit (instant)", "kv-edit (painted)")


def _painted_mask(painted, size, like=None) -> np.ndarray:
    """The painted layers of a Gradio ImageEditor value, as an (H, W) bool mask at ``size``, brought there as
    the image was (the same centre crop); ``like``: the image's (width, height), whose shape the canvas must
    have (paint on the image itself)."""
    from PIL import Image

    from .errors import ImageInputError
    from .images.inputs import prepare_mask

    layers = [layer for layer in ((painted.get("layers") if isinstance(painted, dict) else None) or [])
              if layer is not None]
    if not layers:
        raise ImageInputError("paint the region to edit on the mask canvas first")
    alpha = None
    for layer in layers:
        a = np.asarray(layer)
        if a.ndim not in (2, 3) or not np.issubdtype(a.dtype, np.number):
            raise ImageInputError("the painted mask's layers are not images")
        a = a[..., 3] if a.ndim == 3 and a.shape[2] == 4 else (a.max(-1) if a.ndim == 3 else a)
        if alpha is not None and a.shape != alpha.shape:
            raise ImageInputError(f"the painted layers differ in size ({alpha.shape[1]}x{alpha.shape[0]} and "
                                  f"{a.shape[1]}x{a.shape[0]})")
        alpha = a if alpha is None else np.maximum(alpha, a)
    canvas = Image.fromarray((alpha > 0).astype(np.uint8) * 255)
    m = prepare_mask(canvas, size, "crop", like=like, name="the painted canvas")
    if not m.any():
        raise ImageInputError("the painted mask is empty (inside the image's centre crop)")
    return m


def _guard(fn):
    """Turn library errors into a clear message in the browser (no traceback), and show the library's warnings
    there (an over-long prompt, words the model does not know, a mask read by a rule), each once, as the CLI's
    ``warning:`` lines. Recording warnings changes the warnings module's state for the call: safe because every
    request runs alone (one queue for the model, :data:`MODEL_QUEUE`)."""
    import functools
    import warnings

    import gradio as gr

    from .errors import PromptEditWarning

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PromptEditWarning)
                out = fn(*args, **kwargs)
            said = []
            for w in caught:
                if issubclass(w.category, PromptEditWarning):
                    if str(w.message) not in said:
                        said.append(str(w.message))
                else:  # the libraries' own: to the console, as without the app
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            for message in said:
                gr.Warning(message)
            return out
        except PromptEditError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except RecursionError:
            raise gr.Error("the input is nested too deeply to read", print_exception=False) from None
        except Exception as e:  # a defect of ours: one line in the browser, the traceback on the server's console
            raise gr.Error(f"{internal_error_line(e)}; please report it") from e

    return wrapper


def _negative_box(gr, elem_id: str, label: str = "negative prompt (blank: none)"):
    """A tab's negative-prompt textbox."""
    return gr.Textbox(label=label, placeholder="what the image should not show", elem_id=elem_id)



def _inversion_methods(model) -> tuple[list[str], str]:
    """The inversion methods the model runs (its sampler's; null-text and negative-prompt where its guidance is
    classifier-free), and the one the Real image tab starts on: negative-prompt where it runs (fast, no
    optimisation), else the model's default."""
    from .guidance import ClassifierFree
    from .methods.inversion import NEEDS_CLASSIFIER_FREE, default_method, sampler_methods

    free = isinstance(model.make_guidance(1.0), ClassifierFree)
    methods = [m for m in sampler_methods(model.make_sampler()) if free or m not in NEEDS_CLASSIFIER_FREE]
    return methods, "negative-prompt" if "negative-prompt" in methods else default_method(model)


def _flow_edit_tab(gr, app: App) -> None:
    """The Flow edit tab, on flow-matching models only: FlowEdit or UniEdit-Flow of an uploaded image."""
    if "euler" not in app.model.make_sampler().solvers:
        return
    with gr.Tab("Flow edit"):
        with gr.Row():
            f_upload = gr.File(label="image", file_types=["image"], elem_id="flow-upload")
            f_source = gr.Textbox(label="caption (source prompt)", elem_id="flow-source")
            f_target = gr.Textbox(label="edited prompt", elem_id="flow-target")
            f_method = gr.Dropdown(["flowedit", "uniedit"], value="flowedit",
                                   label="FlowEdit (inversion-free) / UniEdit-Flow (velocity fusion)")
        with gr.Row():
            f_steps = gr.Number(value=None, precision=0, label="steps (blank: FlowEdit 28, UniEdit-Flow 15)")
            f_guidance = gr.Number(value=None, label="guidance (blank: FlowEdit's target 5.5, UniEdit-Flow 1)")
            f_seed = gr.Number(value=0, precision=0, label="seed (FlowEdit's noise)")
        f_run = gr.Button("Edit", variant="primary", elem_id="flow-run")
        f_gallery = gr.Gallery(label="input and edit", columns=2, elem_id="flow-gallery", object_fit="contain",
                               height="auto")
        f_record = gr.File(label="result.json")
        f_run.click(_guard(app.flow_edit), [f_upload, f_source, f_target, f_method, f_steps, f_guidance, f_seed],
                    [f_gallery, f_record], concurrency_id=MODEL_QUEUE)


def build(app: App):
    """The Gradio Blocks of the app."""
    import gradio as gr

    d = app.model.defaults
    steps_kw = dict(minimum=1, maximum=100, step=1, value=d.sampling.num_inference_steps, label="steps")
    guide_kw = dict(minimum=0.0, maximum=20.0, step=0.5, value=d.sampling.guidance_scale, label="guidance")
    with gr.Blocks(title="promptedit", analytics_enabled=False) as demo:  # no calls home from a local tool
        gr.Markdown(f"# promptedit\nEdit images by editing their prompts. Model: `{app.model.name}`.")
        with gr.Tab("Prompt-to-Prompt"):
            with gr.Row():
                source = gr.Textbox(label="source prompt", value="a red circle on a white background", elem_id="p2p-source")
                target = gr.Textbox(label="edited prompt", value="a blue circle on a white background", elem_id="p2p-target")
            with gr.Row():
                mode = gr.Dropdown(["auto", "replace", "refine", "reweight"], value="auto", label="mode")
                cross_start = gr.Slider(0, 1, value=0.0, step=0.05, label="cross-attention window: start")
                cross_end = gr.Slider(0, 1, value=d.p2p.cross_replace, step=0.05, label="cross-attention window: end")
                self_rep = gr.Slider(0, 1, value=d.p2p.self_replace, step=0.05, label="self-attention window")
            with gr.Row():
                reweight = gr.Textbox(label="re-weight (WORD=C, …)", placeholder="striped=3")
                blend = gr.Textbox(label="local blend words (comma-separated)", placeholder="red, blue")
                seed = gr.Number(value=0, precision=0, label="seed")
                steps = gr.Slider(**steps_kw)
                guidance = gr.Slider(**guide_kw)
                negative = _negative_box(gr, "p2p-negative")
            run = gr.Button("Edit", variant="primary", elem_id="p2p-run")
            used = gr.Textbox(label="mode used", interactive=False, elem_id="p2p-mode")
            gallery = gr.Gallery(label="results", columns=4, elem_id="p2p-gallery", object_fit="contain", height="auto")
            record = gr.File(label="result.json")
            run.click(_guard(app.p2p), [source, target, mode, cross_start, cross_end, self_rep, reweight, blend, seed,
                                        steps, guidance, negative], [gallery, used, record], concurrency_id=MODEL_QUEUE)
        with gr.Tab("One prompt"):
            gr.Markdown("The whole edit in one prompt, as AUTOMATIC1111 (`a [red:blue:0.6] circle`, `(white:1.2)`) "
                        "or compel (`a red.swap(blue) circle`, `white++`) write it; the equivalent flags are shown.")
            with gr.Row():
                o_text = gr.Textbox(label="edit prompt", value="a [red:blue:0.6] circle on a (white:1.2) background",
                                    elem_id="one-prompt")
                o_syntax = gr.Dropdown(["auto", "a1111", "compel"], value="auto", label="syntax")
                o_seed = gr.Number(value=0, precision=0, label="seed")
                o_steps = gr.Slider(**steps_kw)
                o_guidance = gr.Slider(**guide_kw)
                o_negative = _negative_box(gr, "one-negative")
            o_run = gr.Button("Edit", variant="primary", elem_id="one-run")
            o_flags = gr.Textbox(label="as flags", interactive=False, elem_id="one-flags")
            o_gallery = gr.Gallery(label="source and edit", columns=2, elem_id="one-gallery", object_fit="contain",
                                   height="auto")
            o_record = gr.File(label="result.json")
            o_run.click(_guard(app.one_prompt), [o_text, o_syntax, o_seed, o_steps, o_guidance, o_negative],
                        [o_gallery, o_flags, o_record], concurrency_id=MODEL_QUEUE)
        with gr.Tab("Real image"):
            with gr.Row():
                upload = gr.File(label="image (PNG, JPEG, WebP)", file_types=["image"], elem_id="real-upload")
                caption = gr.Textbox(label="caption (source prompt)", value="a red circle on a white background",
                                     elem_id="real-caption")
                method = gr.Dropdown(*_inversion_methods(app.model), label="inversion method")
                r_steps = gr.Slider(**{**steps_kw, "value": d.inversion.num_inference_steps})
                r_guidance = gr.Slider(**guide_kw)
            invert_btn = gr.Button("Invert", variant="primary", elem_id="real-invert")
            inv_state = gr.State(None)
            inv_info = gr.Textbox(label="inversion", interactive=False, elem_id="real-info")
            inv_gallery = gr.Gallery(label="input and reconstruction", columns=2, elem_id="real-recon", object_fit="contain", height="auto")
            inv_record = gr.File(label="result.json")
            with gr.Row():
                r_target = gr.Textbox(label="edited prompt", value="a blue circle on a white background",
                                      elem_id="real-target")
                r_mode = gr.Dropdown(["auto", "replace", "refine", "reweight"], value="auto", label="mode")
                r_blend = gr.Textbox(label="local blend words")
                r_reweight = gr.Textbox(label="re-weight (WORD=C, …)")
                r_null = gr.Dropdown(["all", "source"], value=d.inversion.edit_null,
                                     label="inversion's null embeddings in: all branches (the papers') / the source only")
                r_negative = _negative_box(gr, "real-negative", "negative prompt (ddim and direct inversions)")
            edit_btn = gr.Button("Edit (reuses the inversion)", elem_id="real-edit")
            edit_gallery = gr.Gallery(label="edit", columns=2, elem_id="real-gallery", object_fit="contain", height="auto")
            edit_record = gr.File(label="result.json")
            invert_btn.click(_guard(app.invert), [upload, caption, method, r_steps, r_guidance],
                             [inv_gallery, inv_info, inv_state, inv_record], concurrency_id=MODEL_QUEUE)
            edit_btn.click(_guard(app.edit_real), [inv_state, r_target, r_mode, r_blend, r_reweight, r_null, r_negative],
                           [edit_gallery, edit_record], concurrency_id=MODEL_QUEUE)
        _flow_edit_tab(gr, app)
        with gr.Tab("Masks"):
            with gr.Row():
                m_upload = gr.File(label="image", file_types=["image"], elem_id="mask-upload")
                m_source = gr.Textbox(label="source prompt", value="a red circle and a blue star on a white background")
                m_target = gr.Textbox(label="edited prompt", value="a green circle and a blue star on a white background")
                m_method = gr.Dropdown(list(MASK_CHOICES), value="instant", label="mask")
            painted = gr.ImageEditor(label="painted mask (for 'painted' and 'kv-edit (painted)')", type="numpy")
            with gr.Row():
                m_seed = gr.Number(value=0, precision=0, label="seed")
                m_steps = gr.Slider(**steps_kw)
                m_guidance = gr.Slider(**guide_kw)
                m_strength = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="strength (noise level of the edit)")
                m_negative = _negative_box(gr, "mask-negative")
            with gr.Accordion("instant-mask settings", open=False):
                with gr.Row():
                    m_threshold = gr.Slider(0.0, 0.95, value=d.masks.threshold, step=0.05,
                                            label="threshold φ of the normalised mask")
                    m_refine = gr.Slider(0.0, 8.0, value=d.masks.guided_filter_radius, step=0.5,
                                         label="edge refinement: guided-filter radius in map cells (0: off)")
                    m_region = gr.Slider(0.0, 1.0, value=d.masks.region_peak, step=0.05,
                                         label="keep regions whose peak reaches this fraction of the strongest's")
            m_run = gr.Button("Mask and edit", variant="primary", elem_id="mask-run")
            m_info = gr.Textbox(label="mask", interactive=False, elem_id="mask-info")
            m_gallery = gr.Gallery(label="mask and edit", columns=4, elem_id="mask-gallery", object_fit="contain", height="auto")
            m_record = gr.File(label="result.json")
            m_run.click(_guard(app.masks), [m_upload, painted, m_source, m_target, m_method, m_seed, m_steps,
                                            m_guidance, m_strength, m_threshold, m_refine, m_region, m_negative],
                        [m_gallery, m_info, m_record], concurrency_id=MODEL_QUEUE)
        with gr.Tab("Attention maps"):
            with gr.Row():
                a_prompt = gr.Textbox(label="prompt", value="a striped yellow star on a gray background")
                a_seed = gr.Number(value=0, precision=0, label="seed")
                a_steps = gr.Slider(**steps_kw)
                a_guidance = gr.Slider(**guide_kw)
            a_run = gr.Button("Show attention", variant="primary")
            a_gallery = gr.Gallery(label="attention", columns=2, object_fit="contain", height="auto")
            a_record = gr.File(label="result.json")
            a_run.click(_guard(app.attention), [a_prompt, a_seed, a_steps, a_guidance], [a_gallery, a_record],
                        concurrency_id=MODEL_QUEUE)
    return demo


def serve(model, *, host: str = "127.0.0.1", port: int = 7860, out_dir: str | None = None, block: bool = True):
    """Build and launch the app; requests queue one at a time on the model. Blocking, it returns when the server
    stops, its temporary folder removed; with ``block=False`` it returns the running :class:`App`, whose
    ``close()`` stops the server and removes the folder. Gradio keeps uploads and the images it serves in the
    folder its ``GRADIO_TEMP_DIR`` names, read while it serves (``promptedit serve`` gives it the app's own
    folder for its process's time; this function leaves the environment alone)."""
    app = App(model, out_dir)
    app.blocks = build(app)
    app.blocks.queue(default_concurrency_limit=1, max_size=32)
    try:
        app.blocks.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD_BYTES, share=False,
                          show_error=True, prevent_thread_lock=not block, allowed_paths=[str(app.out)])
    except BaseException:
        app.close()
        raise
    if block:  # the server has stopped: its records go with it
        app.close()
    return app
