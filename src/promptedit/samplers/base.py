"""What the runner, the inversions and the mask-guided edits need of a sampler, whatever its equations.

A :class:`Sampler` is made per run by the model (``model.make_sampler()``), set to a number of steps, and then
steps x_t → x_{t−1} (sampling), x_{t−1} → x_t (inversion), noises a clean latent to a step's level (SDEdit,
mask-guided edits) and converts the model's output to ε or x₀. DDIM is :mod:`promptedit.samplers.ddim`; a
flow-matching Euler sampler implements the same methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..errors import ParameterError, check_real


def strength_start(num_steps: int, strength: float) -> int:
    """The schedule step an image noised to ``strength`` (a fraction of the steps) starts from (SDEdit,
    Meng et al. 2022, Sec. 3: t₀ = strength · T, rounded to the sampling steps)."""
    strength = check_real("strength", strength, 0.0, 1.0, low_open=True)
    return min(num_steps - 1, int(round(num_steps * (1.0 - strength))))


class Sampler(ABC):
    """A sampling method over a model's noise schedule, set to ``num_steps`` steps by :meth:`set_steps`.

    Step indices count the sampling steps from the noisiest (0) to the last (``num_steps − 1``); ``t`` is the
    model's timestep at a step (``timesteps[step]``), what the model is called with. Latents are (n, C, h, w).
    """

    #: what records call the sampler
    name: str = "sampler"
    #: the scale of the starting noise x_T relative to N(0, I)
    init_noise_sigma: float = 1.0
    #: diffusers' scheduler the sampler steps with, what diffusers' pipelines over the model's components take
    scheduler = None
    #: the ODE solvers this sampler steps with, its own step first (what inversions and edits may ask of it)
    solvers: tuple[str, ...] = ()

    def __init__(self):
        self.timesteps: torch.Tensor | None = None  # (num_steps,), noisiest first

    @property
    def num_steps(self) -> int:
        if self.timesteps is None:
            raise ParameterError("the sampler's steps are not set (set_steps first)")
        return len(self.timesteps)

    @abstractmethod
    def set_steps(self, num_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Set the schedule to ``num_steps`` steps (ParameterError when it cannot take them); its timesteps."""

    def start_index(self, strength: float) -> int:
        """The step an image noised to ``strength`` starts from (see :func:`strength_start`)."""
        return strength_start(self.num_steps, strength)

    def scale_model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        """x_t as the model takes it at ``t`` (unchanged for samplers whose x_t is already at unit scale)."""
        return x

    @abstractmethod
    def step(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """One sampling step x_t → x_{t−1} from the model's (guided) output at ``t``."""

    @abstractmethod
    def inverse_step(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """One inversion step x_{t−1} → x_t, the model's output taken at x_{t−1} and ``t``."""

    @abstractmethod
    def eps_step(self, eps: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """One sampling step x_t → x_{t−1} from ε, differentiable (null-text optimises through it)."""

    def differentiable_output(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """What :meth:`differentiable_step` takes, from the model's output at x_t and ``t``: ε here."""
        return self.to_eps(model_output, t, x)

    def differentiable_step(self, output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """One sampling step x_t → x_{t−1} from :meth:`differentiable_output` (guided), differentiable (null-text
        optimises through it): :meth:`eps_step` here."""
        return self.eps_step(output, t, x)

    @abstractmethod
    def noise_to(self, x0: torch.Tensor, noise: torch.Tensor, step: int, *, after: bool = False) -> torch.Tensor:
        """The clean latent ``x0`` noised with ``noise`` to the level of ``step`` (``after``: the level the step
        leads to, what a step from there should give)."""

    @abstractmethod
    def to_eps(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """ε at x_t and ``t`` from the model's output (whatever it predicts)."""

    @abstractmethod
    def to_x0(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """The predicted clean latent x₀ at x_t and ``t`` from the model's output."""

    @abstractmethod
    def checkpoint_scheduler(self):
        """diffusers' scheduler with the checkpoint's configuration as it is (for saving a checkpoint)."""

    def inverse_scheduler(self):
        """diffusers' inverse scheduler of this sampler (what diffusers' DiffEdit pipeline inverts with)."""
        raise ParameterError(f"diffusers' DiffEdit pipeline needs an inverse scheduler; the {self.name} sampler "
                             "has none")
