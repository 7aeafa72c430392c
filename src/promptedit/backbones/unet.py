"""diffusers' ``UNet2DConditionModel`` as a :class:`~promptedit.backbones.base.Backbone` (SD 1.x / 2.x, SDXL).

Attention is changed only through diffusers' public processor API (``unet.set_attn_processor``). Every
attention layer gets a :class:`ControlledAttnProcessor` that keeps the layer's original (fast, fused SDPA)
processor and uses it whenever the controller does not want this layer at this step. When the controller's
edit of the layer is linear in the maps (word swap, refinement, re-weighting, self-attention injection) it
comes as a :class:`~promptedit.control.ValueEdit` and is applied through the values, so the fused kernel still
runs; otherwise the processor computes the probabilities explicitly with ``Attention.get_attention_scores``
(which honours ``upcast_attention`` and ``upcast_softmax``), passes them to the controller and uses the tensor
it returns. diffusers' processor keys become :class:`~promptedit.backbones.base.AttentionSite` s in one place,
:func:`unet_site`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..control import AttentionControl, FeatureInjection, ValueEdit
from ..errors import HookError, ParameterError
from .base import AttachReport, AttentionSite, Backbone, value_edited_attention

_PLACE_OF_PREFIX = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}


def unet_site(key: str, n_levels: int) -> AttentionSite:
    """The site of a diffusers UNet's attention processor ``key`` in a UNet of ``n_levels`` resolution levels:
    ``attn2`` is cross-attention, the others self-attention; every down block but the last halves the size,
    every up block but the last doubles it: ``down_blocks.i`` → grid 2^i, ``mid_block`` → 2^(n−1),
    ``up_blocks.j`` → 2^(n−1−j); elsewhere no grid (place ``other``)."""
    name = key.removesuffix(".processor")
    parts = name.split(".")
    place = _PLACE_OF_PREFIX.get(parts[0], "other")
    kind = "cross" if name.endswith("attn2") else "self"
    if place == "mid":
        return AttentionSite(name, kind, 2 ** (n_levels - 1), place, 0)
    if place in ("down", "up") and len(parts) > 1 and parts[1].isdigit():
        i = int(parts[1])
        return AttentionSite(name, kind, 2 ** i if place == "down" else 2 ** (n_levels - 1 - i), place, i)
    return AttentionSite(name, kind, None, "other", 0)


class ControlledAttnProcessor:
    """An attention processor that lets a controller see and replace attention probabilities.

    Args:
        controller: decides, per layer and step, whether to see the probabilities, and edits them.
        site: where this processor's layer sits.
        fallback: the layer's original processor, used when the controller does not want this layer.
    """

    def __init__(self, controller: AttentionControl, site: AttentionSite, fallback):
        self.controller = controller
        self.site = site
        self.fallback = fallback

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        # hidden_states: (batch, pixels, channels) or (batch, channels, h, w)
        if not self.site.on_grid or not self.controller.wants(self.site):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        edit = self.controller.value_edit(self.site) if attention_mask is None else None

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        if edit is not None:
            hidden_states = self._value_edited(attn, edit, query, key, value)  # (batch, pixels, channels)
        else:
            hidden_states = self._explicit(attn, query, key, value, attention_mask)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _explicit(self, attn, query, key, value, attention_mask) -> torch.Tensor:
        """Probabilities computed, handed to the controller, and the returned ones used."""
        batch_size = query.shape[0]
        query = attn.head_to_batch_dim(query)  # (batch * heads, pixels, head_dim)
        key = attn.head_to_batch_dim(key)  # (batch * heads, keys, head_dim)
        value = attn.head_to_batch_dim(value)

        probs = attn.get_attention_scores(query, key, attention_mask)  # (batch * heads, pixels, keys)
        probs = probs.view(batch_size, attn.heads, *probs.shape[1:])
        probs = self.controller(probs, self.site)  # the returned tensor is the one used
        probs = probs.reshape(batch_size * attn.heads, *probs.shape[2:]).to(value.dtype)

        hidden_states = torch.bmm(probs, value)
        return attn.batch_to_head_dim(hidden_states)  # (batch, pixels, channels)

    def _value_edited(self, attn, edit: ValueEdit, query, key, value) -> torch.Tensor:
        """Target k's output ``P_0 · (A_k V_k) + P_k · (b_k ⊙ V_k)`` with the fused kernel (see ValueEdit)."""
        batch, heads = query.shape[0], attn.heads
        # (batch, tokens, channels) -> (batch, heads, tokens, head_dim)
        q, k, v = (x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2) for x in (query, key, value))
        out = value_edited_attention(q, k, v, edit, self.controller.n_prompts, attn.scale)
        return out.transpose(1, 2).reshape(batch, -1, heads * out.shape[-1]).to(query.dtype)


