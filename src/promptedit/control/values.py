"""Value injection in chosen transformer blocks: the targets take the source's values (and keys) there.

* RF-Solver-Edit (Wang et al. 2024, Sec. 4.2) and FireFlow (Deng et al. 2025, the same editing scheme): in FLUX.1's
  single-stream blocks, during the first steps of the edit, the self-attention's V is the source's (their code
  stores V during the inversion and swaps the whole V of the block's sequence, text and image tokens).
* Stable Flow (Avrahami et al. 2025): the source's image keys and values in a few "vital" blocks.

Blocks are chosen by depth (:attr:`~promptedit.backbones.base.AttentionSite.index` of the ``"blocks"`` place:
FLUX.1's double-stream blocks 0 … D−1, then its single-stream blocks D …; SD3's joint blocks 0 …), steps by a
window; the MM-DiT processors apply it (:meth:`AttentionControl.source_values`).
"""

from __future__ import annotations

from collections.abc import Iterable

from typing import TYPE_CHECKING

from ..errors import ParameterError
from .base import AttentionControl, SourceValues, step_window

if TYPE_CHECKING:
    from ..backbones.base import AttentionSite

#: which tokens' values are injected: every token of the joint sequence (RF-Solver-Edit's and FireFlow's code) or
#: the image tokens only (Stable Flow's)
VALUE_TOKENS = ("all", "image")


class ValueInjection(AttentionControl):
    """The targets take the source's values (``keys``: and keys) at the transformer blocks of depth in ``blocks``
    during the step ``window`` (a fraction f: the first f of the steps; or a (start, end) pair), of every token
    (``tokens="all"``) or of the image tokens (``"image"``). Reads no maps: it never wants a layer's probabilities.
    """

    def __init__(self, window, blocks: Iterable[int], *, keys: bool = False, tokens: str = "all"):
        super().__init__()
        step_window(window, 1)  # validates
        if tokens not in VALUE_TOKENS:
            raise ParameterError(f"value tokens must be one of {', '.join(VALUE_TOKENS)}, got {tokens!r}")
        self.window = window
        self.blocks = frozenset(int(b) for b in blocks)
        self.inject = SourceValues(keys=bool(keys), text=tokens == "all")
        self.steps = (0, 0)

    def begin(self, **kwargs) -> None:
        super().begin(**kwargs)
        self.steps = step_window(self.window, self.num_steps)

    def source_values(self, site: AttentionSite) -> SourceValues | None:
        on = (site.place == "blocks" and site.on_grid and site.index in self.blocks
              and self.steps[0] <= self.cur_step < self.steps[1] and self.n_prompts > 1)
        return self.inject if on else None
