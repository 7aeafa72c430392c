"""Flow-matching Euler sampling for rectified-flow models (FLUX.1, SD3/3.5) as a :class:`~.base.Sampler`, its
equations as small pure functions.

A rectified flow (Liu et al., "Flow Straight and Fast", ICLR 2023; Lipman et al., "Flow Matching for Generative
Modeling", ICLR 2023) joins a clean latent x₀ and noise ε by the straight path x_σ = (1 − σ)·x₀ + σ·ε, σ ∈ [0, 1],
and the model predicts its velocity v = dx/dσ = ε − x₀. Sampling integrates that ODE with Euler steps from σ = 1
down a schedule of sigmas that SD3 (Esser et al., "Scaling Rectified Flow Transformers", ICML 2024) shifts
towards the noise, and FLUX.1 shifts by the image's token count.

The schedule and the steps are computed here, in the same floating-point operations as diffusers'
``FlowMatchEulerDiscreteScheduler`` (so they equal it bit for bit, tested), not by calling its ``step``: that one
counts its calls (``step_index``), and null-text and the edits step the same timestep more than once.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ParameterError, check_real, check_whole
from .base import Sampler

#: the sampler's own schedule of base sigmas before shifting: "scheduler" — the scheduler's linspace of
#: timesteps from σ_max to σ_min, what ``StableDiffusion3Pipeline`` steps; "linspace" — ``FluxPipeline``'s
#: ``np.linspace(1.0, 1/N, N)``
SPACINGS = ("scheduler", "linspace")
#: scheduler options that give other schedules or a random step, none of them used by FLUX.1 or SD3
UNSUPPORTED = {"use_karras_sigmas": "Karras sigmas", "use_exponential_sigmas": "exponential sigmas",
               "use_beta_sigmas": "beta sigmas", "invert_sigmas": "inverted sigmas (Mochi's)",
               "stochastic_sampling": "stochastic sampling"}


# ----------------------------------------------------------------------------- the schedule


def shift_sigmas(sigmas, shift: float):
    """SD3's shifted schedule (Esser et al. 2024, Sec. 5.3.2, "resolution-dependent shifting"):
    σ' = shift·σ / (1 + (shift − 1)·σ); shift > 1 spends more steps near the noise. Arrays or tensors."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def time_shift(sigmas, mu: float, kind: str = "exponential"):
    """FLUX.1's resolution-dependent shift (Black Forest Labs' reference ``flux.sampling.time_shift``):
    exponential: σ' = e^μ / (e^μ + (1/σ − 1)), which is :func:`shift_sigmas` with shift = e^μ; linear:
    σ' = μ / (μ + (1/σ − 1)), shift = μ."""
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))
    return mu / (mu + (1 / sigmas - 1))


