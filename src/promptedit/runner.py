"""One runner for every method: a start, conditioning and controls in; latents, images and timings out.

Every method is the same loop (Algorithm 1 of Hertz et al. 2023 with classifier-free guidance) from a
different start:

* :class:`SeedStart`: x_T drawn from a seed (generation, Prompt-to-Prompt on generated images);
* an :class:`~promptedit.inversion.Inversion`: z*_T of a real image, its per-step null conditioning and, for
  direct inversion, the pivot callback (edits of real images);
* :class:`NoisedImage`: an image noised to a strength, denoised from there (mask-guided edits, InstDiffEdit).

:func:`run` encodes the prompts, prepares the start, installs the attention controller and feature injection,
runs :func:`denoise` and decodes. Argument names follow diffusers (``num_inference_steps``, ``guidance_scale``,
``generator``, ``latents``).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .conditioning import Conditioning
from .control import AttentionControl, Compose, FeatureInjection
from .errors import NumericalError, ParameterError
from .guidance import check_scale, require_classifier_free

StepCallback = Callable[[dict], None]
#: image sides above this many times the model's native side are refused unless ``allow_large``
MAX_SIZE_FACTOR = 4


# ----------------------------------------------------------------------------- checks


def check_sampling(num_inference_steps, guidance_scale, model=None) -> None:
    """Validate the loop's numeric parameters (ParameterError otherwise); with ``model``, also that its sampler
    takes that many steps (:meth:`~promptedit.samplers.base.Sampler.set_steps`) and its guidance that scale."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
        raise ParameterError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
    if num_inference_steps > 1000:
        raise ParameterError(f"num_inference_steps must be at most 1000, got {num_inference_steps}")
    if model is not None:
        model.make_sampler().set_steps(num_inference_steps)
        model.make_guidance(guidance_scale)  # checks the scale as the model's guidance takes it
    else:
        check_scale(guidance_scale)


def check_negative_prompt(model, negative_prompt, guidance_scale) -> None:
    """A negative prompt replaces the unconditional branch, so it needs one: text, with the model's guidance
    classifier-free at a scale other than 1 (ParameterError otherwise)."""
    if not isinstance(negative_prompt, str):
        raise ParameterError(f"the negative prompt must be text, got {type(negative_prompt).__name__}")
    guidance = require_classifier_free(model.make_guidance(guidance_scale), "a negative prompt")
    if guidance.branches == 1:
        raise ParameterError(f"a negative prompt needs a guidance scale other than 1 (at {guidance.scale:g} "
                             "classifier-free guidance has no unconditional branch to replace)")


