"""KV-Edit (Zhu et al., "KV-Edit: Training-Free Image Editing for Precise Background Preservation", 2025) on an
MM-DiT flow model (FLUX.1), with a user's mask or an instant one.

The source is inverted with the flow's Euler inversion under the source text while every joint layer caches,
per step, the background image tokens' keys and values (:class:`~promptedit.backbones.mmdit.KVCache`); then the
target text denoises the foreground tokens alone (the transformer runs on the text and the foreground tokens,
their own RoPE ids), their queries attending to their own keys and values and to the cached background's. The
background tokens never run: the result's latent outside the mask is the source's, exactly.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backbones.mmdit import KVCache
from ..control.edit_spec import _check_prompt
from ..control.masks import cells_touched
from ..errors import ParameterError, check_real, check_whole
from ..guidance import EmbeddedGuidance
from ..models import DiffusionModel
from ..runner import check_seed, decode_latents, encode_images, make_generator, progress_desc, to_uint8
from ..samplers.flow import euler_step, flow_noise
from .maskedit import _check_image, _check_mask, _mask_sampling, keep_outside_mask
from .result import MaskEditResult

#: the paper's settings on FLUX.1-dev (the authors' demo): 28 steps, the first 4 skipped, inversion at the
#: embedded guidance 1.5, denoising at 5.5, the foreground from the inversion (no re-initialisation), no
#: attention mask in the inversion
PAPER = {"num_inference_steps": 28, "skip_step": 4, "inversion_guidance": 1.5, "guidance_scale": 5.5,
         "re_init": False, "attn_mask": False}


def check_kv_edit(model: DiffusionModel) -> None:
    """Refuse, in one line, a model whose backbone cannot run KV-Edit (a UNet)."""
    if not model.backbone.token_subsets:
        raise ParameterError(f"KV-Edit runs the foreground's image tokens against the background's cached keys and "
                             f"values in a transformer's joint attention (FLUX.1); this {model.family.upper()} model's "
                             f"{type(model.backbone).__name__} cannot")


def default_skip(num_steps: int) -> int:
    """The paper's skip of 4 of 28 steps at ``num_steps`` steps (rounded; 4 at 28; at most num_steps − 1)."""
    return min(num_steps - 1, int(round(num_steps * PAPER["skip_step"] / PAPER["num_inference_steps"])))


