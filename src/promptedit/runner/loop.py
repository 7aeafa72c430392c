"""The denoising loop (:func:`denoise`) and one run (:func:`run`): encode, prepare the start, install the controls,
denoise, decode."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..conditioning import Conditioning
from ..control import AttentionControl, Compose, FeatureInjection
from ..errors import ParameterError
from .checks import check_negative_prompt, check_sampling, check_size
from .latents import decode_latents, to_uint8
from .starts import Prepared, SeedStart, Start

StepCallback = Callable[[dict], None]


@torch.no_grad()
def denoise(
    model,
    cond: Conditioning,
    latents: torch.Tensor,
    *,
    num_inference_steps: int,
    guidance_scale: float,
    uncond: Conditioning | Sequence[Conditioning] | None = None,
    controller: AttentionControl | None = None,
    features: FeatureInjection | None = None,
    callback: StepCallback | None = None,
    progress: bool | str = True,
    start_step: int = 0,
    end_step: int | None = None,
    solver: str | None = None,
) -> torch.Tensor:
    """Run the sampling loop from ``latents`` for a batch of branches sharing one layout, with the model's sampler
    (:meth:`make_sampler`) and guidance (:meth:`make_guidance`).

    Args:
        cond: the branches' conditioning, n rows.
        latents: x at ``timesteps[start_step]``, (n, C, h, w) or (1, C, h, w) broadcast to the n branches.
        uncond: the unconditional conditioning: n (or 1) rows, or one such per step (null-text inversion);
            None: the model's unconditional conditioning (used where the guidance batches an unconditional
            branch).
        controller: attention controller; None runs the plain loop.
        features: optional Plug-and-Play feature injection.
        callback: called after each step with a dict: ``step``, ``t``, ``x_t``, ``noise_pred``.
        start_step: skip the first steps of the schedule (SDEdit-style partial denoising); controllers count
            steps from there.
        end_step: stop before this step (returns the partly denoised latents).
        solver: step with this ODE solver of the sampler's (:attr:`~promptedit.samplers.base.Sampler.solvers`;
            RF-Solver's or FireFlow's on a flow, which evaluate the model at mid-points too); None: the sampler's
            own step.

    Returns the latents after the last step, x_0 (n, C, h, w) unless ``end_step`` stops earlier.
    """
    # 1. Check inputs
    check_sampling(num_inference_steps, guidance_scale)
    n = len(cond)
    if latents.shape[0] not in (1, n):
        raise ParameterError(f"latents batch {latents.shape[0]} does not match {n} prompts")
    latents = latents.expand(n, *latents.shape[1:]).clone()
    size = (latents.shape[-2] * model.vae_scale_factor, latents.shape[-1] * model.vae_scale_factor)
    guidance = model.make_guidance(guidance_scale)
    if guidance.branches > 1 and uncond is None:
        uncond = model.unconditional(n, size=size)
    per_step = isinstance(uncond, (list, tuple))
    if per_step and len(uncond) != num_inference_steps:
        raise ParameterError(f"{len(uncond)} null conditionings for {num_inference_steps} steps")
    if not 0 <= start_step < num_inference_steps:
        raise ParameterError(f"start_step must be in [0, {num_inference_steps}), got {start_step}")

    # 2. Set timesteps
    sampler = model.make_sampler(latents.shape[-2:])
    sampler.set_steps(num_inference_steps, device=model.device)
    if solver is not None and solver not in sampler.solvers:
        raise ParameterError(f"the {sampler.name} sampler does not step with {solver} (its solvers: "
                             f"{', '.join(sampler.solvers)})")
    reused = None  # the velocity a solver's next step reuses (FireFlow's mid-point velocity)
    timesteps = sampler.timesteps[start_step:end_step]
    if start_step == 0:
        latents = latents * sampler.init_noise_sigma
    if per_step:
        uncond = list(uncond)[start_step:end_step]
    # the conditioning of the batched UNet call (guidance.branches × n rows; one per step for null-text)
    contexts = [guidance.conditioning(cond, u) for u in (uncond if per_step else [uncond])]

    # 3. Install hooks
    h, w = latents.shape[-2:]
    uncontrolled = controller is None and features is None  # the compiled UNet, when there is one, may run
    with contextlib.ExitStack() as stack:
        if controller is not None:
            controller.begin(num_steps=len(timesteps), latent_size=(h, w), n_prompts=n,
                             device=latents.device, dtype=model.backbone.dtype)
            stack.enter_context(model.backbone.attach(controller))
        if features is not None:
            features.begin(num_steps=len(timesteps), n_prompts=n)
            stack.enter_context(model.backbone.inject_features(features))

        # 4. Denoising loop
        for i, t in enumerate(tqdm(timesteps, desc=progress_desc(progress, "denoising"), disable=not progress, leave=False)):
            if controller is not None:
                controller.begin_step(i)
            if features is not None:
                features.begin_step(i)
            # 4a. The model on the guidance's branches, (branches · n, C, h, w), combined to (n, C, h, w)
            context = contexts[i if per_step else 0]
            if solver is None:
                noise_pred = guided_output(model, sampler, guidance, latents, t, context, compiled=uncontrolled)
                # 4b. Sampler step x_t -> x_{t-1}
                latents = sampler.step(noise_pred, t, latents)
            else:  # 4a–b with a solver that evaluates the model again within the step (its mid-points)
                evaluations = []

                def velocity(x, t_at, context=context):
                    evaluations.append(guided_output(model, sampler, guidance, x, t_at, context, compiled=uncontrolled))
                    return evaluations[-1]

                latents, reused = sampler.solve_step(solver, velocity, t, latents, reused)
                noise_pred = evaluations[-1] if evaluations else reused
            # 4c. Controller's step callback (local blend, pivots, masks)
            if controller is not None:
                latents = controller.step_callback(latents)
            if callback is not None:
                callback({"step": i, "t": t, "x_t": latents, "noise_pred": noise_pred})
    return latents


def guided_output(model, sampler, guidance, x: torch.Tensor, t, context: Conditioning, *,
                  compiled: bool = False) -> torch.Tensor:
    """The guided model output at x (n, C, h, w) and timestep ``t``: the guidance's branches batched
    ((branches · n, C, h, w), ``context`` their conditioning: ``guidance.conditioning(cond, uncond)``), one
    backbone call, combined to (n, C, h, w)."""
    out = model.predict(sampler.scale_model_input(guidance.batch(x), t), t, context, compiled=compiled,
                        **guidance.predict_kwargs())
    return guidance.combine(out)


@dataclass
class Sampling:
    """The settings a run used: steps, guidance, image size, the name of the sampler, and the negative prompt
    whose conditioning is the unconditional branch of classifier-free guidance (None: the model's ∅)."""

    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    sampler: str
    negative_prompt: str | None = None


def resolve_sampling(model, start: Start, num_inference_steps=None, guidance_scale=None, height=None, width=None,
                     *, steps_default: int | None = None, batch: int = 2, allow_large: bool = False,
                     negative_prompt: str | None = None) -> Sampling:
    """The run's settings: what the start fixes (a value given that differs is refused), else what was given,
    else the model's defaults (``steps_default`` overrides the model's sampling steps); ``negative_prompt``
    (:func:`check_negative_prompt`) is carried to :func:`run`."""
    given = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
             "height": height, "width": width}
    fixed = {"num_inference_steps": start.num_inference_steps, "guidance_scale": start.guidance_scale,
             "height": None if start.size is None else start.size[0],
             "width": None if start.size is None else start.size[1]}
    for key, value in fixed.items():
        if value is not None and given[key] is not None and given[key] != value:
            raise ParameterError(f"{key} is fixed by the {start.method} start at {value}; got {given[key]!r}")
        if value is not None:
            given[key] = value
    d = model.defaults.sampling
    steps = given["num_inference_steps"]
    steps = (steps_default if steps_default is not None else d.num_inference_steps) if steps is None else steps
    w = d.guidance_scale if given["guidance_scale"] is None else given["guidance_scale"]
    check_sampling(steps, w, model)
    if negative_prompt is not None:
        check_negative_prompt(model, negative_prompt, w)
    h = model.image_size if given["height"] is None else given["height"]
    wd = model.image_size if given["width"] is None else given["width"]
    check_size(model, h, wd, batch=batch, allow_large=allow_large)
    return Sampling(steps, float(w), h, wd, model.make_sampler().name, negative_prompt)


