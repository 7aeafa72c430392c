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
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

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
    encoders = []
    for k, cls in enumerate((CLIPTextModel, CLIPTextModelWithProjection)):
        torch.manual_seed(seed + 2 + k)
        tok = tokenizers[k]
        encoders.append(cls(CLIPTextConfig(
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
            vocab_size=len(tok), max_position_embeddings=max_length, projection_dim=32, hidden_act="gelu")))
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


#: family name (as :data:`promptedit.families.FAMILIES` spells it) -> builder of its tiny random-weight model,
#: ``seed → DiffusionModel``; the family contract tests (tests/test_families.py) run on every entry, so a new
#: family gets them by adding its builder here
TINY_MODELS = {"sd": tiny_components, "sdxl": tiny_sdxl_components}
