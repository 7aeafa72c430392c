"""The FLUX.1-architecture shapes-world model of the recipe (``promptedit train --arch flux``): its components
and its rectified-flow training maths.

* transformer: diffusers' ``FluxTransformer2DModel`` — double-stream blocks (text and image tokens with their own
  weights, one joint attention) then single-stream blocks (one sequence), RoPE over the packed latent grid, the
  pooled text vector and the timestep in the adaptive norms, no guidance embedding (``guidance_embeds=False``:
  classifier-free guidance through caption dropout, so null-text and negative-prompt inversion apply). Its
  adaptive-norm modulations and output projection start at zero (DiT's adaLN-Zero, Peebles & Xie 2023, Sec. 3.2:
  every block starts as the identity and the first prediction is 0);
* text: a CLIP text encoder for the pooled vector (by default the shipped SD model's, with its tokenizer) and a
  small T5 v1.1 encoder (``T5EncoderModel``) on a T5-style SentencePiece Unigram tokenizer built from the world's
  captions (every world word one ``▁word`` token), whose last hidden states are the attention's text keys;
* codec: the recipe's exact :class:`~promptedit.codec.PatchCodec`; the transformer packs 2 × 2 latent cells into
  a token, so a codec patch of p pixels gives (64 / 2p)² image tokens.

Training as FLUX.1 and SD3 (Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image
Synthesis", ICML 2024): x_σ = (1 − σ)·x₀ + σ·ε, the model predicts v = ε − x₀ (plain MSE), σ drawn from a
logit-normal (Sec. 3.1, rf/lognorm(m, s)) and shifted by the scheduler's own shift for the training image's
token count (Sec. 5.3.2; FLUX.1's μ of dynamic shifting), so that training and sampling see the same levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..samplers.flow import flow_noise, image_seq_len_mu, time_shift
from ..world import spec

#: the scheduler of the recipe's FLUX models: FLUX.1's dynamic shifting, its line of μ put through (64 image
#: tokens, 0.5) and (256 tokens, 1.15): the 64 px images of the recipe (16 × 16 tokens at codec patch 2) are
#: shifted by e^1.15 = 3.16, so that the median training σ is 0.76 — the noise level at which the SD model's
#: DDPM schedule (linear β 1e-4 → 0.02) put its median timestep (SNR 0.3); 32 px images by e^0.5 = 1.65
FLUX_SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
                      max_shift=1.15, base_image_seq_len=64, max_image_seq_len=256, time_shift_type="exponential")


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """FLUX.1's split of a head's rotary dimensions over (text index, row, column), scaled to ``head_dim``: 128 →
    (16, 56, 56) as FLUX.1; every part even (RoPE rotates pairs)."""
    side = 2 * ((head_dim - 2 * max(1, head_dim // 16)) // 4)
    if head_dim % 2 or side < 2:
        raise ValueError(f"the transformer's head width must be even and at least 8, got {head_dim}")
    return head_dim - 2 * side, side, side


def build_flux_components(config, clip_tokenizer, t5_tokenizer) -> dict:
    """Fresh, seeded FLUX components of ``config`` (a :class:`~promptedit.train.shapes.TrainConfig`): the
    transformer, the CLIP encoder (``config.text_*``) and the T5 encoder (``config.t5_*``), keyed as
    ``FluxPipeline`` takes them, and the scheduler's configuration."""
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    if config.flux_width % config.flux_heads:
        raise ValueError(f"the transformer's width {config.flux_width} is not a multiple of its "
                         f"{config.flux_heads} heads")
    head_dim = config.flux_width // config.flux_heads
    latent_channels = 3 * config.patch_size**2
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * latent_channels,  # 2 × 2 latent cells packed into each token
        num_layers=config.flux_double_layers, num_single_layers=config.flux_single_layers,
        attention_head_dim=head_dim, num_attention_heads=config.flux_heads, joint_attention_dim=config.t5_hidden,
        pooled_projection_dim=config.text_hidden, guidance_embeds=False, axes_dims_rope=rope_axes(head_dim))
    zero_init_modulation(transformer)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tokenizer), hidden_size=config.text_hidden, intermediate_size=4 * config.text_hidden,
        num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
        max_position_embeddings=config.max_length, bos_token_id=clip_tokenizer.bos_token_id,
        eos_token_id=clip_tokenizer.eos_token_id, pad_token_id=clip_tokenizer.pad_token_id,
        projection_dim=config.text_hidden))
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tokenizer), d_model=config.t5_hidden, d_kv=config.t5_hidden // config.t5_heads,
        d_ff=2 * config.t5_hidden, num_layers=config.t5_layers, num_heads=config.t5_heads,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=t5_tokenizer.pad_token_id,
        eos_token_id=t5_tokenizer.eos_token_id, decoder_start_token_id=t5_tokenizer.pad_token_id))
    return dict(transformer=transformer, text_encoder=clip, text_encoder_2=t5, scheduler=dict(FLUX_SCHEDULER))