@torch.no_grad()
def kv_edit(model: DiffusionModel, image: np.ndarray, mask, source: str, target: str, *,
            num_inference_steps: int | None = None, guidance_scale: float | None = None, skip_step: int | None = None,
            inversion_guidance: float | None = None, re_init: bool = False, attn_mask: bool = False, seed: int = 0,
            keep_outside: bool = True, allow_large: bool = False, negative_prompt: str | None = None,
            cache_device: str | torch.device | None = "cpu", progress: bool | str = True) -> MaskEditResult:
    """KV-Edit of ``image`` (H, W, 3) uint8 inside ``mask`` ((H, W) bool or numbers, nonzero inside) from
    ``source`` (the image's caption) to ``target``.

    Every image token (2 × 2 latent cells) the mask touches is foreground; within a foreground token the latent
    cells outside the mask follow the source's inversion at every step and end as the source's. The background
    tokens' keys and values of every joint layer are cached at each step of the inversion (on ``cache_device``;
    None: the model's; the authors keep them on the CPU) and replayed while the foreground denoises.

    Args (the paper's settings in :data:`PAPER`):
        num_inference_steps, guidance_scale: the schedule and the denoising's guidance (the model's defaults;
            the paper: 28 steps, guidance 5.5 on FLUX.1-dev).
        skip_step: the schedule's first steps left out of both passes: the inversion stops, and the edit starts,
            at that step (default: the paper's 4 of 28, scaled to the steps, :func:`default_skip`).
        inversion_guidance: the inversion's guidance (default: the paper's 1.5 where the model takes its guidance
            as an input (FLUX.1-dev), else 1: plain Euler inversion, no unconditional branch).
        re_init: start the foreground from the source noised with fresh noise (``seed``) to the first step's level
            instead of from its inversion (the paper's option for edits that change an object's shape).
        attn_mask: the paper's attention-mask variant: during the inversion the foreground queries attend to the
            text and the foreground only, not to the background.
        keep_outside: the pixels outside the mask are the input's, exactly (the decoder otherwise changes them
            slightly, although their latents are the source's).

    An empty mask has nothing to edit: the result is the input. Returns a
    :class:`~promptedit.methods.result.MaskEditResult` (``images``: input, edited; ``latents``: the foreground's
    start, ``final_latents``: the edited latent; ``timings``: ``inversion``, ``edit``, ``total``).
    """
    check_kv_edit(model)
    _check_image(image)
    _check_prompt("source", source)
    _check_prompt("target", target)
    pixel_mask = _check_mask(mask, image, allow_empty=True)
    sampling = _mask_sampling(model, image, num_inference_steps, guidance_scale, allow_large, negative_prompt)
    steps = sampling.num_inference_steps
    skip = default_skip(steps) if skip_step is None else check_whole("skip_step", skip_step, 0, steps - 1)
    if inversion_guidance is None:
        embedded = isinstance(model.make_guidance(1.0), EmbeddedGuidance)
        inversion_guidance = PAPER["inversion_guidance"] if embedded else 1.0
    inversion_guidance = check_real("inversion_guidance", inversion_guidance, 0.0)
    check_seed(seed)
    for name, flag in (("re_init", re_init), ("attn_mask", attn_mask), ("keep_outside", keep_outside)):
        if not isinstance(flag, bool):
            raise ParameterError(f"{name} must be true or false, got {flag!r}")
    settings = {"num_inference_steps": steps, "guidance_scale": sampling.guidance_scale, "skip_step": skip,
                "inversion_guidance": inversion_guidance, "re_init": re_init, "attn_mask": attn_mask, "seed": seed,
                "keep_outside": keep_outside, "source": source, "target": target}

    t0 = time.perf_counter()
    backbone = model.backbone
    z0 = encode_images(model, image[None].astype(np.float32) / 255.0)  # (1, C, h, w)
    h, w = z0.shape[-2:]
    latent_mask = cells_touched(torch.from_numpy(pixel_mask), (h, w)).to(z0.device)  # (h, w)
    tokens = backbone.pack(z0)  # (1, N, D): D = the token's latent cells × channels
    inside = backbone.pack(latent_mask[None, None].expand_as(z0).to(z0.dtype)) > 0.5  # (1, N, D): cells in the mask
    fg = inside[0].any(-1).nonzero().flatten()  # (N_fg,) the tokens the mask touches
    bg = (~inside[0].any(-1)).nonzero().flatten()  # (N_bg,)
    result = MaskEditResult("kv-edit", [source, target], np.stack([image, image]), seed, sampling, {},
                            latents=z0, final_latents=z0, mask=pixel_mask, latent_mask=latent_mask.cpu().numpy(),
                            settings=settings)
    if len(fg) == 0:
        result.notes.append("kv-edit: the mask is empty; nothing to edit, the result is the input")
        result.timings.update({"inversion": 0.0, "edit": 0.0, "total": time.perf_counter() - t0})
        return result

    x_start, x_fg, t1 = _invert_and_edit(model, z0, tokens, inside, fg, bg, source, target, sampling, skip=skip,
                                         inversion_guidance=inversion_guidance, re_init=re_init, attn_mask=attn_mask,
                                         seed=seed, negative_prompt=negative_prompt, cache_device=cache_device,
                                         progress=progress)
    inside_fg = inside[:, fg]  # (1, N_fg, D)
    edited_tokens = tokens.clone()
    edited_tokens[:, fg] = torch.where(inside_fg, x_fg, tokens[:, fg])
    final = backbone.unpack(edited_tokens, (h, w))  # (1, C, h, w)
    edited = to_uint8(decode_latents(model, final))[0]
    if keep_outside:
        edited = keep_outside_mask(edited, image, pixel_mask)
    t2 = time.perf_counter()
    result.images = np.stack([image, edited])
    result.latents = backbone.unpack(x_start, (h, w))
    result.final_latents = final
    result.timings.update({"inversion": t1 - t0, "edit": t2 - t1, "total": t2 - t0})
    return result


