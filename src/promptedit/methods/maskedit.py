"""Mask-guided editing on the one runner: InstDiffEdit's instant masks, user-given masks, and DiffEdit (through
diffusers' own pipeline) as the baseline.

All of them edit the same way once a mask exists: the source is noised to strength r (a
:class:`~promptedit.runner.NoisedImage` start) and denoised under the edit text while the region outside the mask
is replaced, at every step, by the source noised to that step. InstDiffEdit makes its mask during that very
pass (:class:`promptedit.control.masks.InstantMask`), then removes the seams with an inpainting pass over its last mask.
KV-Edit (FLUX.1), which edits inside a mask by other means, is :mod:`promptedit.methods.kvedit`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..control import AttentionControl, blend_latents
from ..errors import ParameterError, PromptError, check_real, check_whole
from ..control.masks import InstantMask, cells_touched, edited_words, image_soft_mask, strongest_regions
from ..models import DiffusionModel
from ..runner import (NoisedImage, Prepared, Sampling, decode_latents, make_generator, resolve_sampling, run,
                     to_uint8)
from ..samplers import strength_start
from ..control.edit_spec import _check_prompt
from ..text.tokens import prompt_words
from .result import MaskEditResult

MASK_METHODS = ("instant", "diffedit")
ANCHORS = ("source", "edited", "start-token")  # where instant masks take their maps and anchor (see instdiffedit)


class MaskBlend(AttentionControl):
    """Keeps the noised source outside a fixed mask after each step: x_t ← src_t + M ⊙ (x_t − src_t)."""

    def __init__(self, mask: torch.Tensor, sources: torch.Tensor):
        super().__init__()
        self.mask = mask  # (h, w) at latent resolution
        self.sources = sources  # (steps, [n,] C, h, w)

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        src = self.sources[self.cur_step].to(x_t.device, x_t.dtype)
        src = src[None] if src.dim() == 3 else src
        return blend_latents(x_t, self.mask.to(x_t.device)[None, None], src)


def edit_words(model: DiffusionModel, prompt: str, what: str = "edit text") -> tuple[list[str], list[list[int]]]:
    """The words of ``prompt`` (lower-cased, punctuation left out) and their key positions (in every encoder's part
    of the keys: :class:`~promptedit.text.tokens.TextKeys`)."""
    model.text.tokenize(prompt, warn=False)  # refuses a prompt the family's tokenizers disagree on
    tokens = model.keys.tokenize(prompt)
    words, toks = [], []
    for w, a, b in prompt_words(prompt):
        idx = model.keys.span_positions(prompt, a, b, tokens)
        if idx and any(ch.isalnum() for ch in w):
            words.append(w)
            toks.append(idx)
    if not words:
        raise PromptError(f"the {what} {prompt!r} has no words")
    return words, toks


def keep_outside_mask(edited: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The edit inside ``mask`` (H, W) bool, the input ``image`` (H, W, 3) outside it, pixel for pixel."""
    return np.where(mask[..., None], edited, image)


def _mask_sampling(model, image, num_inference_steps, guidance_scale, allow_large: bool = False,
                   negative_prompt: str | None = None) -> Sampling:
    """The pass's sampling (with the negative prompt of its unconditional branch, if any); the image's size is
    checked as generation checks it (a multiple of the model's factor, at most 4x its native size unless
    ``allow_large``, within free memory)."""
    return resolve_sampling(model, NoisedImage(image=image), num_inference_steps, guidance_scale, batch=2,
                            allow_large=allow_large, negative_prompt=negative_prompt)


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ParameterError("the image must be (H, W, 3) uint8")


def _check_mask(mask, image: np.ndarray, *, allow_empty: bool = False) -> np.ndarray:
    """A user's mask as (H, W) bool: an array of the image's height and width, bool or finite numbers (nonzero
    is inside), with at least one pixel inside unless ``allow_empty``."""
    if not isinstance(mask, (np.ndarray, torch.Tensor)) or isinstance(mask, np.ndarray) and mask.dtype == object:
        raise ParameterError(f"the mask must be an (H, W) array, got {type(mask).__name__}")
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2 or m.shape != image.shape[:2]:
        raise ParameterError(f"the mask has shape {tuple(m.shape)}; the image is {image.shape[1]}x{image.shape[0]}, "
                             f"so it must be ({image.shape[0]}, {image.shape[1]})")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number) or not np.isfinite(m).all():
            raise ParameterError("the mask must hold bools or finite numbers")
        m = m != 0
    if not m.any() and not allow_empty:
        raise ParameterError("the mask is empty: no pixel is inside it")
    return m


