"""Samplers: what the runner needs of a sampling method (:class:`~promptedit.samplers.base.Sampler`), and DDIM
(:class:`~promptedit.samplers.ddim.DDIMSampler`), the one every shipped model uses."""

from .base import Sampler, strength_start
from .ddim import DDIMSampler

__all__ = ["DDIMSampler", "Sampler", "strength_start"]