def available_memory(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (CUDA: the allocator's; CPU: MemAvailable), None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, RuntimeError, ValueError):
        return None
    return None


def check_size(model, height, width, *, batch: int = 2, allow_large: bool = False) -> None:
    """Image sides must be positive multiples of the model's factor, at most ``MAX_SIZE_FACTOR`` × its native side
    unless ``allow_large``, and the run's estimated memory must fit in what is free."""
    f = model.size_factor
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % f:
            raise ParameterError(f"{name} must be a positive multiple of {f} for this model, got {v!r}")
    need = model.estimate_memory(height, width, batch)
    limit = MAX_SIZE_FACTOR * model.image_size
    if max(height, width) > limit and not allow_large:
        raise ParameterError(f"{width}x{height} is more than {MAX_SIZE_FACTOR}x this model's native "
                             f"{model.image_size} px (about {need / 2**30:.1f} GiB for this run); allow large sizes "
                             "(--allow-large-size; allow_large=True) to run it anyway")
    free = available_memory(model.device)
    if free is not None and need > free:
        raise ParameterError(f"{width}x{height} needs about {need / 2**30:.1f} GiB for this run, but only "
                             f"{free / 2**30:.1f} GiB is free on {model.device}")


def check_seed(seed) -> int:
    """A seed is a whole number in [0, 2^63) (what a torch generator takes)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ParameterError(f"seed must be a whole number in [0, 2^63), got {seed!r}")
    return seed


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (a random seed when None), so seeds reproduce across devices."""
    g = torch.Generator("cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_seed(seed))
    return g


# ----------------------------------------------------------------------------- images <-> latents


def _latent_stats(model, like: torch.Tensor):
    """The VAE's per-channel latent mean and std, (1, C, 1, 1), when its config has them (else None)."""
    mean, std = getattr(model.vae.config, "latents_mean", None), getattr(model.vae.config, "latents_std", None)
    if mean is None or std is None:
        return None
    shape = (1, len(mean), 1, 1)
    return (torch.tensor(mean, device=like.device, dtype=like.dtype).view(shape),
            torch.tensor(std, device=like.device, dtype=like.dtype).view(shape))


def scale_latents(model, z: torch.Tensor) -> torch.Tensor:
    """The VAE's latents as the UNet sees them: ((z − mean) / std when configured) · scaling factor."""
    stats = _latent_stats(model, z)
    if stats is not None:
        z = (z - stats[0]) / stats[1]
    return z * getattr(model.vae.config, "scaling_factor", 1.0)


def unscale_latents(model, x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`scale_latents` (what the VAE decodes)."""
    x = x / getattr(model.vae.config, "scaling_factor", 1.0)
    stats = _latent_stats(model, x)
    return x if stats is None else x * stats[1] + stats[0]


@torch.no_grad()
def decode_latents(model, latents: torch.Tensor) -> np.ndarray:
    """VAE decode x_0 → images (n, H, W, 3) float32 in [0, 1].

    The VAE runs in fp32 when its config says ``force_upcast`` (SDXL's VAE overflows in fp16), and a decode that
    gives NaN or Inf in reduced precision is redone in fp32.
    """
    if not bool(torch.isfinite(latents).all()):
        raise NumericalError("the denoising loop gave NaN/Inf latents: the guidance scale is too large for the "
                             "model's precision, or its weights are broken")
    latents = unscale_latents(model, latents)
    vae_dtype = next(model.vae.parameters(), torch.empty(0, dtype=model.dtype)).dtype
    upcast = vae_dtype != torch.float32 and bool(getattr(model.vae.config, "force_upcast", False))

    def decode_fp32():
        model.vae.to(torch.float32)
        try:
            return model.vae.decode(latents.float()).sample
        finally:
            model.vae.to(vae_dtype)

    if upcast:
        images = decode_fp32()
    else:
        images = model.vae.decode(latents.to(vae_dtype)).sample
        if not torch.isfinite(images).all() and vae_dtype != torch.float32:
            warnings.warn("decoded image had NaN/Inf in reduced precision; decoding again in fp32", RuntimeWarning,
                          stacklevel=2)
            images = decode_fp32()
    if not bool(torch.isfinite(images).all()):
        raise NumericalError("the VAE decoded NaN/Inf values in fp32 from finite latents: its weights are broken, "
                             "or the latents are far outside its range (too large a guidance scale)")
    images = (images.float() / 2 + 0.5).clamp(0, 1)
    return images.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode_images(model, images: np.ndarray) -> torch.Tensor:
    """VAE encode images (n, H, W, 3) in [0, 1] → latents z_0 (n, C, h, w) (the posterior mean, scaled)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(model.device, model.dtype)
    vae_dtype = next(model.vae.parameters(), x).dtype
    upcast = vae_dtype != torch.float32 and bool(getattr(model.vae.config, "force_upcast", False))
    if upcast:  # SDXL's VAE overflows in fp16 (its config says so)
        model.vae.to(torch.float32)
    try:
        posterior = model.vae.encode((x * 2 - 1).to(torch.float32 if upcast else vae_dtype)).latent_dist
    finally:
        if upcast:
            model.vae.to(vae_dtype)
    return scale_latents(model, posterior.mean).to(model.dtype)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] → uint8."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------- starts


@dataclass
class Prepared:
    """A start made ready for one run.

    Attributes:
        x: the latents the loop starts from, (1 or n, C, h, w).
        start_step: index of the schedule step ``x`` is at (0: x_T).
        uncond: the unconditional conditioning: n rows, or one such per step (null-text); None: the model's.
        controller: a controller the start needs (direct inversion's pivot), run before the caller's.
        extras: what the start computed that callers use (e.g. a noised image's per-step sources).
    """

    x: torch.Tensor
    start_step: int = 0
    uncond: Conditioning | list[Conditioning] | None = None
    controller: AttentionControl | None = None
    extras: dict = field(default_factory=dict)


class Start:
    """Where denoising starts. A start may fix the sampling settings (an inversion fixes its steps, guidance and
    size); None leaves them to the caller and the model's defaults."""

    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    size: tuple[int, int] | None = None
    seed: int | None = None
    method: str = "seed"
    inverted: bool = False  # a real image's inversion (its edits reconstruct it in the source branch)

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Refuse prompts this start cannot serve (an inversion's source must be its prompt)."""

    def prepare(self, model, *, prompts: Sequence[str], num_inference_steps: int, size: tuple[int, int],
                edit_null: str | None = None) -> Prepared:
        raise NotImplementedError


@dataclass
class SeedStart(Start):
    """x_T ~ N(0, I) drawn on the CPU from ``seed`` (None: a random seed), shared by every branch."""

    seed: int | None = None

    def __post_init__(self):
        if self.seed is not None:
            check_seed(self.seed)

    def prepare(self, model, *, prompts, num_inference_steps, size, edit_null=None) -> Prepared:
        h, w = size
        shape = (1, model.latent_channels, h // model.vae_scale_factor, w // model.vae_scale_factor)
        x_T = torch.randn(shape, generator=make_generator(self.seed), dtype=torch.float32)
        return Prepared(x_T.to(model.device, model.dtype))


@dataclass
class NoisedImage(Start):
    """An image (H, W, 3) uint8 encoded and noised to ``strength`` with noise from ``seed`` (``num_seeds`` draws,
    branch rows cycling through them). ``extras``: ``z0`` (1, C, h, w), ``noise`` (num_seeds, C, h, w) and
    ``sources`` (steps − start, num_seeds, C, h, w): z0 noised with that noise to the level after each step of the
    pass (the sampler's :meth:`~promptedit.samplers.base.Sampler.noise_to`), the last one z0 itself — what
    mask-guided edits keep outside their mask."""

    image: np.ndarray = None
    strength: float = 0.5
    seed: int | None = 0
    num_seeds: int = 1
    method: str = "noised-image"

    def __post_init__(self):
        if self.image is None or self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ParameterError("the image must be (H, W, 3) uint8")
        if not 0.0 < float(self.strength) <= 1.0:
            raise ParameterError(f"strength must be in (0, 1], got {self.strength}")
        if self.num_seeds < 1:
            raise ParameterError(f"num_seeds must be >= 1, got {self.num_seeds}")
        self.size = tuple(self.image.shape[:2])

    def prepare(self, model, *, prompts, num_inference_steps, size, edit_null=None) -> Prepared:
        z0 = encode_images(model, self.image[None].astype(np.float32) / 255.0)
        noise = torch.randn((self.num_seeds, *z0.shape[1:]), generator=make_generator(self.seed)).to(z0)
        sampler = model.make_sampler()
        sampler.set_steps(num_inference_steps)
        start = sampler.start_index(self.strength)
        x_start = sampler.noise_to(z0, noise, start)  # (num_seeds, C, h, w)
        after = [sampler.noise_to(z0, noise, i, after=True) for i in range(start, num_inference_steps - 1)]
        after.append(z0.expand_as(noise))  # the known region ends exactly as the source
        n = len(prompts)
        if n % self.num_seeds:
            raise ParameterError(f"{n} branches do not split over {self.num_seeds} noise draws")
        return Prepared(x_start.repeat(n // self.num_seeds, 1, 1, 1), start,
                        extras={"z0": z0, "noise": noise, "sources": torch.stack(after)})


# ----------------------------------------------------------------------------- the loop


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
    sampler = model.make_sampler()
    sampler.set_steps(num_inference_steps, device=model.device)
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
            model_input = guidance.batch(latents)
            out = model.predict(sampler.scale_model_input(model_input, t), t, context, compiled=uncontrolled,
                                **guidance.predict_kwargs())
            noise_pred = guidance.combine(out)
            # 4b. Sampler step x_t -> x_{t-1}
            latents = sampler.step(noise_pred, t, latents)
            # 4c. Controller's step callback (local blend, pivots, masks)
            if controller is not None:
                latents = controller.step_callback(latents)
            if callback is not None:
                callback({"step": i, "t": t, "x_t": latents, "noise_pred": noise_pred})
    return latents


# ----------------------------------------------------------------------------- one run


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
                      end_step=end_step)
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


# ----------------------------------------------------------------------------- the one result type


@dataclass
class Result:
    """What every method returns: images of every branch, the settings used and how long each stage took.

    Attributes:
        method: ``generate``, ``p2p`` (an edit of a generated image), ``attention``, the inversion method of an
            edit of a real image (``null-text``, ``negative-prompt``, ``direct``, ``ddim``), or a mask-guided
            edit (``instdiffedit``, ``diffedit``, ``user-mask``; ``instant-mask``/``diffedit-mask`` for a mask alone).
        prompts: the branches' prompts, in batch order.
        images: (n, H, W, 3) uint8: the branches (source first); for mask-guided edits (input, edited).
        seed: the seed of x_T or of the noise (None for inversions).
        sampling: steps, guidance and size used.
        timings: seconds per stage (``total`` always).
        latents: the latents the run started from (x_T, z*_T, or the noised image), (1 or n, C, h, w).
        final_latents: the latents after the run (x_0 before decoding).
        spec, mode, notes: for edits: the spec as run, the mode used, and notes on what was chosen.
        attention, attention_downsample: the attention store and the resolution it recorded, when asked.
        blend_mask: local blend's last mask (n, 1, h, w), when blending.
        edit_null: for edits of an inversion, which branches took its null conditioning.
        inversion: the inversion an edit started from.
        mask, latent_mask, soft_mask: a mask-guided edit's mask (H, W) bool, at the latent's size (h, w), and the
            soft mask it came from (h, w).
        words: instant masks' word selection; settings: the method's own parameters.
    """

    method: str
    prompts: list[str]
    images: np.ndarray
    seed: int | None
    sampling: Sampling
    timings: dict[str, float]
    latents: torch.Tensor | None = None
    final_latents: torch.Tensor | None = None
    spec: object | None = None
    mode: str | None = None
    notes: list[str] = field(default_factory=list)
    attention: object | None = None
    attention_downsample: int | None = None
    blend_mask: torch.Tensor | None = None
    edit_null: str | None = None
    inversion: object | None = None
    mask: np.ndarray | None = None
    latent_mask: np.ndarray | None = None
    soft_mask: np.ndarray | None = None
    words: dict | None = None
    settings: dict = field(default_factory=dict)

    @property
    def edited(self) -> np.ndarray | None:
        """The (first) edited image (H, W, 3); None for a mask alone or a plain generation of one prompt."""
        return self.images[1] if len(self.images) > 1 else None

    @property
    def num_inference_steps(self) -> int:
        return self.sampling.num_inference_steps

    @property
    def guidance_scale(self) -> float:
        return self.sampling.guidance_scale

    @property
    def height(self) -> int:
        return self.sampling.height

    @property
    def width(self) -> int:
        return self.sampling.width
