"""Plug-and-Play feature injection (Tumanyan et al., CVPR 2023): the targets take the source's features."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import step_window


class FeatureInjection:
    """Plug-and-Play feature injection (Tumanyan et al., CVPR 2023, Sec. 4):
    the targets' decoder residual-block features are replaced by the source's during a step window.

    Args:
        window: steps of injection, a fraction f (first f of the steps) or a (start, end) pair.
        layers: the backbone's module paths of the blocks whose outputs are injected (None: the backbone's
            default, see :meth:`~promptedit.backbones.base.Backbone.inject_features`).
    """

    def __init__(self, window: float | tuple[float, float], layers: Sequence[str] | None = None):
        step_window(window, 1)  # validates
        self.window = window
        self.layers = list(layers) if layers is not None else None
        self.steps = (0, 0)
        self.cur_step = 0
        self.n_prompts = 0

    def begin(self, *, num_steps: int, n_prompts: int) -> None:
        self.steps = step_window(self.window, num_steps)
        self.n_prompts = int(n_prompts)

    def begin_step(self, step: int) -> None:
        self.cur_step = int(step)

    def active(self) -> bool:
        return self.steps[0] <= self.cur_step < self.steps[1]

    def __call__(self, module, inputs, output: torch.Tensor) -> torch.Tensor:
        # output: (batch, C, H, W), batch = n_prompts or 2·n_prompts (unconditional first)
        if not self.active():
            return output
        n = self.n_prompts
        groups = output.split(n) if output.shape[0] == 2 * n else (output,)
        return torch.cat([g[:1].expand_as(g) for g in groups])
