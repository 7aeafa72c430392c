"""Tiny random-weight Stable Diffusion components, built in code (as diffusers' own tests do).

Used by the tests and by ``promptedit dev tiny-model`` to smoke-test the CLI
without any download. The images they make are noise: they prove plumbing,
not quality.
"""

from __future__ import annotations

import torch

from .backbones.unet import UNetBackbone
from .conditioning import SDText, SDXLText
from .defaults import InversionDefaults, ModelDefaults, P2PDefaults, SamplingDefaults, MaskDefaults
from .models import DiffusionModel, save_model  # noqa: F401  (re-exported)
from .text.vocab import build_clip_tokenizer, build_t5_tokenizer

TINY_CORPUS = [
    "a photo of a cat sitting on the mat",
    "a photo of a dog sitting on the mat",
    "a red circle on a white background",
    "a blue square on a black background",
    "a big striped yellow star and a small dotted green heart on a gray background at night",
    "a sketch of a purple triangle, a pixel art of an orange house",
    "a blurry photo of a pink cat and a cyan dog",
    "a cat and a dog in the garden",
]

# a training recipe (promptedit.train.shapes.TrainConfig overrides) small enough for a test to run in seconds
TINY_TRAIN = dict(steps=3, batch_size=4, unet_channels=(8, 16, 32), head_channels=8, text_hidden=32, text_layers=1,
                  text_heads=2, checkpoint_every=1, warmup_steps=1)
# the same for the FLUX architecture (its CLIP encoder the shape of TINY_TRAIN's, so that it can start from one)
TINY_TRAIN_FLUX = dict(TINY_TRAIN, arch="flux", flux_width=32, flux_heads=2, flux_double_layers=1,
                       flux_single_layers=1, t5_hidden=32, t5_layers=1, t5_heads=2)


def tiny_tokenizer(max_length: int = 77):
    """A CLIP-style tokenizer whose common words are one token and rare ones several."""
    return build_clip_tokenizer(TINY_CORPUS * 4, vocab_size=400, model_max_length=max_length)


def tiny_t5_tokenizer(max_length: int = 512):
    """A T5-style SentencePiece Unigram tokenizer (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, no start token) whose corpus
    words are one token and other words ``▁`` + one token per character; ``max_length``: FLUX.1's and SD3's T5
    length (512)."""
    return build_t5_tokenizer(TINY_CORPUS * 4, vocab_size=400, model_max_length=max_length)


def tiny_components(seed: int = 0, *, max_length: int = 77, prediction_type: str = "epsilon",
                    inpainting: bool = False) -> DiffusionModel:
    """A 3-level UNet (cross-attention at 1/1, 1/2 and 1/4 of a 16×16 latent), a 2-level VAE (32 px images)
    and a 2-layer CLIP text encoder, all with random weights from ``seed``; ``inpainting``: the UNet takes
    the 9 channels of an SD inpainting checkpoint (latents, mask, masked image's latents)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(max_length)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=max_length,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    for m in (unet, vae, text_encoder):
        m.eval().requires_grad_(False)
    return DiffusionModel(
        vae=vae, backbone=UNetBackbone(unet), text=SDText(tokenizer, text_encoder),
        scheduler_config=dict(scheduler.config), name=f"tiny-{'inpaint' if inpainting else 'random'}-{seed}",
        defaults=TINY_DEFAULTS,
    )


#: the tiny models' defaults: few steps, and maps at 1/2 of the 16×16 latent
TINY_DEFAULTS = ModelDefaults(
    sampling=SamplingDefaults(num_inference_steps=4),
    p2p=P2PDefaults(blend_downsample=2, attention_downsample=2, self_replace_min_downsample=2),
    inversion=InversionDefaults(num_inference_steps=4),
    masks=MaskDefaults(downsample=2))


def tiny_sdxl_components(seed: int = 0, *, max_length: int = 77, force_zeros_for_empty_prompt: bool = True,
                         inpainting: bool = False) -> DiffusionModel:
    """Stable Diffusion XL's architecture in miniature, as diffusers' own SDXL tests build it: a UNet with
    text-time conditioning whose first level has no attention (cross-attention at 1/2 of a 16×16 latent, two
    transformer blocks), two CLIP text encoders (the second with a projection: the pooled embedding), their
    hidden states concatenated (32 + 32 = 64), and a 2-level VAE (32 px images); random weights from ``seed``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizers = [tiny_tokenizer(max_length), tiny_tokenizer(max_length)]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=9 if inpainting else 4, out_channels=4, block_out_channels=(16, 32),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=8,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        latent_channels=4, norm_num_groups=8, sample_size=32, force_upcast=True)
    encoders = [_tiny_clip(cls, tokenizers[k], seed + 2 + k, layers=3)
                for k, cls in enumerate((CLIPTextModel, CLIPTextModelWithProjection))]
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    for m in (unet, vae, *encoders):
        m.eval().requires_grad_(False)
    return DiffusionModel(
        vae=vae, backbone=UNetBackbone(unet),
        text=SDXLText(tokenizers, encoders, force_zeros_for_empty_prompt=force_zeros_for_empty_prompt),
        scheduler_config=dict(scheduler.config), name=f"tiny-sdxl-{'inpaint' if inpainting else 'random'}-{seed}",
        defaults=TINY_DEFAULTS,
    )