@torch.no_grad()
def instdiffedit(
    model: DiffusionModel,
    image: np.ndarray,
    source: str,
    target: str,
    *,
    strength: float = 0.5,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    num_seeds: int = 1,
    downsample: int | None = None,
    object_threshold: float = 0.9,
    background_threshold: float = 0.6,
    threshold: float | None = None,
    smooth_times: int | None = None,
    guided_filter_radius: float | None = None,
    guided_filter_eps: float = 1e-4,
    region_peak: float | None = None,
    anchor: str = "source",
    mask_steps: int | None = None,
    inpaint: bool = True,
    inpaint_pipeline=None,
    keep_outside: bool = True,
    allow_large: bool = False,
    negative_prompt: str | None = None,
    progress: bool | str = True,
) -> MaskEditResult:
    """InstDiffEdit (Zou et al. 2024): edit ``image`` (H, W, 3) uint8 with instant attention masks.

    ``num_seeds`` noise draws denoise together and their masks are averaged. ``mask_steps`` stops after that
    many steps and returns the mask only (no edit). ``inpaint`` runs the final pass over the last mask: with
    ``inpaint_pipeline`` (a diffusers inpainting pipeline) when given, else with the same model regenerating the
    masked region while the known region is re-noised from the source at every step. ``downsample``,
    ``threshold`` (φ), ``smooth_times``, ``guided_filter_radius`` and ``region_peak`` default to the model's
    ``masks`` defaults (the authors' 4, 0.2 and 2, and neither refinement nor region selection, unless its
    ``promptedit.json`` says otherwise).

    The final mask is the last step's soft mask upsampled bilinearly to the image and binarised at φ (its
    edges fall inside the maps' cells); with ``guided_filter_radius`` > 0 (ours), the upsampled soft mask is
    first refined by a guided filter with the image as guide (:func:`promptedit.control.masks.refine_mask`: radius in
    map cells, regularisation ``guided_filter_eps``), so that its edges follow the image's; with ``region_peak``
    > 0 (ours), only the mask's connected regions whose peak reaches that fraction of the strongest one's are
    kept (:func:`promptedit.control.masks.strongest_regions`). The final pass regenerates every latent cell the final
    mask touches, and the pixels outside it are the input's, exactly (``keep_outside``; ours: the paper keeps
    the inpainting pass's whole output, and an autoencoder then changes the unmasked pixels too).

    ``anchor`` says whose maps make the mask and which word anchors the selection:

    * ``start-token``: the paper's rule: the edit text's maps, the anchor the word most like the inverted
      start-token map (right when the text names one object);
    * ``edited``: the same, the anchor among the words the edit inserted or replaced, which says which
      object is meant when the text names several;
    * ``source`` (default, ours): the source text's maps, the anchor among the words the edit replaces or
      deletes. The words of the edit text do not describe the image yet, and a model may bind them to the
      wrong object (measured on the embedded model's two-object scenes: mask IoU 0.25 from the edit text's
      maps, 0.47 from the source's); the source text denoises beside the edit text (twice the UNet batch)
      only for its maps. An edit that only inserts words falls back to ``edited``.

    ``edited`` falls back to every word when the edit changed none. A mask alone (``mask_steps``) from the
    source text's maps denoises the source text only: each row is denoised on its own and blended with the
    same mask, so the edit text's rows change nothing in it.

    Returns a :class:`~promptedit.methods.result.MaskEditResult`: ``images`` (input, edited) — the input only
    for a mask alone — ``mask``, ``latent_mask``, ``soft_mask``, ``words`` and ``settings``; ``timings["mask"]`` is
    the pass that makes the mask (and, for an edit, the edit with it), ``inpaint`` the final pass.
    """
    _check_image(image)
    _check_prompt("source", source)
    _check_prompt("target", target)
    sampling = _mask_sampling(model, image, num_inference_steps, guidance_scale, allow_large, negative_prompt)
    steps = sampling.num_inference_steps
    start_step = strength_start(steps, strength)
    num_seeds = check_whole("num_seeds", num_seeds, 1)
    if mask_steps is not None:
        mask_steps = check_whole("mask_steps", mask_steps, 1, steps - start_step)
    opts = _mask_options(model, image, downsample, threshold, smooth_times, guided_filter_radius, guided_filter_eps,
                         region_peak, object_threshold, background_threshold)
    maps_from, words, toks, candidates, texts = _anchoring(model, source, target, anchor,
                                                           mask_only=mask_steps is not None)

    # 1. The pass that makes the mask (and edits inside it as it goes)
    t0 = time.perf_counter()
    start = NoisedImage(image=image, strength=strength, seed=seed, num_seeds=num_seeds)
    end = None if mask_steps is None else start_step + int(mask_steps)
    prepared, out, ctrl = _mask_pass(model, start, texts, toks, candidates, sampling, opts, end, progress)
    soft_up = image_soft_mask(ctrl.soft_masks[-1], image, guided_filter_radius=opts["guided_filter_radius"],
                              eps=guided_filter_eps)  # (H, W)
    pixel_mask = strongest_regions(soft_up, opts["threshold"], opts["region_peak"])  # (H, W)
    z0 = prepared.extras["z0"]
    latent_mask = cells_touched(pixel_mask, z0.shape[-2:]).to(z0.device)  # (h, w)
    t1 = time.perf_counter()
    settings = _instant_settings(sampling, opts, strength=strength, seed=seed, num_seeds=num_seeds, anchor=anchor,
                                 maps_from=maps_from, guided_filter_eps=guided_filter_eps, keep_outside=keep_outside,
                                 mask_steps=mask_steps, inpainting=inpaint and mask_steps is None,
                                 inpaint_pipeline=inpaint_pipeline, source=source, target=target)
    result = MaskEditResult("instant-mask" if mask_steps is not None else "instdiffedit", [source, target],
                            image[None], seed, sampling, {"mask": t1 - t0}, latents=prepared.x, notes=opts["notes"],
                            mask=pixel_mask.cpu().numpy(), latent_mask=latent_mask.cpu().numpy(),
                            soft_mask=ctrl.soft_masks[-1].cpu().numpy(), words=_chosen_words(words, ctrl.selection),
                            settings=settings)
    if mask_steps is not None:
        result.timings["total"] = t1 - t0
        return result

    # 2. The final pass over the last mask
    x0 = out.latents[:1]
    if inpaint:
        edited = _final_pass(model, x0, target, result.mask, latent_mask, start, prepared, sampling, start_step,
                             strength=strength, seed=seed, inpaint_pipeline=inpaint_pipeline, progress=progress)
    else:
        edited = to_uint8(decode_latents(model, x0))[0]
    if keep_outside:
        edited = keep_outside_mask(edited, image, result.mask)
    t2 = time.perf_counter()
    result.images = np.stack([image, edited])
    result.final_latents = x0
    result.timings.update({"inpaint": t2 - t1, "total": t2 - t0})
    return result


