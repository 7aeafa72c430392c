"""Checks of a run's settings before it starts: steps and guidance, image size and memory, seeds."""

from __future__ import annotations

import torch

from ..errors import ParameterError
from ..guidance import check_scale, require_classifier_free

#: image sides above this many times the model's native side are refused unless ``allow_large``
MAX_SIZE_FACTOR = 4


def check_sampling(num_inference_steps, guidance_scale, model=None) -> None:
    """Validate the loop's numeric parameters (ParameterError otherwise); with ``model``, also that its sampler
    takes that many steps (:meth:`~promptedit.samplers.base.Sampler.set_steps`) and its guidance that scale."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
        raise ParameterError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
    if num_inference_steps > 1000:
        raise ParameterError(f"num_inference_steps must be at most 1000, got {num_inference_steps}")
    if model is not None:
        side = model.image_size // model.vae_scale_factor  # the native latent side (the defaults' image size's)
        model.make_sampler((side, side)).set_steps(num_inference_steps)
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
