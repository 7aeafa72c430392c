"""One runner for every method: a start, conditioning and controls in; latents, images and timings out.

Every method is the same loop (Algorithm 1 of Hertz et al. 2023 with classifier-free guidance) from a
different start:

* :class:`SeedStart`: x_T drawn from a seed (generation, Prompt-to-Prompt on generated images);
* an :class:`~promptedit.methods.inversion.Inversion`: z*_T of a real image, its per-step null conditioning and, for
  direct inversion, the pivot callback (edits of real images);
* :class:`NoisedImage`: an image noised to a strength, denoised from there (mask-guided edits, InstDiffEdit).

:func:`run` encodes the prompts, prepares the start, installs the attention controller and feature injection,
runs :func:`denoise` and decodes. Argument names follow diffusers (``num_inference_steps``, ``guidance_scale``,
``generator``, ``latents``).

The package: :mod:`.checks`, :mod:`.latents`, :mod:`.starts`, :mod:`.loop` (what the methods return is :mod:`promptedit.methods.result`).
"""

from .checks import available_memory, check_negative_prompt, check_sampling, check_seed, check_size, make_generator, MAX_SIZE_FACTOR
from .latents import decode_latents, encode_images, scale_latents, to_uint8, unscale_latents
from .starts import NoisedImage, Prepared, SeedStart, Start
from .loop import RunOutput, Sampling, denoise, guided_output, progress_desc, resolve_sampling, run, StepCallback

__all__ = [
    "MAX_SIZE_FACTOR", "NoisedImage", "Prepared", "RunOutput", "Sampling", "SeedStart", "Start",
    "StepCallback", "available_memory", "check_negative_prompt", "check_sampling", "check_seed", "check_size",
    "decode_latents", "denoise", "encode_images", "guided_output", "make_generator", "progress_desc", "resolve_sampling",
    "run", "scale_latents", "to_uint8", "unscale_latents",
]