def _invert_and_edit(model: DiffusionModel, z0: torch.Tensor, tokens: torch.Tensor, inside: torch.Tensor,
                     fg: torch.Tensor, bg: torch.Tensor, source: str, target: str, sampling, *, skip: int,
                     inversion_guidance: float, re_init: bool, attn_mask: bool, seed: int,
                     negative_prompt: str | None, cache_device, progress: bool | str):
    """KV-Edit's two passes over the source latent z0 (1, C, h, w), its tokens (1, N, D) and ``inside`` (1, N, D),
    the token cells in the mask, with foreground and background token indices ``fg`` and ``bg``: the Euler
    inversion under ``source`` caching the background's keys and values, then the foreground alone under
    ``target``. Returns the inversion at the edit's first step (1, N, D), the edited foreground (1, N_fg, D) and
    the time the inversion ended."""
    backbone, steps, size = model.backbone, sampling.num_inference_steps, (sampling.height, sampling.width)
    h, w = z0.shape[-2:]
    sampler = model.make_sampler((h, w))
    sampler.set_steps(steps, device=z0.device)
    sigmas = sampler.sigmas  # (steps + 1,)
    ids = backbone.token_ids(h, w, z0.device, z0.dtype)  # (N, 3)
    g_inv, g_edit = model.make_guidance(inversion_guidance), model.make_guidance(sampling.guidance_scale)
    uncond = model.unconditional(1, size=size)
    negative = uncond if negative_prompt is None else model.encode([negative_prompt], size=size)
    ctx_inv = g_inv.conditioning(model.encode([source], size=size), uncond)
    ctx_edit = g_edit.conditioning(model.encode([target], size=size), negative)

    def velocity(guidance, x, token_ids, step, context):  # the guided velocity of tokens x (1, N', D) at σ_step
        t = sigmas[step] * sampler.num_train_timesteps
        out = backbone.predict_tokens(guidance.batch(x), token_ids, t, context, **guidance.predict_kwargs())
        return guidance.combine(out)

    cache = KVCache(bg, fg, mode="record", mask_foreground=attn_mask, device=cache_device)
    path = {steps: tokens}  # step -> the source's inversion at σ_step, (1, N, D)
    with backbone.kv_attention(cache):
        # 1. Euler inversion under the source text up to σ_skip: the step from σ_{i+1} up to σ_i takes the velocity
        #    at σ_{i+1}; its keys and values are the ones the denoising step from σ_i down to σ_{i+1} replays
        x = tokens
        for i in tqdm(range(steps - 1, skip - 1, -1), desc=progress_desc(progress, "kv-edit inversion"),
                      disable=not progress, leave=False):
            cache.step = i
            x = euler_step(velocity(g_inv, x, ids, i + 1, ctx_inv), x, sigmas[i + 1], sigmas[i])
            path[i] = x
        t1 = time.perf_counter()
        # 2. The foreground alone under the target text, against the cached background
        cache.mode = "replay"
        inside_fg = inside[:, fg]  # (1, N_fg, D)
        if re_init:
            noise = torch.randn(z0.shape, generator=make_generator(seed)).to(z0)  # (1, C, h, w)
            x_fg = flow_noise(tokens, backbone.pack(noise), sigmas[skip])[:, fg]
        else:
            x_fg = path[skip][:, fg]  # (1, N_fg, D)
        for i in tqdm(range(skip, steps), desc=progress_desc(progress, "kv-edit"), disable=not progress,
                      leave=False):
            cache.step = i
            x_fg = torch.where(inside_fg, x_fg, path[i][:, fg])  # the cells outside the mask: the source's
            x_fg = euler_step(velocity(g_edit, x_fg, ids[fg], i, ctx_edit), x_fg, sigmas[i], sigmas[i + 1])
    return path[skip], x_fg, t1


def kv_edit_with_mask(model: DiffusionModel, image: np.ndarray, mask, source: str, target: str, *,
                      strength: float = 0.5, instant: dict | None = None, num_inference_steps: int | None = None,
                      guidance_scale: float | None = None, seed: int = 0, allow_large: bool = False,
                      negative_prompt: str | None = None, progress: bool | str = True, **options) -> MaskEditResult:
    """:func:`kv_edit` inside ``mask``, or, when it is None, inside InstDiffEdit's instant mask of the edit (made
    first, at ``strength`` with the ``instant`` options: :func:`~promptedit.methods.maskedit.make_mask`, from the
    joint layers' image → text maps on FLUX.1). ``options``: :func:`kv_edit`'s own. The result's ``timings``
    add the mask's (``mask``), its ``soft_mask``, ``words`` and ``notes`` are the instant mask's, and
    ``settings["mask"]`` says where the mask came from (``user``, or the instant mask's settings)."""
    from .maskedit import make_mask

    check_kv_edit(model)
    common = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed,
                  allow_large=allow_large, negative_prompt=negative_prompt, progress=progress)
    if mask is not None:
        result = kv_edit(model, image, mask, source, target, **common, **options)
        result.settings["mask"] = "user"
        return result
    made = make_mask(model, image, source, target, method="instant", strength=strength, **(instant or {}), **common)
    result = kv_edit(model, image, made.mask, source, target, **common, **options)
    result.settings["mask"] = {"method": "instant", **made.settings}
    result.soft_mask, result.words, result.notes = made.soft_mask, made.words, made.notes + result.notes
    result.timings["mask"] = made.timings["mask"]
    result.timings["total"] += made.timings["total"]
    return result
