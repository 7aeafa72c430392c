"""MM-DiT transformers as :class:`~promptedit.backbones.base.Backbone` s: FLUX.1 (``FluxTransformer2DModel``; text
then image tokens) and Stable Diffusion 3 / 3.5 (``SD3Transformer2DModel``; image then text tokens, and SD3.5's
second, image-only attention in its dual blocks, a ``"self"`` site as a UNet's self-attention).

In an MM-DiT block text and image tokens attend jointly: one softmax over the keys of both. The image queries'
text columns are what a UNet's cross-attention was and their image columns what its self-attention was
(Prompt-to-Prompt's two kinds of maps), so each joint layer is shown to a controller as two views of one
:class:`~promptedit.backbones.base.AttentionSite`: a ``"cross"`` view (image queries × text keys, (batch, heads, N_image, L_text)) and a ``"self"`` view (image queries × image
keys, which a controller can only inject from the source (:meth:`~promptedit.control.AttentionControl.
injects_source`), never read: the full N_image² matrix is never built).

:func:`joint_attention` computes one layer's output with the controller's edit:

* text columns only, with the joint normaliser: one fused SDPA call over all keys with the text values zeroed and
  one extra value channel that is 1 on text keys gives both the image columns' share of the output and the text
  mass m = Σ_text P of every query row, so that P_text = m · softmax(q·K_textᵀ / √d) exactly (the
  log-sum-exp of the joint softmax, without its N_image × N_image logits); controllers see softmax(q·K_textᵀ / √d),
  each image query's distribution over the words, as they see a UNet's cross-attention;
* a linear edit (word swap, refinement, re-weighting; :class:`~promptedit.control.ValueEdit`) and source
  injection of the image block go through the values, as on the UNet: fused kernels only, no maps.

KV-Edit runs through the same seam: :class:`KVCache` and :class:`FluxKVProcessor` record the background image
tokens' keys and values while every token runs, then run the text and foreground tokens alone (their own RoPE ids;
:meth:`FluxBackbone.predict_tokens`) against them.

Attention is changed only through diffusers' processor API (``set_attn_processor``); the original processors
run wherever the controller wants nothing, so a controller that wants nothing is bit-identical to them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..control import AttentionControl
from ..errors import HookError, ParameterError
from .base import AttachReport, AttentionSite, Backbone, value_edited_attention


def joint_views(site: AttentionSite) -> tuple[AttentionSite, AttentionSite]:
    """The ``"cross"`` (image → text) and ``"self"`` (image → image) views of a joint site, as controllers see them."""
    return dataclasses.replace(site, kind="cross"), dataclasses.replace(site, kind="self")


def text_column_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text: slice,
                          scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Joint attention split by key kind, without the full matrix. For queries q (B, H, N, d) over joint keys and
    values k, v (B, H, S, d) whose ``text`` slice are the text tokens, returns the image keys' share of the output
    Σ_image P·V (B, H, N, d), the text mass m = Σ_text P (B, H, N, 1) (both from one fused call whose values have
    the text rows zeroed and one more channel that is 1 on text keys) and the text columns renormalised,
    P_text / m = softmax(q·K_textᵀ·scale) (B, H, N, L): the output is Σ_image P·V + m · (P_text / m)·V_text."""
    ones = torch.zeros(*v.shape[:-1], 1, dtype=v.dtype, device=v.device)  # (B, H, S, 1): 1 on the text keys
    ones[:, :, text] = 1
    v_image = v.clone()
    v_image[:, :, text] = 0
    out = F.scaled_dot_product_attention(q, k, torch.cat([v_image, ones], dim=-1), scale=scale)  # (B, H, N, d + 1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q @ k[:, :, text].transpose(-1, -2)).float() * scale  # (B, H, N, L)
    return out[..., :-1], out[..., -1:], logits.softmax(-1).to(q.dtype)


def _routed(v: torch.Tensor, text: slice, text_values: torch.Tensor | None, image: bool) -> torch.Tensor:
    """Values (B, H, S, 2d + 1) routing each key kind to its own channels: [text values (``text_values`` on the text
    rows, zeros when None) | 1 on the text rows | the image rows' values when ``image``], so one fused call gives
    the text share, the text mass and the image share apart."""
    d = v.shape[-1]
    out = torch.zeros(*v.shape[:-1], 2 * d + 1, dtype=v.dtype, device=v.device)
    if text_values is not None:
        out[:, :, text, :d] = text_values
    out[:, :, text, d] = 1
    if image:
        out[..., d + 1:] = v
        out[:, :, text, d + 1:] = 0
    return out


