"""Mask-guided editing: InstDiffEdit's instant masks, DiffEdit (through diffusers' own pipeline) as the
baseline, and user-given masks.

All three edit the same way once a mask exists: the source is noised to strength r and denoised under
the edit text while the region outside the mask is replaced, at every step, by the source noised to that
step. InstDiffEdit makes its mask during that very pass (:class:`promptedit.masks.InstantMask`), then
removes the seams with an inpainting pass over its last mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .control import AttentionControl
from .errors import ParameterError, PromptError
from .inversion import ddim_alphas
from .masks import InstantMask, cells_touched, edited_words, image_soft_mask, strongest_regions
from .models import DiffusionModel
from .pipeline import check_sampling, decode_latents, denoise, encode_images, encode_prompts, make_generator, to_uint8
from .tokens import prompt_words, tokenize, span_token_indices

MASK_METHODS = ("instant", "diffedit")
ANCHORS = ("source", "edited", "start-token")  # where instant masks take their maps and anchor (see instdiffedit)


@dataclass
class MaskEditResult:
    """A mask-guided edit.

    Attributes:
        method: ``instdiffedit``, ``diffedit`` or ``user``.
        image: the source (H, W, 3) uint8; edited: the result (H, W, 3) uint8 (None for a mask only).
        mask: (H, W) bool at image resolution; latent_mask: (h, w) bool at latent resolution.
        words: for instant masks, the words chosen as object and background.
        timings: seconds: ``mask`` (making the mask), ``edit``, ``inpaint``, ``total``.
        settings: every parameter used.
    """

    method: str
    image: np.ndarray
    edited: np.ndarray | None
    mask: np.ndarray
    latent_mask: np.ndarray
    words: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    soft_mask: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


class MaskBlend(AttentionControl):
    """Keeps the noised source outside a fixed mask: x_t = src_t + M ⊙ (x_t − src_t) after each step."""

    def __init__(self, mask: torch.Tensor, sources: torch.Tensor):
        super().__init__()
        self.mask = mask  # (h, w) at latent resolution
        self.sources = sources  # (steps, [n,] C, h, w)

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        src = self.sources[self.cur_step].to(x_t.device, x_t.dtype)
        src = src[None] if src.dim() == 3 else src
        m = self.mask.to(x_t.device, x_t.dtype)[None, None]
        return src + m * (x_t - src)


def _settings(model, steps, guidance, strength):
    steps = model.defaults.num_inference_steps if steps is None else steps
    w = model.defaults.guidance_scale if guidance is None else float(guidance)
    check_sampling(steps, w)
    if not 0.0 < float(strength) <= 1.0:
        raise ParameterError(f"strength must be in (0, 1], got {strength}")
    start = min(steps - 1, int(round(steps * (1.0 - float(strength)))))
    return steps, w, start


def noised_sources(model: DiffusionModel, z0: torch.Tensor, noise: torch.Tensor, steps: int, start: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """q(x_t | x_0) with fixed noise: x at ``timesteps[start]`` (n, C, h, w), and after each step of the pass
    (steps − start, n, C, h, w), each at the DDIM step's previous ᾱ; after the last step, z_0 itself."""
    scheduler = model.make_scheduler()
    scheduler.set_timesteps(steps)
    ts = scheduler.timesteps[start:]
    a0 = float(scheduler.alphas_cumprod[int(ts[0])])
    x_start = a0**0.5 * z0 + (1 - a0) ** 0.5 * noise
    after = []
    for t in ts[:-1]:
        _, a_prev = ddim_alphas(scheduler, int(t))
        after.append(a_prev**0.5 * z0 + (1 - a_prev) ** 0.5 * noise)
    after.append(z0.expand_as(noise))  # the known region ends exactly as the source
    return x_start, torch.stack(after)


def edit_words(tokenizer, prompt: str, what: str = "edit text") -> tuple[list[str], list[list[int]]]:
    """The words of ``prompt`` (lower-cased, punctuation left out) and their token positions."""
    tokens = tokenize(tokenizer, prompt, warn=False)
    words, toks = [], []
    for w, a, b in prompt_words(prompt):
        idx = [i for i in span_token_indices(tokens, a, b) if i < tokens.max_length - 1]
        if idx and any(ch.isalnum() for ch in w):
            words.append(w)
            toks.append(idx)
    if not words:
        raise PromptError(f"the {what} {prompt!r} has no words")
    return words, toks


def _upsample(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].cpu().numpy() > 0.5