def image_seq_len_mu(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                     max_shift: float = 1.15) -> float:
    """μ for an image of ``image_seq_len`` latent tokens (FLUX.1: (h/16)·(w/16) at h × w pixels): the straight line
    through (base_seq_len, base_shift) and (max_seq_len, max_shift) (Black Forest Labs' ``get_lin_function``;
    diffusers' ``calculate_shift``), so larger images are shifted more towards the noise."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


def stretch_to_terminal(sigmas, terminal: float):
    """The shifted schedule stretched so that its last sigma is ``terminal`` (LTX-Video's ``rf.py``):
    σ'' = 1 − (1 − σ') / s with s = (1 − σ'_last) / (1 − terminal)."""
    one_minus = 1 - sigmas
    return 1 - one_minus / (one_minus[-1] / (1 - terminal))


def train_sigma_range(num_train_timesteps: int, shift: float, dynamic: bool) -> tuple[float, float]:
    """σ_max and σ_min of the training schedule σ = t / T, t = T … 1 (float32), shifted by ``shift`` unless the
    shift is dynamic (applied per image); what the scheduler's own spacing runs between."""
    ends = torch.tensor([float(num_train_timesteps), 1.0]) / num_train_timesteps  # (2,) float32: σ at t = T and t = 1
    if not dynamic:
        ends = shift_sigmas(ends, shift)
    return ends[0].item(), ends[-1].item()


def flow_schedule(num_steps: int, *, num_train_timesteps: int = 1000, shift: float = 1.0, mu: float | None = None,
                  time_shift_type: str = "exponential", shift_terminal: float | None = None,
                  spacing: str = "scheduler", device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The sigmas (num_steps + 1,) — the last one 0, the clean image — and timesteps σ·T (num_steps,) of a
    flow-matching Euler schedule, as ``FlowMatchEulerDiscreteScheduler.set_timesteps`` gives them under the
    pipeline that ``spacing`` names: base sigmas (:data:`SPACINGS`), shifted by :func:`time_shift` with ``mu``
    when ``mu`` is given (dynamic shifting) or else by :func:`shift_sigmas`, stretched to ``shift_terminal``."""
    if spacing == "linspace":
        base = np.linspace(1.0, 1 / num_steps, num_steps).astype(np.float32)  # (N,)
    else:
        sigma_max, sigma_min = train_sigma_range(num_train_timesteps, shift, mu is not None)
        base = np.linspace(sigma_max * num_train_timesteps, sigma_min * num_train_timesteps,
                           num_steps) / num_train_timesteps  # (N,) float64
    sigmas = time_shift(base, mu, time_shift_type) if mu is not None else shift_sigmas(base, shift)
    if shift_terminal:
        sigmas = stretch_to_terminal(sigmas, shift_terminal)
    sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32, device=device)  # (N,)
    timesteps = sigmas * num_train_timesteps  # (N,)
    return torch.cat([sigmas, torch.zeros(1, device=sigmas.device)]), timesteps


# ----------------------------------------------------------------------------- the steps and conversions


def euler_step(v: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, sigma_to: torch.Tensor) -> torch.Tensor:
    """One Euler step of the flow ODE dx/dσ = v from σ to σ_to (Liu et al. 2023, Alg. 1; Lipman et al. 2023,
    Eq. 1): x_{σ_to} = x_σ + (σ_to − σ)·v, in float32 and cast back to v's dtype as diffusers' step does.
    Sampling steps down (σ_to < σ); plain Euler inversion (RF-Inversion, FlowEdit's starting point) runs the same
    equation up, from the lower level with the velocity taken there."""
    return (x.to(torch.float32) + (sigma_to - sigma) * v).to(v.dtype)


def flow_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The point at σ of the straight path from x₀ to the noise (Liu et al. 2023, Eq. 1; Lipman et al. 2023,
    Eq. 20 with σ_min = 0): x_σ = (1 − σ)·x₀ + σ·ε (the operations of diffusers' ``scale_noise``)."""
    return sigma * noise + (1.0 - sigma) * x0


def x0_from_velocity(v: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x̂₀ = x_σ − σ·v (the path x_σ = (1 − σ)·x₀ + σ·ε with v = ε − x₀ solved for x₀)."""
    return x - sigma * v


def eps_from_velocity(v: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """ε̂ = x_σ + (1 − σ)·v (the same path solved for ε)."""
    return x + (1 - sigma) * v


def velocity_from_eps(eps: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """v = ε − x̂₀ with x̂₀ = (x_σ − σ·ε) / (1 − σ), i.e. v = (ε − x_σ) / (1 − σ): defined for σ < 1 only (at
    σ = 1, x_σ is the noise itself and ε says nothing of the velocity)."""
    return (eps - x) / (1 - sigma)


# ----------------------------------------------------------------------------- ODE solvers (sampling and inversion)

#: the solvers of the flow ODE this module steps with, either way along a schedule: Euler; RF-Solver's second-order
#: step (2 evaluations per step); FireFlow's mid-point step with the mid-point velocity reused (1 per step after
#: the first); Uni-Inv's predictor–corrector (1 per step after the first; an inversion, whose sampling is Euler's)
FLOW_SOLVERS = ("euler", "rf-solver", "fireflow", "uni-inv")


def mid_sigma(sigma: torch.Tensor, sigma_to: torch.Tensor) -> torch.Tensor:
    """The level half-way through a step, σ + (σ_to − σ)/2 (RF-Solver's and FireFlow's mid-point time)."""
    return sigma + (sigma_to - sigma) / 2


def rf_solver_step(v: torch.Tensor, v_mid: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor,
                   sigma_to: torch.Tensor) -> torch.Tensor:
    """RF-Solver's second-order step (Wang et al. 2024, "Taming Rectified Flow", its second-order Taylor expansion
    of the ODE's solution; the authors' ``denoise_rf_solver``): x + h·v + ½h²·v′, h = σ_to − σ, with
    v′ = (v_mid − v)/(h/2) from the velocity at the Euler mid-point."""
    h = sigma_to - sigma
    derivative = (v_mid - v) / (h / 2)
    return (x.to(torch.float32) + h * v + 0.5 * h**2 * derivative).to(v.dtype)


def solver_step(velocity, x: torch.Tensor, sigma: torch.Tensor, sigma_to: torch.Tensor, solver: str = "euler",
                reused: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of ``solver`` (:data:`FLOW_SOLVERS`) from σ to σ_to, down (sampling) or up (inversion);
    ``velocity(x, σ)`` → v. Returns x at σ_to and the velocity the next step reuses (FireFlow, Uni-Inv; else None);
    ``reused``: the previous step's (None: evaluated here).

    * euler: x + h·v(x, σ) (:func:`euler_step`);
    * rf-solver: :func:`rf_solver_step` with v_mid = v(x + (h/2)·v, σ + h/2);
    * fireflow (Deng et al. 2025, "FireFlow"; the authors' ``denoise_fireflow``): x + h·v_mid, the mid-point method
      with v(x, σ) replaced by the previous step's v_mid, so one evaluation per step;
    * uni-inv (Jiao et al. 2025, "UniEdit-Flow", Uni-Inv; the authors' ``denoise_uniinv``): x + h·v(x̂, σ_to) at
      the Euler prediction x̂ = x + h·v, v being the previous step's v(x̂, σ) — the velocity Euler sampling back
      from σ_to will take.
    """
    if solver not in FLOW_SOLVERS:
        raise ParameterError(f"solver must be one of {', '.join(FLOW_SOLVERS)}, got {solver!r}")
    if solver == "euler":
        return euler_step(velocity(x, sigma), x, sigma, sigma_to), None
    v = velocity(x, sigma) if reused is None else reused
    if solver == "uni-inv":
        v_next = velocity(euler_step(v, x, sigma, sigma_to), sigma_to)
        return euler_step(v_next, x, sigma, sigma_to), v_next
    mid = mid_sigma(sigma, sigma_to)
    v_mid = velocity(euler_step(v, x, sigma, mid), mid)
    if solver == "rf-solver":
        return rf_solver_step(v, v_mid, x, sigma, sigma_to), None
    return euler_step(v_mid, x, sigma, sigma_to), v_mid


def integrate(velocity, x: torch.Tensor, sigmas: torch.Tensor, solver: str = "euler",
              on_step=None) -> torch.Tensor:
    """x carried through the levels ``sigmas`` (S,) by ``solver`` (:func:`solver_step`), rising (inversion) or
    falling (sampling): the states (S, ...) at each level, index 0 = x; ``on_step(i)`` after each step."""
    states, reused = [x], None
    for i in range(len(sigmas) - 1):
        x, reused = solver_step(velocity, x, sigmas[i], sigmas[i + 1], solver, reused)
        states.append(x)
        if on_step is not None:
            on_step(i)
    return torch.stack(states)


class FlowMatchEulerSampler(Sampler):
    """Euler sampling of a rectified flow over a checkpoint's ``FlowMatchEulerDiscreteScheduler`` schedule.

    ``config``: that scheduler's configuration (``shift``; or ``use_dynamic_shifting`` with ``base_shift``,
    ``max_shift``, ``base_image_seq_len``, ``max_image_seq_len``, ``time_shift_type``; ``shift_terminal``);
    ``spacing``: the base sigmas of the pipeline the model comes with (:data:`SPACINGS`: "scheduler" for SD3/3.5,
    "flux" for FLUX.1). A ParameterError when the configuration gives no schedule this sampler runs.
    With dynamic shifting, :meth:`set_steps` needs ``mu`` or the image's latent token count ``image_seq_len``.
    The model's output is the velocity v = ε − x₀; timesteps are σ·num_train_timesteps.
    """

    name = "flow-match-euler"
    init_noise_sigma = 1.0
    solvers = FLOW_SOLVERS

    def __init__(self, config: dict, *, spacing: str = "scheduler", image_seq_len: int | None = None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        super().__init__()
        # the image's latent token count, for dynamic shifting when set_steps is given neither mu nor one
        self.image_seq_len = None if image_seq_len is None else check_whole("image_seq_len", image_seq_len, 1)
        if spacing not in SPACINGS:
            raise ParameterError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
        for key, what in UNSUPPORTED.items():
            if config.get(key):
                raise ParameterError(f"the flow-match Euler sampler does not run {what} ({key} is set in the "
                                     "scheduler's configuration)")
        self.config = dict(config)  # as the checkpoint has it (what diffusers' own pipelines are given)
        self.spacing = spacing
        self.num_train_timesteps = check_whole("num_train_timesteps", config.get("num_train_timesteps", 1000), 2)
        self.shift = check_real("shift", config.get("shift", 1.0), 0.0, low_open=True)
        self.dynamic = config.get("use_dynamic_shifting", False)
        if not isinstance(self.dynamic, bool):
            raise ParameterError(f"use_dynamic_shifting must be true or false, got {self.dynamic!r}")
        self.time_shift_type = config.get("time_shift_type", "exponential")
        if self.time_shift_type not in ("exponential", "linear"):
            raise ParameterError(f"time_shift_type must be exponential or linear, got {self.time_shift_type!r}")
        terminal = config.get("shift_terminal")
        self.shift_terminal = None if terminal is None else check_real("shift_terminal", terminal, 0.0, 1.0,
                                                                        high_open=True)
        self.mu_line = None  # the line μ(image_seq_len) of dynamic shifting (diffusers' defaults where not set)
        if self.dynamic:
            self.mu_line = {"base_seq_len": check_whole("base_image_seq_len", config.get("base_image_seq_len", 256), 1),
                            "max_seq_len": check_whole("max_image_seq_len", config.get("max_image_seq_len", 4096), 1),
                            "base_shift": check_real("base_shift", config.get("base_shift", 0.5)),
                            "max_shift": check_real("max_shift", config.get("max_shift", 1.15))}
            if self.mu_line["max_seq_len"] <= self.mu_line["base_seq_len"]:
                raise ParameterError(f"max_image_seq_len ({self.mu_line['max_seq_len']}) must be above "
                                     f"base_image_seq_len ({self.mu_line['base_seq_len']})")
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.config)
        self.sigmas: torch.Tensor | None = None  # (num_steps + 1,) noisiest first, the last one 0

    def set_steps(self, num_steps: int, device: torch.device | str | None = None, *, mu: float | None = None,
                  image_seq_len: int | None = None) -> torch.Tensor:
        """The schedule for ``num_steps`` steps. With dynamic shifting: shifted by ``mu``, or by μ of an image of
        ``image_seq_len`` latent tokens (:func:`image_seq_len_mu`), one of them required; without it,
        ``image_seq_len`` is not needed and ``mu`` is refused (diffusers would ignore it)."""
        num_steps = check_whole("num_inference_steps", num_steps, 1)
        if self.shift_terminal and num_steps < 2:
            raise ParameterError(f"num_inference_steps must be at least 2 on this model (its schedule is stretched "
                                 f"to end at shift_terminal {self.shift_terminal:g}), got {num_steps}")
        if mu is not None and image_seq_len is not None:
            raise ParameterError("give mu or image_seq_len, not both")
        if mu is not None and not self.dynamic:
            raise ParameterError("mu shifts a schedule with dynamic shifting; this scheduler's is fixed "
                                 f"(shift {self.shift:g})")
        if self.dynamic:
            if mu is None and image_seq_len is None:
                image_seq_len = self.image_seq_len
            if mu is None and image_seq_len is None:
                raise ParameterError("this scheduler shifts its schedule by the image's size: set_steps needs mu or "
                                     "image_seq_len")
            if mu is None:
                mu = image_seq_len_mu(check_whole("image_seq_len", image_seq_len, 1), **self.mu_line)
            mu = check_real("mu", mu, 0.0 if self.time_shift_type == "linear" else None,
                            low_open=self.time_shift_type == "linear")
        sigmas, timesteps = flow_schedule(num_steps, num_train_timesteps=self.num_train_timesteps, shift=self.shift,
                                          mu=mu if self.dynamic else None, time_shift_type=self.time_shift_type,
                                          shift_terminal=self.shift_terminal, spacing=self.spacing, device=device)
        if not bool(torch.isfinite(sigmas).all()) or not bool((sigmas[:-1] > sigmas[1:]).all()):
            raise ParameterError(f"num_inference_steps {num_steps} gives no strictly falling schedule of sigmas "
                                 "on this model (too many steps for float32)")
        self.sigmas, self.timesteps = sigmas, timesteps
        return self.timesteps

    def index(self, t) -> int:
        """The step whose timestep is ``t`` (one of :attr:`timesteps`, as the loop passes them)."""
        n = self.num_steps  # a ParameterError before set_steps
        hits = (self.timesteps == torch.as_tensor(t, device=self.timesteps.device)).nonzero()
        if len(hits) == 0:
            raise ParameterError(f"timestep {float(t):g} is not one of the sampler's {n} timesteps")
        return int(hits[0, 0])

    def sigma(self, t, *, after: bool = False) -> torch.Tensor:
        """σ at timestep ``t`` (``after``: the next step's, 0 after the last), a float32 scalar tensor."""
        return self.sigmas[self.index(t) + after]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The model's timestep at level σ, σ·num_train_timesteps (at a step's σ: that step's timestep, bit for bit)."""
        return sigma * self.num_train_timesteps

    def step(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """x_σ → x_{σ_next} (:func:`euler_step`), bit for bit diffusers' ``FlowMatchEulerDiscreteScheduler.step``."""
        i = self.index(t)
        return euler_step(model_output, x, self.sigmas[i], self.sigmas[i + 1])

    def solve_step(self, solver: str, guided, t, x: torch.Tensor, reused: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One sampling step from timestep ``t`` with ``solver`` (:func:`solver_step`); ``guided(x, t)`` → the
        guided velocity at any timestep (the mid-points' are not on the schedule)."""
        i = self.index(t)
        return solver_step(lambda x_, sigma: guided(x_, self.timestep(sigma)), x, self.sigmas[i], self.sigmas[i + 1],
                           solver, reused)

    def differentiable_output(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """The velocity itself: null-text optimises through the Euler step (ε gives no velocity at σ = 1)."""
        return model_output

    def differentiable_step(self, output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """The Euler step (:meth:`step`, differentiable) from the guided velocity."""
        return self.step(output, t, x)

    def inverse_step(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """x_{σ_next} → x_σ (:func:`euler_step` upwards), the velocity taken at x_{σ_next}: plain Euler inversion."""
        i = self.index(t)
        return euler_step(model_output, x, self.sigmas[i + 1], self.sigmas[i])

    def eps_step(self, eps: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """The Euler step from ε (:func:`velocity_from_eps`), differentiable; refused at σ = 1, where ε gives no
        velocity — null-text inversion, which steps from ε at every step, cannot start there on a flow."""
        i = self.index(t)
        if float(self.sigmas[i]) >= 1.0:
            raise ParameterError("a step from ε at σ = 1 has no meaning on a flow model (x is the noise there); "
                                 "null-text inversion steps from ε and needs a schedule below σ = 1")
        return euler_step(velocity_from_eps(eps, x, self.sigmas[i]), x, self.sigmas[i], self.sigmas[i + 1])

    def noise_to(self, x0: torch.Tensor, noise: torch.Tensor, step: int, *, after: bool = False) -> torch.Tensor:
        step = check_whole("step", step, 0, self.num_steps - 1)
        return flow_noise(x0, noise, self.sigmas[step + after])

    def to_eps(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        return eps_from_velocity(model_output, x, self.sigma(t))

    def to_x0(self, model_output: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        return x0_from_velocity(model_output, x, self.sigma(t))

    def checkpoint_scheduler(self):
        """diffusers' ``FlowMatchEulerDiscreteScheduler`` with the checkpoint's configuration as it is."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(self.config)

    def inverse_scheduler(self):
        raise ParameterError("diffusers' DiffEdit pipeline inverts with DDIM only; the flow-match-euler sampler has "
                             "no inverse scheduler")