def _mask_pass(model: DiffusionModel, start: NoisedImage, texts: list[str], toks, candidates, sampling: Sampling,
               opts: dict, end_step: int | None, progress: bool | str):
    """InstDiffEdit's first pass: ``start``'s noise draws denoised under each of ``texts`` (the edit text's rows
    first) while :class:`~promptedit.control.masks.InstantMask` makes the mask from the last text's rows, up to
    ``end_step``. Returns the prepared start, the run's output (latents not decoded) and the controller."""
    num_seeds = start.num_seeds
    rows = num_seeds * len(texts)
    prompts = [t for t in texts for _ in range(num_seeds)]
    prepared = start.prepare(model, prompts=prompts, num_inference_steps=sampling.num_inference_steps, size=start.size)
    ctrl = InstantMask(toks, prepared.extras["sources"].repeat(1, len(texts), 1, 1, 1), downsample=opts["downsample"],
                       object_threshold=opts["object_threshold"], background_threshold=opts["background_threshold"],
                       threshold=opts["threshold"], smooth_times=opts["smooth_times"], anchor_candidates=candidates,
                       rows=slice(rows - num_seeds, rows))
    out = run(model, prompts, start, sampling=sampling, controller=ctrl, end_step=end_step, prepared=prepared,
              decode=False, progress=progress)
    return prepared, out, ctrl


