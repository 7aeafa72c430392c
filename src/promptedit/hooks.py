"""Hooks into the UNet: attention processors that hand probabilities to a controller,
and forward hooks for Plug-and-Play feature injection.

Attention is changed only through diffusers' public processor API
(``unet.set_attn_processor``). Every attention layer gets a
:class:`ControlledAttnProcessor` that keeps the layer's original (fast, fused
SDPA) processor and uses it whenever the controller does not want this layer
at this step. When the controller's edit of the layer is linear in the maps
(word swap, refinement, re-weighting, self-attention injection) it comes as a
:class:`~promptedit.control.ValueEdit` and is applied through the values, so
the fused kernel still runs; otherwise the processor computes the probabilities
explicitly with ``Attention.get_attention_scores`` (which honours
``upcast_attention`` and ``upcast_softmax``), passes them to the controller and
uses the tensor it returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .control import AttentionControl, AttentionLayer, ValueEdit, step_window
from .errors import HookError, ParameterError

_PLACE_OF_PREFIX = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}


def layer_from_processor_key(key: str) -> AttentionLayer:
    """``down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor`` → AttentionLayer(down, cross)."""
    name = key.removesuffix(".processor")
    place = _PLACE_OF_PREFIX.get(name.split(".", 1)[0], "other")
    return AttentionLayer(name=name, place=place, is_cross=name.endswith("attn2"))


def layer_downsample(layer: AttentionLayer, n_levels: int) -> int | None:
    """How many times smaller than the latent a layer's maps are, from its place in a diffusers UNet of
    ``n_levels`` resolution levels (every down block but the last halves the size, every up block but the last
    doubles it): ``down_blocks.i`` → 2^i, ``mid_block`` → 2^(n−1), ``up_blocks.j`` → 2^(n−1−j); None elsewhere."""
    parts = layer.name.split(".")
    if layer.place == "mid":
        return 2 ** (n_levels - 1)
    if layer.place in ("down", "up") and len(parts) > 1 and parts[1].isdigit():
        i = int(parts[1])
        return 2 ** i if layer.place == "down" else 2 ** (n_levels - 1 - i)
    return None


def attention_downsamples(unet, *, is_cross: bool = True, places=("down", "up")) -> list[int]:
    """The resolutions (downsample factors relative to the latent) at which ``unet`` has attention layers of
    the kind asked for in ``places``, ascending."""
    n_levels = len(unet.config.block_out_channels)
    found = set()
    for key in unet.attn_processors:
        layer = layer_from_processor_key(key)
        if layer.is_cross == is_cross and layer.place in places:
            f = layer_downsample(layer, n_levels)
            if f is not None:
                found.add(f)
    return sorted(found)


def nearest_downsample(available: Sequence[int], wanted: int) -> int:
    """The factor among ``available`` closest to ``wanted`` on a log scale (ties: the larger maps)."""
    import math

    return min(available, key=lambda f: (abs(math.log2(f) - math.log2(wanted)), f))


class ControlledAttnProcessor:
    """An attention processor that lets a controller see and replace attention probabilities.

    Args:
        controller: decides, per layer and step, whether to see the probabilities, and edits them.
        layer: where this processor's layer sits.
        fallback: the layer's original processor, used when the controller does not want this layer.
    """

    def __init__(self, controller: AttentionControl, layer: AttentionLayer, fallback):
        self.controller = controller
        self.layer = layer
        self.fallback = fallback

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        # hidden_states: (batch, pixels, channels) or (batch, channels, h, w)
        pixels = hidden_states.shape[1] if hidden_states.ndim == 3 else hidden_states.shape[2] * hidden_states.shape[3]
        if self.layer.place == "other" or not self.controller.wants(self.layer, pixels):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        edit = self.controller.value_edit(self.layer, pixels) if attention_mask is None else None

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
            hidden_states = self._explicit(attn, query, key, value, attention_mask, pixels)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _explicit(self, attn, query, key, value, attention_mask, pixels: int) -> torch.Tensor:
        """Probabilities computed, handed to the controller, and the returned ones used."""
        batch_size = query.shape[0]
        query = attn.head_to_batch_dim(query)  # (batch * heads, pixels, head_dim)
        key = attn.head_to_batch_dim(key)  # (batch * heads, keys, head_dim)
        value = attn.head_to_batch_dim(value)

        probs = attn.get_attention_scores(query, key, attention_mask)  # (batch * heads, pixels, keys)
        probs = probs.view(batch_size, attn.heads, *probs.shape[1:])
        probs = self.controller(probs, self.layer, pixels)  # the returned tensor is the one used
        probs = probs.reshape(batch_size * attn.heads, *probs.shape[2:]).to(value.dtype)

        hidden_states = torch.bmm(probs, value)
        return attn.batch_to_head_dim(hidden_states)  # (batch, pixels, channels)

    def _value_edited(self, attn, edit: ValueEdit, query, key, value) -> torch.Tensor:
        """Target k's output ``P_0 · (A_k V_k) + P_k · (b_k ⊙ V_k)`` with the fused kernel (see ValueEdit)."""
        batch, heads = query.shape[0], attn.heads
        # (batch, tokens, channels) -> (batch, heads, tokens, head_dim)
        q, k, v = (x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2) for x in (query, key, value))
        n = self.controller.n_prompts
        if batch not in (n, 2 * n):
            raise RuntimeError(f"attention batch {batch} does not match {n} prompts")
        src = batch - n  # the source's row in the conditional half; the targets follow it
        edit = edit.to(v.device, v.dtype)  # a no-op when the controller built it for this device
        v_t = v[src + 1:]  # (n_t, heads, keys, head_dim)
        v_mixed = v_t if edit.mix is None else torch.einsum("tij,thjd->thid", edit.mix, v_t)

        def with_source_rows(x):  # the targets read the source's queries and keys: P_0 in every target row
            return torch.cat([x[: src + 1], x[src: src + 1].expand(n - 1, *x.shape[1:])])

        out = F.scaled_dot_product_attention(with_source_rows(q), with_source_rows(k),
                                             torch.cat([v[: src + 1], v_mixed]), scale=attn.scale)
        if edit.keep is not None:  # the targets' own maps, weighted per key
            own = F.scaled_dot_product_attention(q[src + 1:], k[src + 1:], edit.keep[:, None, :, None] * v_t,
                                                 scale=attn.scale)
            out = torch.cat([out[: src + 1], out[src + 1:] + own])
        return out.transpose(1, 2).reshape(batch, -1, heads * out.shape[-1]).to(query.dtype)