def _with_source_rows(x: torch.Tensor, src: int, n_targets: int) -> torch.Tensor:
    """Rows [0, src] of x, then the source's row ``src`` once per target (the targets read the source's maps)."""
    return torch.cat([x[: src + 1], x[src: src + 1].expand(n_targets, *x.shape[1:])])


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, text: slice, image: slice,
                    controller: AttentionControl, site: AttentionSite, scale: float | None = None) -> torch.Tensor:
    """A joint layer's attention output (B, H, S, d) from q, k, v (B, H, S, d) (after norms and RoPE), the text
    tokens at ``text`` and the image tokens at ``image`` of the sequence, under ``controller`` (B is n or 2·n
    prompts, the unconditional rows first; only the conditional rows' image queries are controlled).

    The controller's cross view is each image query's distribution over the text keys (rows sum to 1, as a
    UNet's cross-attention); its edit is applied at the row's text mass m, the target's own, or the source's
    where the image block is injected from the source (rows of the joint probabilities then still sum to 1)."""
    cross, self_ = joint_views(site)
    wants_cross, wants_self = controller.wants(cross), controller.wants(self_)
    if not (wants_cross or wants_self):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    n, batch = controller.n_prompts, q.shape[0]
    if batch not in (n, 2 * n):
        raise RuntimeError(f"attention batch {batch} does not match {n} prompts")
    src, n_t = batch - n, n - 1  # the source's row in the conditional half; the targets follow it
    q_img = q[:, :, image]  # (B, H, N, d)
    inject = wants_self and n_t > 0 and controller.injects_source(self_)  # targets take the source's image block
    edit = controller.value_edit(cross) if wants_cross else None
    if not (wants_cross and edit is None) and (n_t == 0 or not (edit is not None or inject)):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)  # nothing to edit here
    # each output row computed once: the fused call only for the rows the edit leaves as they are (a new tensor
    # written by rows, so training through the views reads no tensor that was changed in place)
    out = torch.empty_like(q)
    if wants_cross and edit is None:  # explicit: the controller reads (and may replace) the text distribution
        out[:, :, text] = F.scaled_dot_product_attention(q[:, :, text], k, v, scale=scale)
        image_part, mass, probs = text_column_attention(q_img, k, v, text, scale)
        if inject:
            s_part, s_mass, _ = text_column_attention(q_img[src: src + 1].expand(n_t, -1, -1, -1),
                                                      k[src: src + 1].expand(n_t, -1, -1, -1), v[src + 1:], text, scale)
            image_part = torch.cat([image_part[: src + 1], s_part])
            mass = torch.cat([mass[: src + 1], s_mass])
        probs = controller(probs, cross)  # (B, H, N, L): the returned tensor is the one used
        out[:, :, image] = image_part + mass * (probs.to(v.dtype) @ v[:, :, text])
        return out
    out[: src + 1] = F.scaled_dot_product_attention(q[: src + 1], k[: src + 1], v[: src + 1], scale=scale)
    out[src + 1:, :, text] = F.scaled_dot_product_attention(q[src + 1:, :, text], k[src + 1:], v[src + 1:],
                                                            scale=scale)
    # through the values (fused kernels only): target k's image rows are
    #   M · (P_0/m_0 · A V_k,text + P_k/m_k · b ⊙ V_k,text) + (P_0 or P_k) · V_k,image,
    # M = m_0 where the image block is injected from the source, else m_k
    d = v.shape[-1]
    edit = None if edit is None else edit.to(v.device, v.dtype)
    v_t = v[src + 1:]  # (n_t, H, S, d)
    t_vals = v_t[:, :, text]  # (n_t, H, L, d)
    mixed = own_text = None
    if edit is None:
        own_text = t_vals
    else:
        mixed = t_vals if edit.mix is None else torch.einsum("tij,thjd->thid", edit.mix, t_vals)
        own_text = None if edit.keep is None else edit.keep[:, None, :, None] * t_vals
    tiny = torch.finfo(v.dtype).tiny
    text_norm = image_out = 0
    mass = None
    if mixed is not None or inject:
        q_s, k_s = q[src: src + 1, :, image].expand(n_t, -1, -1, -1), k[src: src + 1].expand(n_t, -1, -1, -1)
        o = F.scaled_dot_product_attention(q_s, k_s, _routed(v_t, text, mixed, inject), scale=scale)
        if mixed is not None:
            text_norm = o[..., :d] / o[..., d: d + 1].clamp_min(tiny)
        image_out = o[..., d + 1:]
        mass = o[..., d: d + 1] if inject else None
    if own_text is not None or not inject:
        o = F.scaled_dot_product_attention(q[src + 1:, :, image], k[src + 1:],
                                           _routed(v_t, text, own_text, not inject), scale=scale)
        if own_text is not None:
            text_norm = text_norm + o[..., :d] / o[..., d: d + 1].clamp_min(tiny)
        image_out = image_out + o[..., d + 1:]
        mass = o[..., d: d + 1] if mass is None else mass
    out[src + 1:, :, image] = mass * text_norm + image_out
    return out