def _instant_settings(sampling: Sampling, opts: dict, *, strength, seed, num_seeds, anchor, maps_from,
                      guided_filter_eps, keep_outside, mask_steps, inpainting, inpaint_pipeline, source,
                      target) -> dict:
    """An instant-mask run's settings as its result (and record) states them."""
    return {"strength": strength, "num_inference_steps": sampling.num_inference_steps,
            "guidance_scale": sampling.guidance_scale, "seed": seed, "num_seeds": num_seeds,
            "downsample": opts["downsample"], "object_threshold": opts["object_threshold"], "anchor": anchor,
            "maps_from": maps_from, "background_threshold": opts["background_threshold"],
            "threshold": opts["threshold"], "smooth_times": opts["smooth_times"], "mask_upsample": "bilinear",
            "guided_filter_radius": opts["guided_filter_radius"],
            "guided_filter_eps": guided_filter_eps if opts["guided_filter_radius"] > 0 else None,
            "region_peak": opts["region_peak"], "keep_outside": keep_outside, "mask_steps": mask_steps,
            "inpaint": inpainting,
            "inpaint_with": None if not inpainting else (
                "same model" if inpaint_pipeline is None else getattr(inpaint_pipeline, "name_or_path", "pipeline")),
            "source": source, "target": target}


def _chosen_words(words: list[str], sel) -> dict:
    """What an instant mask's word selection chose, by word: the anchor, object and background words and each
    word's similarity to the anchor."""
    return {"anchor": words[sel.anchor], "object": [words[i] for i in sel.objects],
            "background": [words[i] for i in sel.background],
            "similarity": [[wd, round(v, 4)] for wd, v in zip(words, sel.similarity)]}


def _mask_options(model: DiffusionModel, image: np.ndarray, downsample, threshold, smooth_times, guided_filter_radius,
                  guided_filter_eps, region_peak, object_threshold, background_threshold) -> dict:
    """The instant-mask options, each from its argument or the model's ``masks`` defaults, checked (the guided
    filter's window must fit in ``image``)."""
    object_threshold = check_real("object_threshold", object_threshold, -1.0, 1.0)
    background_threshold = check_real("background_threshold", background_threshold, -1.0, 1.0)
    d = model.defaults.masks
    f, note = model.resolve_downsample(downsample, d.downsample, "instant masks")
    threshold = check_real("threshold", d.threshold if threshold is None else threshold, 0.0, 1.0, high_open=True)
    smooth_times = check_whole("smooth_times", d.smooth_times if smooth_times is None else smooth_times, 0, 100)
    radius = check_real("guided_filter_radius", d.guided_filter_radius if guided_filter_radius is None
                        else guided_filter_radius, 0.0)
    check_real("guided_filter_eps", guided_filter_eps, 0.0, low_open=True)
    region_peak = check_real("region_peak", d.region_peak if region_peak is None else region_peak, 0.0, 1.0)
    # the guided filter's window (2r + 1 pixels, r = radius cells of the maps) must fit in the image
    cell = model.vae_scale_factor * f  # pixels per cell of the maps
    if 2 * radius * cell + 1 > min(image.shape[:2]):
        raise ParameterError(f"guided_filter_radius {radius:g} cells ({cell} pixels each) is "
                             f"wider than the {image.shape[1]}x{image.shape[0]} image; at most "
                             f"{(min(image.shape[:2]) - 1) / (2 * cell):g}")
    return {"downsample": f, "threshold": threshold, "smooth_times": smooth_times, "guided_filter_radius": radius,
            "region_peak": region_peak, "notes": [note] if note else [], "object_threshold": object_threshold,
            "background_threshold": background_threshold}