@torch.no_grad()
def zero_init_modulation(transformer: torch.nn.Module) -> None:
    """adaLN-Zero (DiT, Peebles & Xie 2023): every adaptive norm's modulation (shift, scale, gate) and the output
    projection at zero, so each block starts as the identity and the model's first velocity is 0."""
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and (name.endswith(("norm1.linear", "norm1_context.linear",
                                                                   "norm.linear")) or name in ("norm_out.linear", "proj_out")):
            module.weight.zero_()
            module.bias.zero_()


def training_mu(scheduler_config: dict, image_tokens: int) -> float | None:
    """μ of dynamic shifting for images of ``image_tokens`` packed tokens (None for a fixed shift)."""
    if not scheduler_config.get("use_dynamic_shifting"):
        return None
    return image_seq_len_mu(image_tokens, scheduler_config["base_image_seq_len"],
                            scheduler_config["max_image_seq_len"], scheduler_config["base_shift"],
                            scheduler_config["max_shift"])


def training_sigmas(n: int, rng: torch.Generator, scheduler_config: dict, image_tokens: int, mean: float = 0.0,
                    std: float = 1.0) -> torch.Tensor:
    """(n,) noise levels of a training batch: σ = sigmoid(m + s·u), u ~ N(0, 1) (SD3's logit-normal, Sec. 3.1),
    then shifted as the scheduler shifts the sampling schedule of such an image (FLUX.1's time shift by μ, or
    SD3's fixed shift)."""
    sigmas = torch.sigmoid(mean + std * torch.randn(n, generator=rng, dtype=torch.float64))  # (n,) in (0, 1)
    mu = training_mu(scheduler_config, image_tokens)
    if mu is not None:
        sigmas = time_shift(sigmas, mu, scheduler_config.get("time_shift_type", "exponential"))
    else:
        shift = scheduler_config.get("shift", 1.0)
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return sigmas.float()


def flow_loss(model, z0: torch.Tensor, text_ids: list[torch.Tensor], rng: torch.Generator, config
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rectified-flow loss of a batch: mean over samples of ‖v̂(x_σ, σ) − (ε − x₀)‖² / (C·h·w).

    z0: clean latents (B, C, h, w); text_ids: the CLIP and T5 ids (B, L_clip), (B, L_t5), dropped captions being
    the empty prompt's (as ``FluxText.unconditional`` encodes them at inference). Noise and σ are drawn from
    ``rng`` (on the CPU). Returns (loss, the T5 hidden states (B, L_t5, D) — the attention's text keys —, the
    samples' signal amplitudes 1 − σ (B,), the weight of their grounding terms)."""
    device = z0.device
    cond = model.text.encode_ids(text_ids, size=(spec.CANVAS_SIZE, spec.CANVAS_SIZE))
    noise = torch.randn(z0.shape, generator=rng).to(device)  # (B, C, h, w)
    image_tokens = (z0.shape[-2] // 2) * (z0.shape[-1] // 2)  # 2 × 2 latent cells per token
    sigma = training_sigmas(z0.shape[0], rng, model.scheduler_config, image_tokens, config.logit_mean,
                            config.logit_std).to(device)  # (B,)
    x = flow_noise(z0, noise, sigma[:, None, None, None])  # (B, C, h, w)
    v = model.backbone.predict(x, sigma * model.scheduler_config["num_train_timesteps"], cond)  # (B, C, h, w)
    loss = F.mse_loss(v.float(), (noise - z0).float())
    return loss, cond.embeddings, 1 - sigma