def with_source_values(k: torch.Tensor, v: torch.Tensor, inject, n_prompts: int, image: slice
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """k, v (B, H, S, d) (after norms and RoPE) with each target row's values, and keys where ``inject.keys``
    (:class:`~promptedit.control.SourceValues`), replaced by its source's: of the image tokens at ``image``, or
    of every token where ``inject.text``. B is n or 2·n prompts (the unconditional rows first); each half's first
    row is its source, so both branches of classifier-free guidance take their own source's (as Plug-and-Play's
    feature injection does)."""
    batch = v.shape[0]
    if batch not in (n_prompts, 2 * n_prompts):
        raise RuntimeError(f"attention batch {batch} does not match {n_prompts} prompts")
    tokens = slice(None) if inject.text else image

    def swap(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        for src in range(0, batch, n_prompts):
            x[src + 1: src + n_prompts, :, tokens] = x[src: src + 1, :, tokens]
        return x

    return (swap(k) if inject.keys else k), swap(v)


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, S, H·d) → (B, S, H, d)."""
    return x.unflatten(-1, (-1, head_dim))


def joint_qkv(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None,
              image_rotary_emb, text_length: int | None, name: str) -> tuple[torch.Tensor, ...]:
    """One FLUX.1 attention layer's queries, keys and values as diffusers' ``FluxAttnProcessor`` computes them: q,
    k, v (B, S, H, d) after the q/k norms and RoPE, text first (a double-stream block's text stream projected by
    its own weights and joined before the image tokens; a single-stream block's sequence as it comes, its text
    length given), and the text length L."""
    from diffusers.models.embeddings import apply_rotary_emb

    d = attn.head_dim
    if attn.fused_projections:
        q, k, v = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    q, k, v = _heads(q, d), _heads(k, d), _heads(v, d)  # (B, S_image or S, H, d)
    q, k = attn.norm_q(q), attn.norm_k(k)
    if encoder_hidden_states is not None:  # double-stream: the text stream's own projections, joined first
        if attn.fused_projections:
            eq, ek, ev = attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)
        else:
            eq, ek, ev = (attn.add_q_proj(encoder_hidden_states), attn.add_k_proj(encoder_hidden_states),
                          attn.add_v_proj(encoder_hidden_states))
        eq, ek, ev = _heads(eq, d), _heads(ek, d), _heads(ev, d)
        eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
        text_length = encoder_hidden_states.shape[1]
        q, k, v = torch.cat([eq, q], dim=1), torch.cat([ek, k], dim=1), torch.cat([ev, v], dim=1)
    if text_length is None:
        raise HookError(f"{name}: a single-stream block's processor needs the text length")
    if image_rotary_emb is not None:
        q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
        k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
    return q, k, v, text_length


def joint_output(attn, out: torch.Tensor, encoder_hidden_states: torch.Tensor | None, text_length: int):
    """A layer's return from its attention output ``out`` (B, S, H·d), text first: a double-stream block's
    (image, text) tokens through their output projections, a single-stream block's whole sequence as it is."""
    if encoder_hidden_states is None:
        return out
    text_out, image_out = out[:, :text_length], out[:, text_length:]
    image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
    return image_out, attn.to_add_out(text_out.contiguous())


class FluxControlledProcessor:
    """FLUX.1's attention processor (diffusers' ``FluxAttnProcessor``: double-stream blocks take the image tokens
    and ``encoder_hidden_states`` separately and join them text first; single-stream blocks take one sequence,
    text first, whose text length comes as ``text_length`` through ``joint_attention_kwargs``), with the
    controller's edit (:func:`joint_attention`) where it wants this layer, the original processor elsewhere."""

    def __init__(self, controller: AttentionControl, site: AttentionSite, fallback):
        self.controller = controller
        self.site = site
        self.fallback = fallback

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None,
                 text_length: int | None = None):
        cross, self_ = joint_views(self.site)
        values = self.controller.source_values(self.site) if self.site.on_grid else None
        if (attention_mask is not None or not self.site.on_grid
                or not (self.controller.wants(cross) or self.controller.wants(self_) or values)):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        q, k, v, text_length = joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb, text_length,
                                         self.site.name)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, S, d), text first
        text, image = slice(0, text_length), slice(text_length, q.shape[2])
        if values:
            k, v = with_source_values(k, v, values, self.controller.n_prompts, image)
        out = joint_attention(q, k, v, text=text, image=image, controller=self.controller,
                              site=self.site)  # (B, H, S, d)
        out = out.transpose(1, 2)  # (B, S, H, d)
        out = out.flatten(2, 3).to(q.dtype)  # (B, S, H·d)
        return joint_output(attn, out, encoder_hidden_states, text_length)


