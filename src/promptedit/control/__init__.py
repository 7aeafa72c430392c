"""Attention control: controllers decide what happens to attention probabilities, as pure torch with no
diffusers import. A backbone's attention processors (:meth:`~promptedit.backbones.base.Backbone.attach`)
compute probabilities and hand them here with the layer's
:class:`~promptedit.backbones.base.AttentionSite`; a controller returns the tensor the processor must use.

* :mod:`~promptedit.control.base`: :class:`AttentionControl` (the identity), :class:`Compose`,
  :class:`ValueEdit`, :func:`step_window`.
* :mod:`~promptedit.control.store`: :class:`AttentionStore`.
* :mod:`~promptedit.control.edits`: Prompt-to-Prompt's edits and their schedule :func:`cross_replace_alpha`.
* :mod:`~promptedit.control.blend`: :class:`LocalBlend`, :func:`blend_latents`.
* :mod:`~promptedit.control.features`: Plug-and-Play's :class:`FeatureInjection`.
* :mod:`~promptedit.control.values`: :class:`ValueInjection` (RF-Solver-Edit, FireFlow, Stable Flow).
"""

from .base import MAP_PLACES, PLACES, AttentionControl, Compose, SourceValues, ValueEdit, step_window
from .blend import LocalBlend, blend_latents
from .edits import AttentionEdit, AttentionRefine, AttentionReplace, AttentionReweight, cross_replace_alpha
from .features import FeatureInjection
from .store import AttentionStore
from .values import VALUE_TOKENS, ValueInjection

__all__ = ["MAP_PLACES", "PLACES", "AttentionControl", "AttentionEdit", "AttentionRefine", "AttentionReplace", "AttentionReweight",
           "AttentionStore", "Compose", "FeatureInjection", "LocalBlend", "SourceValues", "VALUE_TOKENS", "ValueEdit",
           "ValueInjection", "blend_latents",
           "cross_replace_alpha", "step_window"]