def _anchoring(model: DiffusionModel, source: str, target: str, anchor: str, *, mask_only: bool):
    """Whose maps make the mask and which words may anchor it (see :func:`instdiffedit`'s ``anchor``): ``source``
    or ``target``, the words and token positions of that text, the anchor candidates (None: every word), and the
    texts to denoise (the edit text first; the source text's rows, when its maps are read, after it)."""
    if anchor not in ANCHORS:
        raise ParameterError(f"anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
    words, toks = edit_words(model, target)
    source_words, source_toks = edit_words(model, source, "source text")
    if anchor != "start-token" and words == source_words:
        raise ParameterError(f"the source and edit texts are the same words ({target!r}): there is no edit to "
                             "mask (the paper's anchor, start-token, reads the edit text alone)")
    replaced = edited_words(words, source_words)  # source words the edit replaces or deletes
    if anchor == "source" and replaced:
        # a mask only: the edit text's rows would be denoised and never read
        return "source", source_words, source_toks, replaced, [source] if mask_only else [target, source]
    candidates = None if anchor == "start-token" else edited_words(source_words, words)
    return "target", words, toks, candidates, [target]


def _final_pass(model: DiffusionModel, x0: torch.Tensor, target: str, mask: np.ndarray, latent_mask: torch.Tensor,
                start: NoisedImage, prepared: Prepared, sampling: Sampling, start_step: int, *, strength: float,
                seed: int, inpaint_pipeline=None, progress: bool | str = True) -> np.ndarray:
    """InstDiffEdit's inpainting pass over the final mask: with a diffusers inpainting pipeline when given, else
    the same model regenerates the masked region from the first pass's edit x0 (1, C, h, w) while the known region
    is re-noised from the source at every step. Returns the edited image (H, W, 3) uint8."""
    if inpaint_pipeline is not None:
        from PIL import Image

        edited = to_uint8(decode_latents(model, x0))[0]
        pipe_out = inpaint_pipeline(prompt=target, image=Image.fromarray(edited),
                                    mask_image=Image.fromarray(mask.astype(np.uint8) * 255),
                                    num_inference_steps=sampling.num_inference_steps,
                                    guidance_scale=sampling.guidance_scale, strength=strength,
                                    negative_prompt=sampling.negative_prompt, generator=make_generator(seed),
                                    output_type="np").images[0]
        return to_uint8(pipe_out[None])[0]
    sampler = model.make_sampler(x0.shape[-2:])
    sampler.set_steps(sampling.num_inference_steps)
    x_re = sampler.noise_to(x0, prepared.extras["noise"][:1], start_step)  # (1, C, h, w)
    sources = prepared.extras["sources"][:, :1]  # the first noise draw's
    again = Prepared(torch.where(latent_mask[None, None], x_re, prepared.x[:1]), start_step)
    final = run(model, [target], start, sampling=sampling, controller=MaskBlend(latent_mask, sources),
                prepared=again, progress=progress)
    return final.images[0]


@torch.no_grad()
def masked_edit(model: DiffusionModel, image: np.ndarray, mask: np.ndarray, target: str, *, strength: float = 0.5,
                num_inference_steps: int | None = None, guidance_scale: float | None = None, seed: int = 0,
                progress: bool | str = True, method: str = "user-mask", keep_outside: bool = True,
                allow_large: bool = False, negative_prompt: str | None = None) -> MaskEditResult:
    """Edit inside a given mask ((H, W) bool, or numbers where nonzero is inside): the source noised to
    ``strength``, denoised under ``target``, the outside replaced by the noised source at every step; every
    latent cell the mask touches is edited, and the pixels outside the mask are the input's, exactly
    (``keep_outside``)."""
    _check_image(image)
    _check_prompt("target", target)
    mask = _check_mask(mask, image)
    sampling = _mask_sampling(model, image, num_inference_steps, guidance_scale, allow_large, negative_prompt)
    t0 = time.perf_counter()
    start = NoisedImage(image=image, strength=strength, seed=seed)
    prepared = start.prepare(model, prompts=[target], num_inference_steps=sampling.num_inference_steps,
                             size=start.size)
    lm = cells_touched(torch.from_numpy(mask), prepared.x.shape[-2:]).to(prepared.x.device)  # (h, w)
    out = run(model, [target], start, sampling=sampling, controller=MaskBlend(lm, prepared.extras["sources"]),
              prepared=prepared, progress=progress)
    edited = out.images[0]
    if keep_outside:
        edited = keep_outside_mask(edited, image, mask)
    t1 = time.perf_counter()
    return MaskEditResult(method, [target], np.stack([image, edited]), seed, sampling,
                          {"edit": t1 - t0, "total": t1 - t0}, latents=prepared.x, final_latents=out.latents,
                          mask=mask, latent_mask=lm.cpu().numpy(),
                          settings={"strength": strength, "num_inference_steps": sampling.num_inference_steps,
                                    "guidance_scale": sampling.guidance_scale, "seed": seed, "target": target,
                                    "keep_outside": keep_outside})


# ----------------------------------------------------------------------------- DiffEdit


def has_diffedit(model: DiffusionModel) -> bool:
    """Whether diffusers has a DiffEdit pipeline for the model's family (Stable Diffusion 1.x / 2.x; not SDXL)."""
    return model.family_entry.pipelines.diffedit is not None


def diffedit_pipeline(model: DiffusionModel):
    """diffusers' ``StableDiffusionDiffEditPipeline`` over the model's components (see :func:`has_diffedit`)."""
    import diffusers

    if not has_diffedit(model):
        raise ParameterError(f"DiffEdit runs through diffusers' pipeline, which has no {model.family.upper()} version;"
                             " use instant masks (InstDiffEdit) on this model")
    pipe = getattr(diffusers, model.family_entry.pipelines.diffedit)(
        **model.pipeline_components(), inverse_scheduler=model.make_sampler().inverse_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def diffedit(model: DiffusionModel, image: np.ndarray, source: str, target: str, *, strength: float = 0.5,
             num_maps: int = 10, threshold_ratio: float = 3.0, num_inference_steps: int | None = None,
             guidance_scale: float | None = None, seed: int = 0, mask_only: bool = False,
             allow_large: bool = False, negative_prompt: str | None = None,
             progress: bool | str = True) -> MaskEditResult:
    """DiffEdit (Couairon et al., ICLR 2023) through diffusers: the mask from the differences of noise
    predictions under source and target (``num_maps`` maps at strength 0.5, clamped at ``threshold_ratio``×
    the mean, binarised at 0.5), then DDIM inversion to the strength and masked denoising."""
    from PIL import Image

    _check_image(image)
    _check_prompt("source", source)
    _check_prompt("target", target)
    sampling = _mask_sampling(model, image, num_inference_steps, guidance_scale, allow_large, negative_prompt)
    steps, w = sampling.num_inference_steps, sampling.guidance_scale
    strength_start(steps, strength)  # validates
    num_maps = check_whole("num_maps", num_maps, 1)
    threshold_ratio = check_real("threshold_ratio", threshold_ratio, 0.0, low_open=True)
    if " ".join(source.lower().split()) == " ".join(target.lower().split()):
        raise ParameterError(f"the source and edit texts are the same ({target!r}): DiffEdit's mask is where their "
                             "noise predictions differ, and there is no difference")
    pipe = diffedit_pipeline(model)
    pil = Image.fromarray(image)
    t0 = time.perf_counter()
    m = pipe.generate_mask(image=pil, source_prompt=source, target_prompt=target, num_maps_per_mask=num_maps,
                           mask_encode_strength=strength, mask_thresholding_ratio=threshold_ratio,
                           num_inference_steps=steps, guidance_scale=w, source_negative_prompt=negative_prompt,
                           target_negative_prompt=negative_prompt, generator=make_generator(seed))
    latent_mask = np.asarray(m)[0] > 0.5  # (h, w)
    t1 = time.perf_counter()
    settings = {"strength": strength, "num_maps": num_maps, "threshold_ratio": threshold_ratio,
                "num_inference_steps": steps, "guidance_scale": w, "seed": seed, "source": source, "target": target}
    mask = F.interpolate(torch.from_numpy(latent_mask)[None, None].float(), size=image.shape[:2],
                         mode="nearest")[0, 0].numpy() > 0.5
    result = MaskEditResult("diffedit-mask" if mask_only else "diffedit", [source, target], image[None], seed,
                            sampling, {"mask": t1 - t0}, mask=mask, latent_mask=latent_mask, settings=settings)
    if mask_only:
        result.timings["total"] = t1 - t0
        return result
    inv = pipe.invert(prompt=source, image=pil, inpaint_strength=strength, num_inference_steps=steps,
                      guidance_scale=w, negative_prompt=negative_prompt, generator=make_generator(seed)).latents
    out = pipe(prompt=target, mask_image=latent_mask[None].astype(np.float32), image_latents=inv,
               inpaint_strength=strength, num_inference_steps=steps, guidance_scale=w, negative_prompt=negative_prompt,
               generator=make_generator(seed), output_type="np").images[0]
    t2 = time.perf_counter()
    result.images = np.stack([image, to_uint8(np.asarray(out)[None])[0]])
    result.timings.update({"edit": t2 - t1, "total": t2 - t0})
    return result


def make_mask(model: DiffusionModel, image: np.ndarray, source: str, target: str, *, method: str = "instant",
              **kwargs) -> MaskEditResult:
    """A mask only, by ``instant`` (InstDiffEdit; ``mask_steps`` steps of its pass, default all) or ``diffedit``."""
    if method == "instant":
        if kwargs.get("mask_steps") is None:  # the whole pass, but no edit: its rows and decoding are skipped
            _check_image(image)
            sampling = _mask_sampling(model, image, kwargs.get("num_inference_steps"), kwargs.get("guidance_scale"),
                                      kwargs.get("allow_large", False))
            kwargs["mask_steps"] = sampling.num_inference_steps - strength_start(sampling.num_inference_steps,
                                                                                 kwargs.get("strength", 0.5))
        return instdiffedit(model, image, source, target, inpaint=False, **kwargs)
    if method == "diffedit":
        return diffedit(model, image, source, target, mask_only=True, **kwargs)
    raise ParameterError(f"mask method must be one of {', '.join(MASK_METHODS)}, got {method!r}")