#: what a :class:`KVCache` does while the model runs: record the background's keys and values (the full token set
#: runs), or replay them (only the text and foreground tokens run)
KV_MODES = ("record", "replay")


@dataclass
class KVCache:
    """KV-Edit's cache (Zhu et al. 2025, Sec. 3.2): per step and joint layer, the background image tokens' keys
    and values (after the q/k norms and RoPE, so that the positions they were computed at go with them).

    ``background`` and ``foreground``: indices (long) into the image token sequence. In ``record`` mode the
    model runs on every image token and each joint layer stores its background rows at ``(step, layer)``; with
    ``mask_foreground`` (the paper's attention-mask variant of the inversion) the foreground queries attend to
    the text and the foreground only there. In ``replay`` mode the model runs on the text and the foreground
    tokens only (their own position ids), and each joint layer's queries attend to their own keys and values
    plus the stored background ones. ``device``: where entries are stored (None: where they are computed; the
    authors keep them on the CPU). Set ``step`` before each model call.
    """

    background: torch.Tensor
    foreground: torch.Tensor
    mode: str = "record"
    mask_foreground: bool = False
    device: torch.device | str | None = None
    step: int = 0
    entries: dict = dataclasses.field(default_factory=dict)  # (step, layer) -> (k, v), each (rows, N_bg, H, d)

    def __post_init__(self):
        if self.mode not in KV_MODES:
            raise ParameterError(f"KV cache mode must be one of {', '.join(KV_MODES)}, got {self.mode!r}")

    def record_mask(self, text_length: int, n_image: int, device) -> torch.Tensor | None:
        """The boolean attention mask (S, S) of ``mask_foreground`` (True: attend): the foreground image queries do
        not see the background image keys; every other pair attends. None without ``mask_foreground``."""
        if not self.mask_foreground or len(self.background) == 0 or len(self.foreground) == 0:
            return None
        s = text_length + n_image
        mask = torch.ones(s, s, dtype=torch.bool, device=device)
        fg, bg = text_length + self.foreground.to(device), text_length + self.background.to(device)
        mask[fg[:, None], bg[None, :]] = False
        return mask

    def rows(self, x: torch.Tensor, batch: int, name: str) -> torch.Tensor:
        """A stored (rows, N_bg, H, d) entry for a call of ``batch`` rows: as it is when the rows agree, its one row
        broadcast, or its last (the conditional) row for a call of one row (a guided inversion replayed unguided)."""
        if x.shape[0] == batch:
            return x
        if x.shape[0] == 1:
            return x.expand(batch, *x.shape[1:])
        if batch == 1:
            return x[-1:]
        raise HookError(f"{name}: the KV cache holds {x.shape[0]} rows, the call has {batch}")


class FluxKVProcessor:
    """The processor of a joint layer under a :class:`KVCache`: records the background's keys and values while
    every image token runs, or runs the text and foreground tokens against their own keys and values plus the
    recorded background's (:attr:`KVCache.mode`). Attention as diffusers' ``FluxAttnProcessor`` (one fused call),
    so that replaying an empty background is the stock layer."""

    def __init__(self, cache: KVCache, name: str):
        self.cache = cache
        self.name = name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None,
                 text_length: int | None = None):
        if attention_mask is not None:
            raise HookError(f"{self.name}: KV-Edit's processor takes no attention mask from the model")
        q, k, v, text_length = joint_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb, text_length,
                                         self.name)  # (B, S, H, d): text, then image tokens
        cache, key = self.cache, (self.cache.step, self.name)
        mask = None
        if cache.mode == "record":
            bg = text_length + cache.background.to(k.device)
            cache.entries[key] = (k[:, bg].to(cache.device or k.device), v[:, bg].to(cache.device or v.device))
            mask = cache.record_mask(text_length, q.shape[1] - text_length, q.device)
        else:
            if key not in cache.entries:
                raise HookError(f"{self.name}: the KV cache has no keys and values of step {cache.step}")
            k_bg, v_bg = (cache.rows(x, q.shape[0], self.name).to(k.device, k.dtype) for x in cache.entries[key])
            k, v = torch.cat([k, k_bg], dim=1), torch.cat([v, v_bg], dim=1)  # (B, S + N_bg, H, d)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask)  # (B, H, S, d)
        out = out.transpose(1, 2).flatten(2, 3).to(q.dtype)  # (B, S, H·d)
        return joint_output(attn, out, encoder_hidden_states, text_length)


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """FLUX.1's tokens: latents (n, C, h, w) → (n, h/2 · w/2, 4C), 2 × 2 patches row-major (``FluxPipeline._pack_latents``)."""
    n, c, h, w = latents.shape
    x = latents.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`pack_latents`: (n, h/2 · w/2, 4C) → (n, C, h, w) for latents of ``size`` (h, w)."""
    n, _, c4 = tokens.shape
    h, w = size
    x = tokens.view(n, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c4 // 4, h, w)


def latent_image_ids(h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """FLUX.1's image position ids (h/2 · w/2, 3): (0, row, column) of each packed token, RoPE's axes."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def flux_site(key: str, n_double: int) -> AttentionSite:
    """The site of a ``FluxTransformer2DModel`` processor key: ``transformer_blocks.i`` (double-stream) is joint
    at depth i, ``single_transformer_blocks.j`` joint at depth n_double + j; the image tokens are 2 × 2 packed
    latent patches (grid 2)."""
    name = key.removesuffix(".processor")
    parts = name.split(".")
    if len(parts) > 1 and parts[1].isdigit() and parts[0] in ("transformer_blocks", "single_transformer_blocks"):
        depth = int(parts[1]) + (n_double if parts[0] == "single_transformer_blocks" else 0)
        return AttentionSite(name, "joint", 2, "blocks", depth)
    return AttentionSite(name, "joint", None, "other", 0)