@dataclass(frozen=True)
class HookReport:
    """What :func:`attention_control` installed: layer counts by kind."""

    cross_layers: int
    self_layers: int


@contextmanager
def attention_control(unet, controller: AttentionControl) -> Iterator[HookReport]:
    """Install ``controller`` on every attention layer of ``unet``; restore the original processors on exit.

    Raises :class:`HookError` when the UNet has no cross-attention layer (nothing would be controlled).
    """
    original = dict(unet.attn_processors)
    layers = {key: layer_from_processor_key(key) for key in original}
    n_cross = sum(1 for l in layers.values() if l.is_cross and l.place != "other")
    n_self = sum(1 for l in layers.values() if not l.is_cross and l.place != "other")
    if n_cross == 0:
        raise HookError(
            f"no cross-attention layer found among the UNet's {len(original)} attention processors; "
            "this model cannot be edited with attention control"
        )
    unet.set_attn_processor(
        {key: ControlledAttnProcessor(controller, layers[key], proc) for key, proc in original.items()}
    )
    try:
        yield HookReport(cross_layers=n_cross, self_layers=n_self)
    finally:
        unet.set_attn_processor(original)


# ----------------------------------------------------------------------------- feature injection


def default_feature_layers(unet) -> list[str]:
    """Plug-and-Play's injection point: the decoder's ``up_blocks[1].resnets[1]`` where it exists,
    else the last residual block of the first decoder block."""
    ups = unet.up_blocks
    block = 1 if len(ups) > 1 else 0
    resnet = 1 if len(ups[block].resnets) > 1 else 0
    return [f"up_blocks.{block}.resnets.{resnet}"]


class FeatureInjection:
    """Plug-and-Play feature injection (Tumanyan et al., CVPR 2023, Sec. 4):
    the targets' decoder residual-block features are replaced by the source's during a step window.

    Args:
        window: steps of injection, a fraction f (first f of the steps) or a (start, end) pair.
        layers: module paths of ``ResnetBlock2D`` modules in the UNet (see :func:`default_feature_layers`).
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


@contextmanager
def feature_injection(unet, injector: FeatureInjection) -> Iterator[list[str]]:
    """Register ``injector`` as a forward hook on its residual blocks; remove it on exit."""
    names = injector.layers or default_feature_layers(unet)
    modules = dict(unet.named_modules())
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
