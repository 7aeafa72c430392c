"""Edits of real images that steer a flow model's velocity (FLUX.1, SD3/3.5), beside Prompt-to-Prompt:

* :func:`flowedit` — FlowEdit (Kulikov et al., "FlowEdit: Inversion-Free Text-Based Editing Using Pre-Trained
  Flow Models", 2024, Alg. 1): no inversion; an ODE on the difference of the target's and the source's velocities,
  taken at re-noised copies of the source image, carries the image from source to target.
* :func:`uniedit` — UniEdit-Flow (Jiao et al., "UniEdit-Flow: Unleashing Inversion and Editing in the Era of Flow
  Models", 2025): Uni-Inv up to α of the schedule, then Uni-Edit's velocity fusion, the source's and the target's
  velocities mixed by a mask read off their difference and pushed along it by ω.

Each is a function with every hyper-parameter an argument; their equations are the small pure functions here.
They run on flow-matching models only (a one-line ParameterError elsewhere) and return a
:class:`~promptedit.methods.result.VelocityEditResult` (images: the input, the edit).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..conditioning import Conditioning
from ..control.edit_spec import _check_prompt
from ..errors import ParameterError, check_real, check_whole
from ..models import DiffusionModel
from ..runner import (Sampling, check_sampling, check_seed, check_size, decode_latents, encode_images, guided_output,
                      make_generator, progress_desc, to_uint8)
from ..samplers.flow import euler_step, flow_noise
from .inversion import flow_inversion
from .result import VelocityEditResult

METHODS = ("flowedit", "uniedit")


# ----------------------------------------------------------------------------- the equations


def flowedit_pair(x_src: torch.Tensor, z_edit: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """FlowEdit's noisy pair at σ (Kulikov et al. 2024, Alg. 1): the source noised, Ẑ^src = (1 − σ)·X^src + σ·N,
    and the edit moved by the same noise, Ẑ^tar = Z^FE + Ẑ^src − X^src (written Ẑ^src + (Z^FE − X^src), so that
    Ẑ^tar is Ẑ^src exactly while the edit is still the source)."""
    z_src = flow_noise(x_src, noise, sigma)
    return z_src, z_src + (z_edit - x_src)


def uniedit_mask(delta: torch.Tensor, patch: int = 1) -> torch.Tensor:
    """Uni-Edit's mask (Jiao et al. 2025; the authors' ``edit_uniedit``): |v_tar − v_src| averaged over channels (and over ``patch`` ×
    ``patch`` cells: a FLUX.1 token's 2 × 2), min–max normalised per image to [0, 1]; (n, 1, h, w) from
    ``delta`` (n, C, h, w); 0 where the difference is uniform (no edit)."""
    m = delta.abs().float().mean(1, keepdim=True)  # (n, 1, h, w)
    if patch > 1:
        m = F.interpolate(F.avg_pool2d(m, patch), scale_factor=patch, mode="nearest")
    low = m.amin((2, 3), keepdim=True)
    span = m.amax((2, 3), keepdim=True) - low
    return torch.where(span > 0, (m - low) / span.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def uniedit_velocity(v_src: torch.Tensor, v_tar: torch.Tensor, mask: torch.Tensor, omega: float) -> torch.Tensor:
    """Uni-Edit's fused velocity (Jiao et al. 2025; the authors' ``edit_uniedit``): M·v_tar + (1 − M)·v_src + (M + 1)·ω·(v_tar − v_src); the
    source's own velocity where the prompts agree."""
    delta = v_tar - v_src
    return mask * v_tar + (1 - mask) * v_src + (mask + 1) * omega * delta