class MMDiTBackbone(Backbone):
    """What the MM-DiT backbones share: the transformer's processors replaced, through ``set_attn_processor``, by
    ones that show each joint layer to a controller (:func:`joint_attention`; the original processors run where
    the controller wants nothing), and Plug-and-Play's feature injection on its blocks. A subclass says where each
    processor's layer sits (:meth:`site`) and which processor shows it (:meth:`processor`).

    Args:
        transformer: the transformer (in eval mode for inference).
    """

    #: the module names' prefixes of the blocks whose image tokens feature injection may replace
    block_prefixes: tuple[str, ...] = ("transformer_blocks.",)

    def __init__(self, transformer: torch.nn.Module):
        self.module = transformer
        self.compiled: torch.nn.Module | None = None
        self._attached = False

    @property
    def config(self):
        return self.module.config

    def site(self, key: str) -> AttentionSite:
        """The site of the transformer's attention processor ``key``."""
        raise NotImplementedError

    def processor(self, controller: AttentionControl, site: AttentionSite, fallback):
        """The processor showing the layer at ``site`` to ``controller``; ``fallback``: the layer's own."""
        raise NotImplementedError

    def compile(self, **options) -> None:
        self.compiled = torch.compile(self.module, **options)

    def sites(self) -> list[AttentionSite]:
        return [self.site(key) for key in self.module.attn_processors]

    @contextmanager
    def attach(self, controller: AttentionControl) -> Iterator[AttachReport]:
        """Install ``controller`` on every joint (and image-only self-attention) layer; restore the original
        processors on exit."""
        original = dict(self.module.attn_processors)
        sites = {key: self.site(key) for key in original}
        n_joint = sum(1 for s in sites.values() if s.kind == "joint" and s.on_grid)
        n_self = sum(1 for s in sites.values() if s.kind in ("joint", "self") and s.on_grid)
        if n_joint == 0:
            raise HookError(f"no joint attention layer found among the transformer's {len(original)} attention "
                            "processors; this model cannot be edited with attention control")
        self.module.set_attn_processor(
            {key: self.processor(controller, sites[key], proc) for key, proc in original.items()})
        self._attached = True
        try:
            yield AttachReport(cross_layers=n_joint, self_layers=n_self)
        finally:
            self._attached = False
            self.module.set_attn_processor(original)

    #: the most text tokens the joint sequence holds (FLUX.1: T5's 512; SD3: CLIP's 77 and T5's 512)
    max_text_tokens: int = 512

    def estimate_memory(self, height: int, width: int, batch: int) -> int:
        """16 live tensors of tokens × inner width, text and image tokens, for ``batch`` branches with classifier-free
        guidance, on latents of ``height`` × ``width`` (attention maps are never held: fused kernels)."""
        bytes_per = torch.finfo(self.dtype).bits // 8
        tokens = self.image_seq_len(height, width) + self.max_text_tokens
        width_ = int(self.config.num_attention_heads) * int(self.config.attention_head_dim)
        return 16 * 2 * batch * tokens * width_ * bytes_per

    def default_feature_layers(self) -> list[str]:
        raise NotImplementedError

    @contextmanager
    def inject_features(self, injector) -> Iterator[list[str]]:
        """Plug-and-Play's injection on a transformer: the targets' image tokens leaving the named blocks
        (:meth:`default_feature_layers` when ``injector`` names none) are replaced by the source's (the blocks
        return (text, image) token pairs; the text stream is left alone); hooks removed on exit."""
        names = injector.layers or self.default_feature_layers()
        modules = dict(self.module.named_modules())

        def image_stream(module, inputs, output):  # output: (text tokens, image tokens), each (batch, S, D)
            return output[0], injector(module, inputs, output[1])

        handles = []
        try:
            for name in names:
                if name not in modules or not name.startswith(self.block_prefixes):
                    raise ParameterError(f"no transformer block {name!r} for feature injection")
                handles.append(modules[name].register_forward_hook(image_stream, prepend=True))
            yield names
        finally:
            for h in handles:
                h.remove()