def tiny_flux_model(seed: int = 0, *, guidance_embeds: bool = False, max_length: int = 32) -> DiffusionModel:
    """:func:`tiny_flux_components` as a promptedit model (32 px images; T5's ``max_length`` short, as the shapes
    models'); without ``guidance_embeds`` it is guided classifier-free, as FLUX.1-schnell and the shapes model."""
    from .backbones.mmdit import FluxBackbone
    from .conditioning import FluxText

    parts = tiny_flux_components(seed, guidance_embeds=guidance_embeds, max_length=max_length)
    return DiffusionModel(
        vae=parts["vae"], backbone=FluxBackbone(parts["transformer"]),
        text=FluxText([parts["tokenizer"], parts["tokenizer_2"]], [parts["text_encoder"], parts["text_encoder_2"]]),
        scheduler_config=dict(parts["scheduler"].config), name=f"tiny-flux-{seed}",
        defaults=TINY_DEFAULTS.replace("sampling", image_size=32))


def tiny_sd3_model(seed: int = 0, *, max_length: int = 32) -> DiffusionModel:
    """:func:`tiny_sd3_components` as a promptedit model (32 px images; T5's ``max_length`` short, as the shapes
    models'), guided classifier-free as SD3; its text side and backbone made as loading makes them."""
    from .families import FAMILIES

    parts, family = tiny_sd3_components(seed, max_length=max_length), FAMILIES["sd3"]
    return DiffusionModel(
        vae=parts["vae"], backbone=family.backbone(parts["transformer"]), text=family.text(parts, {}),
        scheduler_config=dict(parts["scheduler"].config), name=f"tiny-sd3-{seed}",
        defaults=TINY_DEFAULTS.replace("sampling", image_size=32))


#: family name (as :data:`promptedit.families.FAMILIES` spells it) -> builder of its tiny random-weight model,
#: ``seed → DiffusionModel``; the family contract tests (tests/test_families.py) run on every entry, so a new
#: family gets them by adding its builder here
TINY_MODELS = {"sd": tiny_components, "sdxl": tiny_sdxl_components, "flux": tiny_flux_model, "sd3": tiny_sd3_model}


def _tiny_clip(cls, tokenizer, seed: int, hidden: int = 32, layers: int = 2):
    """A tiny CLIP text encoder (``cls``: ``CLIPTextModel`` or ``CLIPTextModelWithProjection``) for ``tokenizer``,
    random weights from ``seed``; its end token (where the pooled vector is read) is the tokenizer's."""
    from transformers import CLIPTextConfig

    torch.manual_seed(seed)
    return cls(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden, intermediate_size=37, num_attention_heads=4, num_hidden_layers=layers,
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length, projection_dim=hidden,
        hidden_act="gelu")).eval().requires_grad_(False)


