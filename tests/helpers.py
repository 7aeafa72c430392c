"""Helpers shared by the test modules (imported as ``from helpers import run``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from promptedit.cli import main


def run(capsys, *argv):
    """Run the CLI in this process with ``argv`` (each turned into a string); return ``(code, out, err)``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    """Assert that a CLI run refused bad input as the bar asks (exit code 2, exactly one ``error:`` line, no
    traceback or internal error); return that line."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


class GaussianFlowModel:
    """A flow "model" whose velocity is exact, for testing flow inversion and editing maths without a network: the
    rectified flow of data N(μ, s²) per element, μ the prompt's (its conditioning's embeddings (n, L, 1): one mean,
    or one per latent element), whose ODE
    keeps z = (x − (1 − σ)μ) / √((1 − σ)²s² + σ²) constant, so that x at σ = 1 is exactly (x₀ − μ)/s. The velocity
    is linear in x and bends with σ (s ≠ 1), so Euler errs by O(Δσ). Takes classifier-free guidance."""

    vae_scale_factor = 8
    latent_channels = 4

    def __init__(self, s: float = 0.5, config: dict | None = None):
        import contextlib

        import torch

        self.s = s
        self.config = config or {"num_train_timesteps": 1000, "shift": 3.0}
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.backbone = type("Backbone", (), {"dtype": torch.float32,  # no attention to attach to
                                              "attach": lambda self, controller: contextlib.nullcontext()})()
        self.calls = 0

    def make_sampler(self, latent_size=None):
        from promptedit.samplers import FlowMatchEulerSampler

        return FlowMatchEulerSampler(self.config)

    def make_guidance(self, scale):
        from promptedit.guidance import ClassifierFree

        return ClassifierFree(scale)

    def cond(self, *mus):
        """The conditioning of prompts whose data means are ``mus``."""
        import torch
        from promptedit.conditioning import Conditioning

        return Conditioning(torch.tensor(mus, dtype=torch.float32).view(-1, 1, 1))

    def unconditional(self, n, *, size=None):
        return self.cond(*[0.0] * n)

    def exact(self, x0, mu, sigma):
        """x at level σ on the ODE's path through x₀ (the exact solution)."""
        return (1 - sigma) * mu + ((1 - sigma) ** 2 * self.s**2 + sigma**2) ** 0.5 * (x0 - mu) / self.s

    def predict(self, x, t, cond, *, compiled=False, guidance=None):
        self.calls += 1
        sigma = t / 1000
        mu = cond.embeddings[..., 0]  # (n, L): one mean, or one per latent element (L = C·h·w)
        mu = mu.view(-1, 1, 1, 1) if mu.shape[1] == 1 else mu.view(x.shape)  # (n, 1, 1, 1) or (n, C, h, w)
        var = (1 - sigma) ** 2 * self.s**2 + sigma**2
        return (sigma - (1 - sigma) * self.s**2) * (x - (1 - sigma) * mu) / var - mu  # (n, C, h, w)