class UNetBackbone(Backbone):
    """A diffusers ``UNet2DConditionModel``: latents taken as they are, attention through processors.

    Args:
        unet: the UNet (in eval mode for inference).
    """

    def __init__(self, unet: torch.nn.Module):
        self.module = unet
        self.compiled: torch.nn.Module | None = None  # see compile()

    @property
    def config(self):
        return self.module.config

    def predict(self, x: torch.Tensor, t, conditioning, *, compiled: bool = False,
                guidance: float | None = None) -> torch.Tensor:
        """The UNet's output for x (n, C, h, w) at timestep t under ``conditioning`` (n rows); ``compiled`` uses
        the compiled UNet when :meth:`compile` made one (only for runs without attention control: a
        controller's per-layer, per-step decisions would break or re-trace the graph). A UNet takes no guidance
        input (SD and SDXL are guided classifier-free)."""
        if guidance is not None:
            raise ParameterError("this model's UNet takes no guidance scale as an input (it is not guidance-"
                                 "distilled): its family's guidance must be classifier-free or none")
        unet = self.compiled if compiled and self.compiled is not None else self.module
        return unet(x, t, **conditioning.unet_kwargs()).sample

    def compile(self, **options) -> None:
        self.compiled = torch.compile(self.module, **options)

    def sites(self) -> list[AttentionSite]:
        n_levels = len(self.config.block_out_channels)
        return [unet_site(key, n_levels) for key in self.module.attn_processors]

    @contextmanager
    def attach(self, controller: AttentionControl) -> Iterator[AttachReport]:
        """Install ``controller`` on every attention layer; restore the original processors on exit.

        Raises :class:`HookError` when the UNet has no cross-attention layer (nothing would be controlled).
        """
        original = dict(self.module.attn_processors)
        n_levels = len(self.config.block_out_channels)
        sites = {key: unet_site(key, n_levels) for key in original}
        n_cross = sum(1 for s in sites.values() if s.kind == "cross" and s.on_grid)
        n_self = sum(1 for s in sites.values() if s.kind == "self" and s.on_grid)
        if n_cross == 0:
            raise HookError(
                f"no cross-attention layer found among the UNet's {len(original)} attention processors; "
                "this model cannot be edited with attention control"
            )
        self.module.set_attn_processor(
            {key: ControlledAttnProcessor(controller, sites[key], proc) for key, proc in original.items()}
        )
        try:
            yield AttachReport(cross_layers=n_cross, self_layers=n_self)
        finally:
            self.module.set_attn_processor(original)

    def default_feature_layers(self) -> list[str]:
        """Plug-and-Play's injection point: the decoder's ``up_blocks[1].resnets[1]`` where it exists,
        else the last residual block of the first decoder block."""
        ups = self.module.up_blocks
        block = 1 if len(ups) > 1 else 0
        resnet = 1 if len(ups[block].resnets) > 1 else 0
        return [f"up_blocks.{block}.resnets.{resnet}"]

    @contextmanager
    def inject_features(self, injector: FeatureInjection) -> Iterator[list[str]]:
        """Register ``injector`` as a forward hook on its residual blocks (module paths of ``ResnetBlock2D`` s,
        :meth:`default_feature_layers` when it names none); remove it on exit."""
        names = injector.layers or self.default_feature_layers()
        modules = dict(self.module.named_modules())
        handles = []
        try:
            for name in names:
                if name not in modules:
                    raise ParameterError(f"no module {name!r} in the UNet for feature injection")
                handles.append(modules[name].register_forward_hook(injector, prepend=True))  # observers see injected features
            yield names
        finally:
            for h in handles:
                h.remove()

    @property
    def size_factor(self) -> int:
        """Every level but the last halves the latent."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def estimate_memory(self, height: int, width: int, batch: int) -> int:
        """16 live tensors of pixels × channels per resolution level for ``batch`` branches with classifier-free
        guidance (measured on the embedded model: 14–15 at 1024 px, more at small sizes where fixed costs
        dominate), on latents of ``height`` × ``width``. Attention maps are not counted: the fused kernels
        never hold them, and controlled layers hold small ones."""
        bytes_per = torch.finfo(self.dtype).bits // 8
        return 16 * 2 * batch * sum((height >> level) * (width >> level) * int(c)
                                    for level, c in enumerate(self.config.block_out_channels)) * bytes_per
