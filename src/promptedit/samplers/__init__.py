"""Samplers: what the runner needs of a sampling method (:class:`~promptedit.samplers.base.Sampler`), DDIM
(:class:`~promptedit.samplers.ddim.DDIMSampler`), the one every shipped model uses, and flow-matching Euler
(:class:`~promptedit.samplers.flow.FlowMatchEulerSampler`) for rectified-flow models (FLUX.1, SD3/3.5)."""

from .base import Sampler, strength_start
from .ddim import DDIMSampler
from .flow import FlowMatchEulerSampler

__all__ = ["DDIMSampler", "FlowMatchEulerSampler", "Sampler", "strength_start"]