def _tiny_t5(tokenizer, seed: int, d_model: int = 32):
    """A tiny T5 v1.1 encoder (gated GELU, as FLUX.1's and SD3's T5-XXL) for ``tokenizer``, random weights from
    ``seed``."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id)).eval().requires_grad_(False)


def _tiny_flow_vae(seed: int, *, scaling_factor: float, shift_factor: float):
    """A 2-level VAE with 16 latent channels and no quant convs (FLUX.1's and SD3's layout; scale factor 2, so a
    32 px image is a 16 × 16 latent), random weights from ``seed``."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=16, norm_num_groups=8, sample_size=32,
        use_quant_conv=False, use_post_quant_conv=False, scaling_factor=scaling_factor, shift_factor=shift_factor,
    ).eval().requires_grad_(False)


def tiny_flux_components(seed: int = 0, *, guidance_embeds: bool = True, max_length: int = 512) -> dict:
    """FLUX.1's architecture in miniature, random weights from ``seed``, as the keyword arguments of diffusers'
    ``FluxPipeline`` (there is no promptedit model for FLUX yet): a ``FluxTransformer2DModel`` with one
    double-stream and one single-stream block (2 heads of 16, RoPE axes 4 + 6 + 6 = 16; ``guidance_embeds``: the
    embedded guidance of FLUX.1-dev, off for schnell), a VAE with 16 latent channels (2 × 2 patches packed into
    64-channel tokens: a 32 px image is 8 × 8 = 64 image tokens), a CLIP text encoder (its pooled vector) and a
    T5 encoder with the T5-style tokenizer (``max_length``), and FLUX.1-dev's ``FlowMatchEulerDiscreteScheduler``
    (dynamic shifting, μ from 0.5 at 256 image tokens to 1.15 at 4096)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tokenizer, tokenizer_2 = tiny_tokenizer(77), tiny_t5_tokenizer(max_length)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6),
    ).eval().requires_grad_(False)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
    return dict(
        transformer=transformer,
        vae=_tiny_flow_vae(seed + 1, scaling_factor=0.3611, shift_factor=0.1159),  # FLUX.1's VAE's factors
        text_encoder=_tiny_clip(CLIPTextModel, tokenizer, seed + 2), tokenizer=tokenizer,
        text_encoder_2=_tiny_t5(tokenizer_2, seed + 3), tokenizer_2=tokenizer_2, scheduler=scheduler,
    )


def tiny_sd3_components(seed: int = 0, *, max_length: int = 512) -> dict:
    """Stable Diffusion 3.5 Medium's architecture in miniature, random weights from ``seed``, as the keyword
    arguments of diffusers' ``StableDiffusion3Pipeline``: an ``SD3Transformer2DModel`` of two joint blocks (2 × 2
    patches, 2 heads of 16, RMS-normed q/k, the first block with SD3.5's second, image-only attention), a VAE with
    16 latent channels, two CLIP text encoders with projections (hidden 16 + 16, concatenated and zero-padded to
    T5's 32; pooled 16 + 16 = 32), a T5 encoder with the T5-style tokenizer (``max_length``), and SD3's
    ``FlowMatchEulerDiscreteScheduler`` (shift 3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection

    tokenizer, tokenizer_2, tokenizer_3 = tiny_tokenizer(77), tiny_tokenizer(77), tiny_t5_tokenizer(max_length)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=32,
        pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm",
    ).eval().requires_grad_(False)
    return dict(
        transformer=transformer,
        vae=_tiny_flow_vae(seed + 1, scaling_factor=1.5305, shift_factor=0.0609),  # SD3's VAE's factors
        text_encoder=_tiny_clip(CLIPTextModelWithProjection, tokenizer, seed + 2, hidden=16), tokenizer=tokenizer,
        text_encoder_2=_tiny_clip(CLIPTextModelWithProjection, tokenizer_2, seed + 3, hidden=16),
        tokenizer_2=tokenizer_2, text_encoder_3=_tiny_t5(tokenizer_3, seed + 4), tokenizer_3=tokenizer_3,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    )