class FluxBackbone(MMDiTBackbone):
    """FLUX.1's ``FluxTransformer2DModel``: latents packed into 2 × 2-patch tokens, RoPE over (text: 0; image:
    row, column) ids, timesteps as fractions (σ), the embedded guidance scale where the model is guidance-distilled
    (``guidance_embeds``), joint attention through :class:`FluxControlledProcessor`.

    Args:
        transformer: the transformer (in eval mode for inference).
    """

    token_subsets = True
    block_prefixes = ("transformer_blocks.", "single_transformer_blocks.")

    @property
    def guidance_embeds(self) -> bool:
        """Whether the model takes the guidance scale as an input (FLUX.1-dev: distilled; schnell and the shapes
        model: not)."""
        return bool(self.config.guidance_embeds)

    def predict(self, x: torch.Tensor, t, conditioning, *, compiled: bool = False,
                guidance: float | None = None) -> torch.Tensor:
        """The velocity (n, C, h, w) for x (n, C, h, w) at the sampler's timestep t (σ · 1000), as ``FluxPipeline``
        calls the transformer (timestep / 1000; ``guidance``: the embedded scale, required by a distilled model
        and refused by another)."""
        if self.guidance_embeds and guidance is None:
            raise ParameterError("this FLUX.1 model is guidance-distilled: it takes the guidance scale as an input")
        if not self.guidance_embeds and guidance is not None:
            raise ParameterError("this FLUX.1 model takes no guidance scale as an input (it is not guidance-"
                                 "distilled): its guidance must be classifier-free or none")
        n, _, h, w = x.shape
        out = self.predict_tokens(pack_latents(x), latent_image_ids(h, w, x.device, x.dtype), t, conditioning,
                                  compiled=compiled, guidance=guidance)  # (n, h/2 · w/2, 4C)
        return unpack_latents(out, (h, w))

    def predict_tokens(self, tokens: torch.Tensor, image_ids: torch.Tensor, t, conditioning, *,
                       compiled: bool = False, guidance: float | None = None) -> torch.Tensor:
        """The velocity of image ``tokens`` (n, N, 4C) at position ids ``image_ids`` (N, 3) (any subset of an
        image's tokens, as :func:`latent_image_ids` numbers them: KV-Edit's foreground) at timestep t (σ · 1000),
        as :meth:`predict` calls the transformer; returns (n, N, 4C)."""
        n = tokens.shape[0]
        emb = conditioning.embeddings  # (n, L, D)
        timestep = torch.as_tensor(t, device=tokens.device).expand(n).to(tokens.dtype)
        g = None if guidance is None else torch.full([1], float(guidance), device=tokens.device,
                                                     dtype=torch.float32).expand(n)
        module = self.compiled if compiled and self.compiled is not None else self.module
        return module(
            hidden_states=tokens, timestep=timestep / 1000, guidance=g,
            pooled_projections=conditioning.pooled, encoder_hidden_states=emb,
            txt_ids=torch.zeros(emb.shape[1], 3, device=tokens.device, dtype=tokens.dtype), img_ids=image_ids,
            joint_attention_kwargs={"text_length": emb.shape[1]} if self._attached else None, return_dict=False,
        )[0]

    def site(self, key: str) -> AttentionSite:
        return flux_site(key, len(self.module.transformer_blocks))

    def processor(self, controller: AttentionControl, site: AttentionSite, fallback):
        return FluxControlledProcessor(controller, site, fallback)

    @contextmanager
    def kv_attention(self, cache: KVCache) -> Iterator[int]:
        """Run every joint layer under KV-Edit's ``cache`` (:class:`FluxKVProcessor`); restore the original
        processors on exit. Yields the number of layers."""
        original = dict(self.module.attn_processors)
        n_double = len(self.module.transformer_blocks)
        sites = {key: flux_site(key, n_double) for key in original}
        joint = {key: FluxKVProcessor(cache, sites[key].name) for key in original if sites[key].on_grid}
        if len(joint) != len(original):
            raise HookError(f"KV-Edit caches every attention layer's image keys: {len(original) - len(joint)} of the "
                            "transformer's layers are not joint layers of its blocks")
        n_layers = len(joint)
        self.module.set_attn_processor(joint)  # (diffusers empties the dict it is given)
        self._attached = True
        try:
            yield n_layers
        finally:
            self._attached = False
            self.module.set_attn_processor(original)

    def default_feature_layers(self) -> list[str]:
        """Feature injection's default blocks: the later half of the single-stream blocks (where RF-Solver-Edit and
        FireFlow inject the source's values), or the last double-stream block where there are none."""
        n_single = len(self.module.single_transformer_blocks)
        if n_single == 0:
            return [f"transformer_blocks.{len(self.module.transformer_blocks) - 1}"]
        return [f"single_transformer_blocks.{j}" for j in range(n_single // 2, n_single)]

    def default_value_blocks(self) -> list[int]:
        """Value injection's default depths: RF-Solver-Edit's, the single-stream blocks from index 20 of FLUX.1's 38
        (its ``SingleStreamBlock``: ``info['id'] > 19``; depths 39–56 after the 19 double-stream blocks), the same
        share of another depth's (at least its last single-stream block), or the last double-stream block where
        there are none. (FireFlow injects in all 38 single-stream blocks: depths 19–56.)"""
        n_double, n_single = len(self.module.transformer_blocks), len(self.module.single_transformer_blocks)
        if n_single == 0:
            return [n_double - 1]
        first = min(round(n_single * 20 / 38), n_single - 1)
        return list(range(n_double + first, n_double + n_single))

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        return pack_latents(latents)

    def token_ids(self, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
        """The position ids (N, 3) of a latent of h × w's tokens, in :meth:`pack`'s order (:func:`latent_image_ids`)."""
        return latent_image_ids(h, w, device, dtype)

    def unpack(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return unpack_latents(x, size)

    @property
    def size_factor(self) -> int:
        """Latent sides must be even (2 × 2 patches)."""
        return 2

    @property
    def latent_channels(self) -> int:
        return int(self.config.in_channels) // 4

    @property
    def in_channels(self) -> int:
        return int(self.config.in_channels) // 4

    @property
    def native_size(self) -> int:
        """``FluxPipeline``'s default latent side (128: 1024 px), or the config's ``sample_size`` where set."""
        return int(getattr(self.config, "sample_size", None) or 128)

    def image_seq_len(self, h: int, w: int) -> int:
        """Image tokens of a latent of h × w (μ of the sampler's dynamic shifting is read from it)."""
        return (h // 2) * (w // 2)



def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, controller: AttentionControl,
                   site: AttentionSite, scale: float | None = None) -> torch.Tensor:
    """An image-only self-attention layer's output (B, H, N, d) from q, k, v (B, H, N, d) under ``controller``
    (SD3.5's second attention in its dual blocks), as a UNet's self-attention is controlled: the fused kernel
    where the controller wants nothing; source injection (a :class:`~promptedit.control.ValueEdit`) through the
    values; otherwise the probabilities (B, H, N, N), shown to the controller, whose returned tensor is used."""
    if not controller.wants(site):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    edit = controller.value_edit(site)
    if edit is not None:
        return value_edited_attention(q, k, v, edit, controller.n_prompts, scale)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    probs = ((q @ k.transpose(-1, -2)).float() * scale).softmax(-1).to(q.dtype)  # (B, H, N, N)
    return controller(probs, site).to(v.dtype) @ v


def sd3_site(key: str, grid: int) -> AttentionSite:
    """The site of an ``SD3Transformer2DModel`` processor key: ``transformer_blocks.i.attn`` is joint at depth i,
    ``transformer_blocks.i.attn2`` (SD3.5's dual attention) image-only self-attention at depth i; the image
    tokens are ``grid`` × ``grid`` latent patches (the patch size)."""
    name = key.removesuffix(".processor")
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "transformer_blocks" and parts[1].isdigit() and parts[2] in ("attn", "attn2"):
        return AttentionSite(name, "joint" if parts[2] == "attn" else "self", grid, "blocks", int(parts[1]))
    return AttentionSite(name, "joint", None, "other", 0)


class SD3ControlledProcessor:
    """SD3's attention processor (diffusers' ``JointAttnProcessor2_0``: a joint layer projects the image tokens and
    ``encoder_hidden_states`` apart and joins them image first; SD3.5's second attention in a dual block takes
    the image tokens alone; q and k RMS-normed where the model says; the last block's text output left
    unprojected, ``context_pre_only``), with the controller's edit where it wants the layer
    (:func:`joint_attention`, :func:`self_attention`), the original processor elsewhere."""

    def __init__(self, controller: AttentionControl, site: AttentionSite, fallback):
        self.controller = controller
        self.site = site
        self.fallback = fallback

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        views = joint_views(self.site) if self.site.kind == "joint" else (self.site,)
        values = self.controller.source_values(self.site) if self.site.on_grid else None
        if (attention_mask is not None or not self.site.on_grid
                or not (values or any(self.controller.wants(view) for view in views))):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)

        def heads(x: torch.Tensor, norm) -> torch.Tensor:  # (B, S, H·d) → (B, H, S, d), normed where the layer is
            x = x.unflatten(-1, (attn.heads, -1)).transpose(1, 2)
            return x if norm is None else norm(x)

        q, k = heads(attn.to_q(hidden_states), attn.norm_q), heads(attn.to_k(hidden_states), attn.norm_k)
        v = heads(attn.to_v(hidden_states), None)
        n_image = q.shape[2]
        if encoder_hidden_states is None:  # SD3.5's image-only attention
            if values:
                k, v = with_source_values(k, v, values, self.controller.n_prompts, slice(None))
            out = self_attention(q, k, v, controller=self.controller, site=self.site)
        else:  # joint: [image, text]
            eq = heads(attn.add_q_proj(encoder_hidden_states), attn.norm_added_q)
            ek = heads(attn.add_k_proj(encoder_hidden_states), attn.norm_added_k)
            ev = heads(attn.add_v_proj(encoder_hidden_states), None)
            q, k, v = torch.cat([q, eq], dim=2), torch.cat([k, ek], dim=2), torch.cat([v, ev], dim=2)
            if values:
                k, v = with_source_values(k, v, values, self.controller.n_prompts, slice(0, n_image))
            out = joint_attention(q, k, v, text=slice(n_image, q.shape[2]), image=slice(0, n_image),
                                  controller=self.controller, site=self.site)  # (B, H, S, d)
        out = out.transpose(1, 2).flatten(2, 3).to(q.dtype)  # (B, S, H·d)
        image_out = attn.to_out[1](attn.to_out[0](out[:, :n_image]))
        if encoder_hidden_states is None:
            return image_out
        text_out = out[:, n_image:]
        return image_out, (text_out if attn.context_pre_only else attn.to_add_out(text_out))


class SD3Backbone(MMDiTBackbone):
    """Stable Diffusion 3 / 3.5's ``SD3Transformer2DModel``: latents taken as they are (the transformer cuts them
    into p × p patches and adds its position embeddings), the sampler's timesteps as they are (σ · 1000, as
    ``StableDiffusion3Pipeline`` passes them), joint attention over [image, text] and SD3.5's image-only second
    attention through :class:`SD3ControlledProcessor`. Guided classifier-free: no guidance input.

    Args:
        transformer: the transformer (in eval mode for inference).
    """

    max_text_tokens = 77 + 512

    def predict(self, x: torch.Tensor, t, conditioning, *, compiled: bool = False,
                guidance: float | None = None) -> torch.Tensor:
        """The velocity (n, C, h, w) for x (n, C, h, w) at the sampler's timestep t under ``conditioning`` (n rows:
        the CLIP and T5 keys (n, 77 + L, D), the pooled CLIP vectors (n, P))."""
        if guidance is not None:
            raise ParameterError("SD3 takes no guidance scale as an input (it is not guidance-distilled): its "
                                 "guidance is classifier-free")
        module = self.compiled if compiled and self.compiled is not None else self.module
        return module(hidden_states=x, timestep=torch.as_tensor(t, device=x.device).expand(x.shape[0]),
                      encoder_hidden_states=conditioning.embeddings, pooled_projections=conditioning.pooled,
                      return_dict=False)[0]

    @property
    def patch_size(self) -> int:
        return int(self.config.patch_size)

    def site(self, key: str) -> AttentionSite:
        return sd3_site(key, self.patch_size)

    def processor(self, controller: AttentionControl, site: AttentionSite, fallback):
        return SD3ControlledProcessor(controller, site, fallback)

    def default_feature_layers(self) -> list[str]:
        """Feature injection's default blocks: the later half of the joint blocks (as FLUX.1's later single-stream
        blocks; not yet measured on SD3)."""
        n = len(self.module.transformer_blocks)
        return [f"transformer_blocks.{i}" for i in range(n // 2, n)]

    def default_value_blocks(self) -> list[int]:
        """Value injection's default depths: the later half of the joint blocks, as on FLUX.1 (no paper's setting
        for SD3; not measured)."""
        n = len(self.module.transformer_blocks)
        return list(range(n // 2, n))

    @property
    def size_factor(self) -> int:
        """Latent sides must be multiples of the patch size."""
        return self.patch_size

    def image_seq_len(self, h: int, w: int) -> int:
        """Image tokens of a latent of h × w (μ of a dynamically shifting schedule is read from it)."""
        return (h // self.patch_size) * (w // self.patch_size)