@dataclass
class RunOutput:
    """What :func:`run` returns: the images of every branch, the latents and the timings.

    Attributes:
        images: (n, H, W, 3) uint8 (None when not decoded).
        x_start: the latents the loop started from (x_T for a seed).
        latents: the latents after the loop (x_0 unless stopped early), (n, C, h, w).
        prepared: the prepared start (its extras: a noised image's sources, …).
        timings: seconds: ``encode``, ``prepare``, ``denoise``, ``decode``, ``total``.
    """

    images: np.ndarray | None
    x_start: torch.Tensor
    latents: torch.Tensor
    prepared: Prepared
    timings: dict[str, float]


def run(
    model,
    prompts: Sequence[str],
    start: Start | None = None,
    *,
    sampling: Sampling,
    controller: AttentionControl | None = None,
    features: FeatureInjection | None = None,
    callback: StepCallback | None = None,
    edit_null: str | None = None,
    end_step: int | None = None,
    prepared: Prepared | None = None,
    decode: bool = True,
    progress: bool | str = True,
) -> RunOutput:
    """Denoise ``prompts`` together from ``start`` (default: a random seed) with the given controls: encode
    the branches, prepare the start (or take ``prepared``), run the loop, decode. ``sampling``'s negative prompt,
    when it has one, is the unconditional branch of every branch; a start with its own (a null-text or
    negative-prompt inversion) refuses it."""
    start = start or SeedStart()
    start.check_prompts(prompts)
    size = (sampling.height, sampling.width)
    t0 = time.perf_counter()
    cond = model.encode(prompts, size=size)
    negative = None if sampling.negative_prompt is None else model.encode([sampling.negative_prompt], size=size)
    t1 = time.perf_counter()
    if prepared is None:
        prepared = start.prepare(model, prompts=prompts, num_inference_steps=sampling.num_inference_steps,
                                 size=size, edit_null=edit_null)
    if negative is not None and prepared.uncond is not None:
        raise ParameterError(f"a negative prompt does not apply to an edit of a {start.method} inversion: its "
                             "unconditional branch is the inversion's")
    ctrl = controller
    if prepared.controller is not None:
        ctrl = Compose([prepared.controller, controller]) if controller is not None else prepared.controller
    t2 = time.perf_counter()
    latents = denoise(model, cond, prepared.x, num_inference_steps=sampling.num_inference_steps,
                      guidance_scale=sampling.guidance_scale,
                      uncond=prepared.uncond if negative is None else negative, controller=ctrl,
                      features=features, callback=callback, progress=progress, start_step=prepared.start_step,
                      end_step=end_step, solver=prepared.solver)
    t3 = time.perf_counter()
    images = to_uint8(decode_latents(model, latents)) if decode else None
    t4 = time.perf_counter()
    return RunOutput(images, prepared.x, latents, prepared,
                     {"encode": t1 - t0, "prepare": t2 - t1, "denoise": t3 - t2, "decode": t4 - t3, "total": t4 - t0})


def progress_desc(progress: bool | str, what: str) -> str:
    """A progress bar's label: what the bar counts (``what``), after the caller's own label when ``progress`` is
    one. Every method's ``progress`` is a bool (show its bars or not) or such a label: a front-end running many
    (the demo's rows) says which of its steps each bar belongs to."""
    return f"{progress}: {what}" if isinstance(progress, str) and progress else what