def flowedit_latents(v_src, v_tar, x_src: torch.Tensor, sampler, *, n_max: int, n_min: int = 0, n_avg: int = 1,
                     generator: torch.Generator | None = None, progress: bool | str = False) -> torch.Tensor:
    """FlowEdit's loop (Kulikov et al. 2024, Alg. 1) on latents: ``x_src`` (1, C, h, w) edited along ``sampler``'s
    set schedule (T steps) with the guided velocities ``v_src(x, t)`` and ``v_tar(x, t)``; see :func:`flowedit`
    for ``n_max``, ``n_min``, ``n_avg``. Noise is drawn on the CPU from ``generator``. Returns the edit
    (1, C, h, w)."""
    T = sampler.num_steps

    def draw() -> torch.Tensor:  # on the CPU, so that a seed reproduces across devices
        return torch.randn(x_src.shape, generator=generator, dtype=torch.float32).to(x_src)

    z_edit, z_tar = x_src.clone(), None
    for i in tqdm(range(T - n_max, T), desc=progress_desc(progress, "FlowEdit"), disable=not progress, leave=False):
        t, sigma, sigma_next = sampler.timesteps[i], sampler.sigmas[i], sampler.sigmas[i + 1]
        if T - i > n_min:  # the ODE on the velocities' difference, averaged over n_avg noise draws
            delta = torch.zeros_like(x_src, dtype=torch.float32)
            for _ in range(n_avg):
                z_src, z_pair = flowedit_pair(x_src, z_edit, draw(), sigma)
                delta += (v_tar(z_pair, t).float() - v_src(z_src, t).float()) / n_avg
            z_edit = euler_step(delta.to(x_src.dtype), z_edit, sigma, sigma_next)
        else:  # the last n_min steps: plain sampling of the target from the noisy edit at that level
            if z_tar is None:
                z_tar = flowedit_pair(x_src, z_edit, draw(), sigma)[1]
            z_tar = sampler.step(v_tar(z_tar, t), t, z_tar)
    return z_edit if z_tar is None else z_tar


# ----------------------------------------------------------------------------- the methods


def steers_velocity(sampler) -> bool:
    """Whether :data:`METHODS` run on ``sampler``: a flow's, which steps the ODE with Euler."""
    return "euler" in sampler.solvers


def _flow_sampler(model: DiffusionModel, latent_size, what: str):
    """The model's sampler for latents of ``latent_size``; a one-line ParameterError where it is no flow's."""
    sampler = model.make_sampler(latent_size)
    if not steers_velocity(sampler):
        raise ParameterError(f"{what} edits flow-matching models (FLUX.1, SD3); this model samples with "
                             f"{sampler.name} (edit it with Prompt-to-Prompt: promptedit edit)")
    return sampler


def _check_inputs(model, image, source, target, steps, allow_large):
    """The image and prompts of a velocity edit; returns the image's (h, w)."""
    _check_prompt("source", source)
    _check_prompt("target", target)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ParameterError("the image must be (H, W, 3) uint8")
    size = tuple(int(v) for v in image.shape[:2])
    check_size(model, *size, batch=2, allow_large=allow_large)
    check_whole("num_inference_steps", steps, 1, 1000)
    return size