def _masked_pass(model, cond, uncond, x_start, sources, mask, steps, w, start, progress):
    return denoise(model, cond, x_start, num_inference_steps=steps, guidance_scale=w, uncond_embeddings=uncond,
                   controller=MaskBlend(mask, sources), start_step=start, progress=progress)


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
    refine_radius: float | None = None,
    refine_eps: float = 1e-4,
    region_peak: float | None = None,
    anchor: str = "source",
    mask_steps: int | None = None,
    inpaint: bool = True,
    inpaint_pipeline=None,
    keep_outside: bool = True,
    progress: bool = True,
) -> MaskEditResult:
    """InstDiffEdit (Zou et al. 2024): edit ``image`` (H, W, 3) uint8 with instant attention masks.

    ``num_seeds`` noise draws denoise together and their masks are averaged. ``mask_steps`` stops after that
    many steps and returns the mask only (no edit). ``inpaint`` runs the final pass over the last mask: with
    ``inpaint_pipeline`` (a diffusers ``StableDiffusionInpaintPipeline``) when given, else with the same model
    regenerating the masked region while the known region is re-noised from the source at every step.
    ``threshold`` (φ), ``smooth_times``, ``refine_radius`` and ``region_peak`` default to the model's (the
    authors' 0.2 and 2, and neither refinement nor region selection, unless its ``promptedit.json`` says
    otherwise).

    The final mask is the last step's soft mask upsampled bilinearly to the image and binarised at φ (its
    edges fall inside the maps' cells); with ``refine_radius`` > 0 (ours), the upsampled soft mask is first
    refined by a guided filter with the image as guide (:func:`promptedit.masks.refine_mask`: radius in map
    cells, regularisation ``refine_eps``), so that its edges follow the image's; with ``region_peak`` > 0
    (ours), only the mask's connected regions whose peak reaches that fraction of the strongest one's are kept
    (:func:`promptedit.masks.strongest_regions`). The final pass regenerates every latent cell the final
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
    """
    steps, w, start = _settings(model, num_inference_steps, guidance_scale, strength)
    if num_seeds < 1:
        raise ParameterError(f"num_seeds must be >= 1, got {num_seeds}")
    if anchor not in ANCHORS:
        raise ParameterError(f"anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
    if mask_steps is not None and not 1 <= mask_steps <= steps - start:
        raise ParameterError(f"mask_steps must be in [1, {steps - start}], got {mask_steps}")
    f, note = model.resolve_downsample(downsample, model.defaults.attention_downsample, "instant masks")
    threshold = model.defaults.mask_threshold if threshold is None else float(threshold)
    smooth_times = model.defaults.mask_smooth_times if smooth_times is None else int(smooth_times)
    if smooth_times < 0:
        raise ParameterError(f"smooth_times must be >= 0, got {smooth_times}")
    refine_radius = model.defaults.mask_refine_radius if refine_radius is None else float(refine_radius)
    if refine_radius < 0 or refine_eps <= 0:
        raise ParameterError(f"refine_radius must be >= 0 and refine_eps > 0, got {refine_radius} and {refine_eps}")
    region_peak = model.defaults.mask_region_peak if region_peak is None else float(region_peak)
    if not 0.0 <= region_peak <= 1.0:
        raise ParameterError(f"region_peak must be in [0, 1], got {region_peak}")
    words, toks = edit_words(model.tokenizer, target)
    source_words, source_toks = edit_words(model.tokenizer, source, "source text")
    replaced = edited_words(words, source_words)  # source words the edit replaces or deletes
    maps_from = "source" if anchor == "source" and replaced else "target"
    if maps_from == "source":
        words, toks, candidates = source_words, source_toks, replaced
    else:
        candidates = None if anchor == "start-token" else edited_words(source_words, words)
    texts = [target, source] if maps_from == "source" else [target]
    if mask_steps is not None and maps_from == "source":
        texts = [source]  # a mask only: the edit text's rows would be denoised and never read
    rows = num_seeds * len(texts)  # the edit text's rows first, then the source text's (for its maps only)
    t0 = time.perf_counter()
    z0 = encode_images(model, image[None].astype(np.float32) / 255.0)
    g = make_generator(seed)
    noise = torch.randn((num_seeds, *z0.shape[1:]), generator=g).to(z0)
    x_start, sources = noised_sources(model, z0, noise, steps, start)
    cond = torch.cat([encode_prompts(model, [t]).expand(num_seeds, -1, -1) for t in texts])
    uncond = encode_prompts(model, [""]).expand(rows, -1, -1)
    ctrl = InstantMask(toks, sources.repeat(1, len(texts), 1, 1, 1), downsample=f, object_threshold=object_threshold,
                       background_threshold=background_threshold, threshold=threshold, smooth_times=smooth_times,
                       anchor_candidates=candidates, rows=slice(rows - num_seeds, rows))
    end = None if mask_steps is None else start + int(mask_steps)
    x0 = denoise(model, cond, x_start.repeat(len(texts), 1, 1, 1), num_inference_steps=steps, guidance_scale=w,
                 uncond_embeddings=uncond, controller=ctrl, start_step=start, end_step=end, progress=progress)
    soft_up = image_soft_mask(ctrl.soft_masks[-1], image, refine_radius=refine_radius, eps=refine_eps)  # (H, W)
    pixel_mask = strongest_regions(soft_up, threshold, region_peak)  # (H, W)
    latent_mask = cells_touched(pixel_mask, z0.shape[-2:]).to(z0.device)  # (h, w)
    t1 = time.perf_counter()  # the mask is made
    sel = ctrl.selection
    chosen = {"anchor": words[sel.anchor], "object": [words[i] for i in sel.objects],
              "background": [words[i] for i in sel.background],
              "similarity": [[wd, round(v, 4)] for wd, v in zip(words, sel.similarity)]}
    settings = {"strength": strength, "num_inference_steps": steps, "guidance_scale": w, "seed": seed,
                "num_seeds": num_seeds, "downsample": f, "object_threshold": object_threshold, "anchor": anchor,
                "maps_from": maps_from,
                "background_threshold": background_threshold, "threshold": threshold,
                "smooth_times": smooth_times, "mask_upsample": "bilinear", "refine_radius": refine_radius,
                "refine_eps": refine_eps if refine_radius > 0 else None, "region_peak": region_peak,
                "keep_outside": keep_outside,
                "mask_steps": mask_steps,
                "inpaint": inpaint and mask_steps is None,
                "inpaint_with": None if not inpaint or mask_steps is not None else (
                    "same model" if inpaint_pipeline is None else getattr(inpaint_pipeline, "name_or_path", "pipeline")),
                "source": source, "target": target}
    soft = ctrl.soft_masks[-1].cpu().numpy()
    result = MaskEditResult("instdiffedit", image, None, pixel_mask.cpu().numpy(),
                            latent_mask.cpu().numpy(), chosen, {"mask": t1 - t0}, settings, soft,
                            [note] if note else [])
    if mask_steps is not None:
        result.timings["total"] = t1 - t0
        return result
    if inpaint and inpaint_pipeline is not None:
        from PIL import Image

        edited = to_uint8(decode_latents(model, x0[:1]))[0]
        out = inpaint_pipeline(prompt=target, image=Image.fromarray(edited),
                               mask_image=Image.fromarray(result.mask.astype(np.uint8) * 255),
                               num_inference_steps=steps, guidance_scale=w, strength=strength,
                               generator=make_generator(seed), output_type="np").images[0]
        result.edited = to_uint8(out[None])[0]
    elif inpaint:
        # regenerate the masked region from the first pass's edit, the known region re-noised from the source
        x_edit = x0[:1]
        scheduler = _sched(model, steps)
        a_start, _ = ddim_alphas(scheduler, int(scheduler.timesteps[start]))
        x_re = a_start**0.5 * x_edit + (1 - a_start) ** 0.5 * noise[:1]
        x_re = torch.where(latent_mask[None, None], x_re, x_start[:1])
        xi = _masked_pass(model, cond[:1], uncond[:1], x_re, sources[:, :1], latent_mask, steps, w, start, progress)
        result.edited = to_uint8(decode_latents(model, xi))[0]
    else:
        result.edited = to_uint8(decode_latents(model, x0[:1]))[0]
    if keep_outside:
        result.edited = keep_outside_mask(result.edited, image, result.mask)
    t2 = time.perf_counter()
    result.timings.update({"edit": t1 - t0, "inpaint": t2 - t1, "total": t2 - t0})
    return result


def keep_outside_mask(edited: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The edit inside ``mask`` (H, W) bool, the input ``image`` (H, W, 3) outside it, pixel for pixel."""
    return np.where(mask[..., None], edited, image)


def _sched(model, steps):
    s = model.make_scheduler()
    s.set_timesteps(steps)
    return s


@torch.no_grad()
def masked_edit(model: DiffusionModel, image: np.ndarray, mask: np.ndarray, target: str, *, strength: float = 0.5,
                num_inference_steps: int | None = None, guidance_scale: float | None = None, seed: int = 0,
                progress: bool = True, method: str = "user", keep_outside: bool = True) -> MaskEditResult:
    """Edit inside a given mask ((H, W) bool): the source noised to ``strength``, denoised under ``target``,
    the outside replaced by the noised source at every step; every latent cell the mask touches is edited,
    and the pixels outside the mask are the input's, exactly (``keep_outside``)."""
    steps, w, start = _settings(model, num_inference_steps, guidance_scale, strength)
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        raise ParameterError(f"the mask is {mask.shape[1]}x{mask.shape[0]}, the image {image.shape[1]}x{image.shape[0]}")
    t0 = time.perf_counter()
    z0 = encode_images(model, image[None].astype(np.float32) / 255.0)
    noise = torch.randn(z0.shape, generator=make_generator(seed)).to(z0)
    x_start, sources = noised_sources(model, z0, noise, steps, start)
    lm = cells_touched(torch.from_numpy(mask), z0.shape[-2:])  # (h, w)
    cond, uncond = encode_prompts(model, [target]), encode_prompts(model, [""])
    x0 = _masked_pass(model, cond, uncond, x_start, sources, lm.to(z0.device), steps, w, start, progress)
    edited = to_uint8(decode_latents(model, x0))[0]
    if keep_outside:
        edited = keep_outside_mask(edited, image, mask)
    t1 = time.perf_counter()
    return MaskEditResult(method, image, edited, mask, lm.cpu().numpy(), None,
                          {"mask": 0.0, "edit": t1 - t0, "total": t1 - t0},
                          {"strength": strength, "num_inference_steps": steps, "guidance_scale": w, "seed": seed,
                           "target": target, "keep_outside": keep_outside})


# ----------------------------------------------------------------------------- DiffEdit


def diffedit_pipeline(model: DiffusionModel):
    """diffusers' ``StableDiffusionDiffEditPipeline`` over the model's components."""
    from diffusers import DDIMInverseScheduler, StableDiffusionDiffEditPipeline

    pipe = StableDiffusionDiffEditPipeline(
        vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
        scheduler=model.make_scheduler(), inverse_scheduler=DDIMInverseScheduler.from_config(model.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def diffedit(model: DiffusionModel, image: np.ndarray, source: str, target: str, *, strength: float = 0.5,
             num_maps: int = 10, threshold_ratio: float = 3.0, num_inference_steps: int | None = None,
             guidance_scale: float | None = None, seed: int = 0, mask_only: bool = False,
             progress: bool = True) -> MaskEditResult:
    """DiffEdit (Couairon et al., ICLR 2023) through diffusers: the mask from the differences of noise
    predictions under source and target (``num_maps`` maps at strength 0.5, clamped at ``threshold_ratio``×
    the mean, binarised at 0.5), then DDIM inversion to the strength and masked denoising."""
    from PIL import Image

    steps, w, _ = _settings(model, num_inference_steps, guidance_scale, strength)
    if num_maps < 1:
        raise ParameterError(f"num_maps must be >= 1, got {num_maps}")
    pipe = diffedit_pipeline(model)
    pil = Image.fromarray(image)
    t0 = time.perf_counter()
    m = pipe.generate_mask(image=pil, source_prompt=source, target_prompt=target, num_maps_per_mask=num_maps,
                           mask_encode_strength=strength, mask_thresholding_ratio=threshold_ratio,
                           num_inference_steps=steps, guidance_scale=w, generator=make_generator(seed))
    latent_mask = np.asarray(m)[0] > 0.5  # (h, w)
    t1 = time.perf_counter()
    settings = {"strength": strength, "num_maps": num_maps, "threshold_ratio": threshold_ratio,
                "num_inference_steps": steps, "guidance_scale": w, "seed": seed, "source": source, "target": target}
    mask = _upsample(torch.from_numpy(latent_mask), image.shape[:2])
    result = MaskEditResult("diffedit", image, None, mask, latent_mask, None, {"mask": t1 - t0}, settings)
    if mask_only:
        result.timings["total"] = t1 - t0
        return result
    inv = pipe.invert(prompt=source, image=pil, inpaint_strength=strength, num_inference_steps=steps,
                      guidance_scale=w, generator=make_generator(seed)).latents
    out = pipe(prompt=target, mask_image=latent_mask[None].astype(np.float32), image_latents=inv,
               inpaint_strength=strength, num_inference_steps=steps, guidance_scale=w,
               generator=make_generator(seed), output_type="np").images[0]
    t2 = time.perf_counter()
    result.edited = to_uint8(np.asarray(out)[None])[0]
    result.timings.update({"edit": t2 - t1, "total": t2 - t0})
    return result


def make_mask(model: DiffusionModel, image: np.ndarray, source: str, target: str, *, method: str = "instant",
              **kwargs) -> MaskEditResult:
    """A mask only, by ``instant`` (InstDiffEdit; ``mask_steps`` steps of its pass, default all) or ``diffedit``."""
    if method == "instant":
        if kwargs.get("mask_steps") is None:  # the whole pass, but no edit: its rows and decoding are skipped
            steps, _, start = _settings(model, kwargs.get("num_inference_steps"), kwargs.get("guidance_scale"),
                                        kwargs.get("strength", 0.5))
            kwargs["mask_steps"] = steps - start
        return instdiffedit(model, image, source, target, inpaint=False, **kwargs)
    if method == "diffedit":
        return diffedit(model, image, source, target, mask_only=True, **kwargs)
    raise ParameterError(f"mask method must be one of {', '.join(MASK_METHODS)}, got {method!r}")
