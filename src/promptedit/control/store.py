"""Attention stores: controllers that record maps, averaged over heads and summed over steps and layers.
"""

from __future__ import annotations

from collections.abc import Iterable

from typing import TYPE_CHECKING

import torch

from ..errors import ParameterError
from .base import MAP_PLACES, PLACES, AttentionControl

if TYPE_CHECKING:
    from ..backbones.base import AttentionSite


class AttentionStore(AttentionControl):
    """Records attention maps, averaged over heads, summed over steps and the layers of a resolution.

    Args:
        cross: record cross-attention maps.
        self_attention: record self-attention maps (pixels × pixels: costly at high resolution).
        downsamples: the layer resolutions to record, as downsample factors; None records all.
        places: the UNet parts to record from.
        steps: optional (start, end) step indices to record; None records every step.
    """

    def __init__(
        self,
        *,
        cross: bool = True,
        self_attention: bool = False,
        downsamples: Iterable[int] | None = None,
        places: Iterable[str] = PLACES,
        steps: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.cross = cross
        self.self_attention = self_attention
        self.downsamples = None if downsamples is None else frozenset(int(f) for f in downsamples)
        self.places = frozenset(places)
        self.steps = steps
        self.sums: dict[tuple[bool, str, int], torch.Tensor] = {}  # (is_cross, place, f) -> (n, pixels, keys)
        self.counts: dict[tuple[bool, str, int], int] = {}

    def begin(self, **kwargs) -> None:
        super().begin(**kwargs)
        self.sums, self.counts = {}, {}

    def wants(self, site: AttentionSite) -> bool:
        if not (self.cross if site.is_cross else self.self_attention) or site.place not in self.places:
            return False
        if self.steps is not None and not (self.steps[0] <= self.cur_step < self.steps[1]):
            return False
        return self.downsamples is None or site.grid in self.downsamples

    def forward(self, attn: torch.Tensor, site: AttentionSite) -> torch.Tensor:
        key = (site.is_cross, site.place, site.grid)
        mean = attn.detach().float().mean(1)  # (n, pixels, keys)
        if key in self.sums:
            self.sums[key] += mean
            self.counts[key] += 1
        else:
            self.sums[key] = mean.clone()
            self.counts[key] = 1
        return attn

    def available(self, *, is_cross: bool = True) -> list[tuple[str, int]]:
        """The (place, downsample) pairs recorded so far."""
        return sorted((p, f) for (c, p, f) in self.sums if c == is_cross)

    def maps(
        self, *, is_cross: bool = True, downsample: int, places: Iterable[str] = MAP_PLACES
    ) -> torch.Tensor:
        """Average map over steps, layers and heads: (n_prompts, h, w, keys).

        Raises ValueError naming the recorded resolutions when none matches.
        """
        keys = [k for k in self.sums if k[0] == is_cross and k[1] in set(places) and k[2] == downsample]
        if not keys:
            have = sorted({f for (c, _, f) in self.sums if c == is_cross})
            kind = "cross" if is_cross else "self"
            raise ParameterError(
                f"no {kind}-attention maps recorded at 1/{downsample} of the latent size; recorded: "
                + (", ".join(f"1/{f}" for f in have) or "none")
            )
        total = sum(self.sums[k] for k in keys)
        count = sum(self.counts[k] for k in keys)
        avg = total / count  # (n, pixels, keys)
        h, w = self.latent_size[0] // downsample, self.latent_size[1] // downsample
        return avg.reshape(avg.shape[0], h, w, avg.shape[-1])
