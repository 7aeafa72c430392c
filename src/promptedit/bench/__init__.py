"""Benchmarks of a model against ground truth.

:mod:`promptedit.bench.world` measures generation and every Prompt-to-Prompt edit
against the shapes world's exact ground truth (``promptedit bench world``).
This package module stays light (no torch) so the CLI can list the sections.
"""

from __future__ import annotations

#: Sections of the shapes-world benchmark, in the order they run.
SECTIONS: tuple[str, ...] = (
    "generation",
    "p2p_colour_swap",
    "p2p_background_swap",
    "p2p_shape_swap",
    "p2p_add_word",
    "p2p_reweight",
    "p2p_local_blend",
    "real_images",
    "masks",
)

__all__ = ["SECTIONS"]