@torch.no_grad()
def flowedit(
    model: DiffusionModel,
    image: np.ndarray,
    source: str,
    target: str,
    *,
    num_inference_steps: int = 28,
    n_max: int | None = None,
    n_min: int = 0,
    n_avg: int = 1,
    source_guidance: float = 1.5,
    target_guidance: float = 5.5,
    seed: int = 0,
    allow_large: bool = False,
    progress: bool | str = True,
) -> VelocityEditResult:
    """FlowEdit (Kulikov et al. 2024, Alg. 1) of ``image`` ((H, W, 3) uint8) from ``source`` to ``target``.

    Of ``num_inference_steps`` schedule steps, the last ``n_max`` run: while more than ``n_min`` remain, the edit
    Z^FE (starting as the source's latent) takes an Euler step of V^tar(Ẑ^tar) − V^src(Ẑ^src) averaged over
    ``n_avg`` noise draws (:func:`flowedit_pair`, fresh noise each step); the last ``n_min`` steps sample the
    target from the noisy Ẑ^tar at that level. Velocities are guided at ``source_guidance`` and
    ``target_guidance`` (the model's guidance: classifier-free, or FLUX.1-dev's embedded scale). The paper's
    settings: FLUX.1-dev 28 steps, n_max 24, n_min 0, n_avg 1, guidance 1.5 / 5.5 (the defaults here; None:
    n_max 24/28 of the steps, rounded); SD3 50 steps, n_max 33, n_min 0, n_avg 1, guidance 3.5 / 13.5. With ``target`` = ``source`` at equal guidance the
    difference is 0 and the source's latent comes back exactly. ``seed``: the noise draws'.
    """
    start_time = time.perf_counter()
    size = _check_inputs(model, image, source, target, num_inference_steps, allow_large)
    f = model.vae_scale_factor
    sampler = _flow_sampler(model, (size[0] // f, size[1] // f), "FlowEdit")
    if n_max is None:  # the paper's FLUX.1 share of the steps, 24 of 28
        n_max = max(1, round(num_inference_steps * 24 / 28))
    n_max = check_whole("n_max", n_max, 1, num_inference_steps)
    n_min = check_whole("n_min", n_min, 0, n_max)
    n_avg = check_whole("n_avg", n_avg, 1)
    seed = check_seed(seed)
    for w in (source_guidance, target_guidance):
        check_sampling(num_inference_steps, w, model)
    sampler.set_steps(num_inference_steps, device=model.device)
    T = num_inference_steps
    t0 = time.perf_counter()
    x_src = encode_images(model, image[None].astype(np.float32) / 255.0)  # (1, C, h, w)
    cond = {"src": model.encode([source], size=size), "tar": model.encode([target], size=size)}
    guidance = {"src": model.make_guidance(source_guidance), "tar": model.make_guidance(target_guidance)}
    uncond = model.unconditional(1, size=size) if max(g.branches for g in guidance.values()) > 1 else None
    context = {k: guidance[k].conditioning(cond[k], uncond) for k in cond}
    t1 = time.perf_counter()

    def velocity(which: str):
        return lambda x, t: guided_output(model, sampler, guidance[which], x, t, context[which])  # (1, C, h, w)

    out = flowedit_latents(velocity("src"), velocity("tar"), x_src, sampler, n_max=n_max, n_min=n_min, n_avg=n_avg,
                           generator=make_generator(seed), progress=progress)
    t2 = time.perf_counter()
    edited = to_uint8(decode_latents(model, out))[0]
    t3 = time.perf_counter()
    settings = {"n_max": n_max, "n_min": n_min, "n_avg": n_avg, "source_guidance": float(source_guidance),
                "target_guidance": float(target_guidance)}
    return VelocityEditResult(
        "flowedit", [source, target], np.stack([image, edited]), seed,
        Sampling(T, float(target_guidance), size[0], size[1], sampler.name), _timings(start_time, t0, t1, t2, t3),
        latents=x_src, final_latents=out, settings=settings)


@torch.no_grad()
def uniedit(
    model: DiffusionModel,
    image: np.ndarray,
    source: str,
    target: str,
    *,
    num_inference_steps: int = 15,
    alpha: float = 0.6,
    omega: float = 5.0,
    guidance_scale: float = 1.0,
    inversion_prompt: str = "",
    mask_patch: int | None = None,
    allow_large: bool = False,
    progress: bool | str = True,
) -> VelocityEditResult:
    """UniEdit-Flow (Jiao et al. 2025) of ``image`` ((H, W, 3) uint8) from ``source`` to ``target``.

    Uni-Inv (:func:`~promptedit.samplers.flow.solver_step` ``uni-inv``) inverts the image under
    ``inversion_prompt`` at guidance 1 for round(``alpha`` · T) steps (α, the "delay rate": how far up the schedule
    the edit starts), then each remaining sampling step takes Uni-Edit's fused velocity
    (:func:`uniedit_velocity`, strength ``omega``) of the source's and the target's velocities at the same latent,
    guided at ``guidance_scale``, mixed by :func:`uniedit_mask` over cells of ``mask_patch`` latent positions
    (None: one backbone token, 2 × 2 on FLUX.1). The authors' settings on FLUX.1-dev: α 0.6 (0.6–0.8), ω 5, 15
    steps (8–30), guidance 1 (1–2), inversion under the empty prompt (the defaults here). With ``target`` =
    ``source`` the difference is 0 and the edit is Uni-Inv's reconstruction.
    """
    start_time = time.perf_counter()
    size = _check_inputs(model, image, source, target, num_inference_steps, allow_large)
    f = model.vae_scale_factor
    sampler = _flow_sampler(model, (size[0] // f, size[1] // f), "UniEdit-Flow")
    if not isinstance(inversion_prompt, str):
        raise ParameterError(f"the inversion prompt must be text (\"\" the empty prompt), got "
                             f"{type(inversion_prompt).__name__}")
    alpha = check_real("alpha", alpha, 0.0, 1.0, low_open=True)
    omega = check_real("omega", omega)
    patch = model.backbone.size_factor if mask_patch is None else check_whole("mask_patch", mask_patch, 1)
    check_sampling(num_inference_steps, guidance_scale, model)
    if (size[0] // f) % patch or (size[1] // f) % patch:
        raise ParameterError(f"mask_patch {patch} does not divide the latent's {size[0] // f}x{size[1] // f}")
    T = num_inference_steps
    steps = max(1, round(alpha * T))
    sampler.set_steps(T, device=model.device)
    t0 = time.perf_counter()
    x0 = encode_images(model, image[None].astype(np.float32) / 255.0)  # (1, C, h, w)
    cond = Conditioning.cat([model.encode([source], size=size), model.encode([target], size=size)])  # 2 rows
    guidance = model.make_guidance(guidance_scale)
    context = guidance.conditioning(cond, model.unconditional(1, size=size) if guidance.branches > 1 else None)
    t1 = time.perf_counter()
    x = flow_inversion(model, x0, model.encode([inversion_prompt], size=size), num_inference_steps=T,
                       solver="uni-inv", stop=steps, progress=progress)[-1:]  # (1, C, h, w) at sampling step T − steps
    x_start, mask = x, None
    for i in tqdm(range(T - steps, T), desc=progress_desc(progress, "Uni-Edit"), disable=not progress, leave=False):
        t = sampler.timesteps[i]
        v_src, v_tar = guided_output(model, sampler, guidance, x.repeat(2, 1, 1, 1), t, context).chunk(2)
        mask = uniedit_mask(v_tar - v_src, patch)  # (1, 1, h, w)
        x = sampler.step(uniedit_velocity(v_src, v_tar, mask.to(v_src.dtype), omega), t, x)
    t2 = time.perf_counter()
    edited = to_uint8(decode_latents(model, x))[0]
    t3 = time.perf_counter()
    settings = {"alpha": alpha, "omega": omega, "edit_steps": steps, "inversion_prompt": inversion_prompt,
                "mask_patch": patch}
    return VelocityEditResult(
        "uniedit", [source, target], np.stack([image, edited]), None,
        Sampling(T, float(guidance_scale), size[0], size[1], sampler.name), _timings(start_time, t0, t1, t2, t3),
        latents=x_start, final_latents=x, settings=settings, velocity_mask=mask[0, 0].cpu().numpy())


def _timings(start, t0, t1, t2, t3) -> dict[str, float]:
    """The stages' seconds (``encode``: the image and the prompts; ``denoise``: inversion and edit)."""
    return {"encode": t1 - t0, "denoise": t2 - t1, "decode": t3 - t2, "total": t3 - start}
