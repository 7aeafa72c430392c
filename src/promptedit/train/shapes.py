"""The training recipe of the embedded shapes-world model.

A Stable-Diffusion-shaped text-to-image model, small enough to train on 2 CPU
cores in about 90 minutes:

* codec: :class:`promptedit.codec.PatchCodec`, exact space-to-depth of 4×4
  patches (64×64×3 images ↔ 16×16×48 latents), so reconstruction is lossless;
* text encoder: a small CLIP text transformer trained from scratch with the
  denoiser, on a CLIP-style BPE tokenizer built from the world's captions
  (every word of the specification is one token; start and end tokens as CLIP);
* denoiser: ``UNet2DConditionModel`` with cross-attention at 1/1, 1/2 and 1/4 of
  the latent size; v-prediction on the DDPM linear schedule (β 1e-4 → 0.02,
  1000 steps), Min-SNR-γ loss weighting (Hang et al. 2023), caption dropout for
  classifier-free guidance, EMA weights exported;
* token grounding (:mod:`.grounding`, after TokenCompose, Wang et al. 2024): each grounded word's
  cross-attention is asked to fall inside the pixels it names, so the maps that Prompt-to-Prompt injects
  and InstDiffEdit reads localise words as Stable Diffusion's do.

Data are rendered on the fly from the world's sampler (``scene_at(data_seed, i)``),
so resuming continues the same stream. Checkpoints are written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..codec import PatchCodec
from ..conditioning import SDText, SDXLText
from ..errors import ModelLoadError, ParameterError, check_real, check_whole
from ..defaults import InversionDefaults, MaskDefaults, ModelDefaults, P2PDefaults, SamplingDefaults
from ..families import FAMILIES
from ..models import DiffusionModel
from ..outputs.files import write_with
from ..text.vocab import build_clip_tokenizer, build_t5_tokenizer as build_t5_tokenizer_from
from ..world import iter_samples, spec
from . import ARCHITECTURES
from .flow import build_flux_components, flow_loss
from .grounding import GroundingRecorder, grounding_targets, token_grounding_loss, word_mass_loss
from .words import token_identity_loss, word_positions

HELD_OUT_SEED = spec.HELD_OUT_SEED  # benchmarks draw scenes from this seed; training never does
#: the name of each architecture's model
MODEL_NAMES = {"sd": "promptedit-shapes", "sdxl": "promptedit-shapes-xl", "flux": "promptedit-shapes-flux"}
#: the FLUX transformer's peak learning rate (a transformer takes a lower one than the UNets' 7e-4; DiT trains at
#: 1e-4 with batch 256)
FLUX_LR = 3e-4


@dataclass
class TrainConfig:
    """Every hyper-parameter of the recipe (defaults: the shipped model's)."""

    steps: int = 4000
    batch_size: int = 32
    lr: float | None = None  # None: the architecture's (7e-4 for the UNets, FLUX_LR for the transformer)
    warmup_steps: int = 100
    min_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    # weight of the token-grounding loss (train/grounding.py: each word's cross-attention inside its pixels)
    grounding_weight: float = 0.05
    # weight of the word-mass term (train/grounding.py: the words describing a pixel get ≥ floor of its mass)
    word_mass_weight: float = 0.05
    word_mass_floor: float = 0.5
    # weight of the word-identity term (train/words.py: each word's encoder output names its word)
    identity_weight: float = 0.02
    identity_temperature: float = 10.0
    seed: int = 0
    data_seed: int = 1
    # share of two-object captions in the training stream (the world's own: 0.4); a fine-tuning run may raise it
    two_object_fraction: float = spec.P_TWO_OBJECTS
    max_minutes: float | None = None
    checkpoint_every: int = 250
    # architecture: a family of the registry (promptedit.families.FAMILIES): "sd" (one CLIP text encoder, SD
    # 1.x/2.x's conditioning), "sdxl" (a pooled family, SDXL's: two text encoders, their penultimate hidden
    # states concatenated, the second's pooled output and the time ids into the UNet) or "flux" (FLUX.1's
    # MM-DiT transformer, CLIP's pooled vector and T5's keys, trained as a rectified flow: train/flow.py)
    arch: str = "sd"
    # the first level must be wider than the 48 latent channels: at high noise ε ≈ x_t must pass through it
    unet_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 1
    # the UNet's mid block, and cross-attention in each level of its up path (lowest resolution first); None:
    # the architecture's own. The SDXL-architecture model has neither the mid block nor cross-attention in the
    # lowest up level (SDXL's own first level has no attention either): 17.35 M UNet parameters become 10.52 M,
    # so that it ships in under 25 MB in fp16
    mid_block: bool | None = None
    up_attention: tuple[bool, ...] | None = None
    head_channels: int = 32  # channels per attention head (heads = block channels // this)
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    max_length: int = 32
    vocab_size: int = 600
    # the codec's patch side in pixels; None: the architecture's (4 for the UNets, 2 for FLUX, whose transformer
    # packs 2 × 2 latent cells into a token: 16 × 16 image tokens at 64 px, maps at 4 px as the SD model's)
    patch_size: int | None = None
    # the FLUX architecture (arch "flux", train/flow.py): the transformer's width, heads, double- and
    # single-stream blocks; the T5 encoder's width, layers and heads and its token count (FluxPipeline's
    # max_sequence_length); SD3's logit-normal timestep density (m, s); whether the CLIP text encoder (the pooled
    # vector) and its tokenizer start from the shipped SD model's (the CLI loads it for a new run)
    flux_width: int = 192
    flux_heads: int = 3
    flux_double_layers: int = 2
    flux_single_layers: int = 4
    t5_hidden: int = 128
    t5_layers: int = 2
    t5_heads: int = 4
    max_sequence_length: int = 32
    logit_mean: float = 0.0
    logit_std: float = 1.0
    clip_from_sd: bool = True
    # noise schedule
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_train_timesteps: int = 1000
    # v-prediction (Salimans & Ho 2022): the x_0 estimate at high noise does not divide ε errors by √ᾱ_t
    prediction_type: str = "v_prediction"

    def __post_init__(self):
        for f in dataclasses.fields(self):  # every number of the kind its default is (a config file can say "x")
            value, default = getattr(self, f.name), f.default
            if isinstance(default, bool) or value is None:
                continue
            if isinstance(default, int):
                check_whole(f.name, value)
            elif isinstance(default, float):
                check_real(f.name, value)
        if self.max_minutes is not None:
            check_real("max_minutes", self.max_minutes, 0.0, low_open=True)
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        flux = FAMILIES[self.arch].mmdit
        if self.lr is None:
            self.lr = FLUX_LR if flux else 7e-4
        if self.patch_size is None:
            self.patch_size = 2 if flux else 4
        check_real("lr", self.lr, 0.0)  # AdamW takes lr >= 0 (0 keeps the weights)
        check_whole("patch_size", self.patch_size, 1)
        if flux and (spec.CANVAS_SIZE // self.patch_size) % 2:
            raise ValueError(f"a FLUX transformer packs 2 x 2 latent cells: the codec's patch {self.patch_size} "
                             f"must divide the {spec.CANVAS_SIZE} px canvas into an even number of cells")
        if self.flux_width <= 0 or self.flux_heads <= 0 or self.t5_hidden <= 0 or self.t5_heads <= 0:
            raise ValueError("the transformer's and the T5 encoder's widths and heads must be positive")
        if self.logit_std <= 0:
            raise ValueError(f"the logit-normal's s must be positive, got {self.logit_std}")
        self.unet_channels = tuple(int(c) for c in self.unet_channels)
        if self.steps <= 0 or self.batch_size <= 0 or self.checkpoint_every <= 0:
            raise ValueError("steps, batch size and checkpoint interval must be positive")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("the EMA decay must be in [0, 1)")
        if self.grounding_weight < 0 or self.word_mass_weight < 0 or self.identity_weight < 0:
            raise ValueError("the grounding, word-mass and identity weights must be >= 0")
        if self.identity_temperature <= 0:
            raise ValueError("the identity temperature must be positive")
        if not 0 < self.word_mass_floor <= 1:
            raise ValueError("the word-mass floor must be in (0, 1]")
        if not 0 <= self.caption_dropout < 1:
            raise ValueError("caption dropout must be in [0, 1)")
        if not 0 <= self.min_lr_fraction <= 1:
            raise ValueError(f"the final learning-rate fraction must be in [0, 1], got {self.min_lr_fraction}")
        if not 0 <= self.two_object_fraction <= 1:
            raise ValueError(f"the two-object fraction must be in [0, 1], got {self.two_object_fraction}")
        n, pooled = len(self.unet_channels), FAMILIES[self.arch].pooled
        if self.mid_block is None:
            self.mid_block = not pooled
        if self.up_attention is None:
            self.up_attention = (False,) + (True,) * (n - 1) if pooled else (True,) * n
        self.up_attention = tuple(bool(a) for a in self.up_attention)
        if len(self.up_attention) != n:
            raise ValueError(f"up_attention needs one entry per UNet level ({n}), got {len(self.up_attention)}")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction type must be epsilon or v_prediction, got {self.prediction_type!r}")


def caption_corpus(n: int = 20000, seed: int = 12345) -> list[str]:
    """Captions drawn from the training distribution, plus every vocabulary word alone."""
    from ..world.sample import sample_caption_spec

    rng = np.random.default_rng(seed)
    corpus = [sample_caption_spec(rng).caption for _ in range(n)]
    words = set(" ".join(corpus).split())
    return corpus + sorted(words)


def build_tokenizer(config: TrainConfig):
    """The CLIP-style tokenizer: every word of the world's captions is one token."""
    corpus = caption_corpus()
    return _one_token_per_word(
        build_clip_tokenizer(corpus, vocab_size=config.vocab_size, model_max_length=config.max_length), corpus)


def _one_token_per_word(tok, corpus: list[str]):
    """``tok``, after checking that it keeps every word of ``corpus`` one token."""
    words = sorted(set(" ".join(corpus).split()))
    split = [w for w in words if len(tok(w, add_special_tokens=False).input_ids) != 1]
    if split:
        raise RuntimeError(f"tokenizer splits vocabulary words {split}; raise vocab_size")
    return tok


def build_t5_tokenizer(config: TrainConfig):
    """The T5-style tokenizer of a FLUX run: every word of the world's captions is one ``▁word`` token."""
    corpus = caption_corpus()
    return _one_token_per_word(
        build_t5_tokenizer_from(corpus, vocab_size=config.vocab_size, model_max_length=config.max_sequence_length),
        corpus)


def build_model(config: TrainConfig, tokenizer) -> DiffusionModel:
    """Fresh, randomly initialised components (seeded); ``tokenizer``: the run's CLIP tokenizer, or for a FLUX
    run the pair (CLIP tokenizer, T5 tokenizer)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(config.seed)
    if FAMILIES[config.arch].mmdit:
        return _build_flux_model(config, *tokenizer)
    codec = PatchCodec(patch_size=config.patch_size)
    n = len(config.unet_channels)
    xl = FAMILIES[config.arch].pooled  # SDXL's conditioning: two text encoders, pooled embedding, time ids
    unet = UNet2DConditionModel(
        sample_size=spec.CANVAS_SIZE // config.patch_size,
        in_channels=codec.latent_channels,
        out_channels=codec.latent_channels,
        block_out_channels=config.unet_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in config.up_attention),
        mid_block_type="UNetMidBlock2DCrossAttn" if config.mid_block else None,
        cross_attention_dim=2 * config.text_hidden if xl else config.text_hidden,
        # diffusers reads `attention_head_dim` as the number of heads per block (a legacy naming quirk)
        attention_head_dim=tuple(max(1, c // config.head_channels) for c in config.unet_channels),
        norm_num_groups=min(32, config.unet_channels[0]),
        # SDXL's text-time conditioning: the pooled text embedding and 6 time ids of XL_TIME_DIM each
        **({"addition_embed_type": "text_time", "addition_time_embed_dim": XL_TIME_DIM,
            "projection_class_embeddings_input_dim": 6 * XL_TIME_DIM + config.text_hidden} if xl else {}),
    )
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.text_hidden,
        intermediate_size=4 * config.text_hidden,
        # SDXL reads the penultimate layer: one more layer keeps the same depth of text features
        num_hidden_layers=config.text_layers + (1 if xl else 0),
        num_attention_heads=config.text_heads,
        max_position_embeddings=config.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=config.text_hidden,
    )
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=config.prediction_type,
    )
    if xl:
        from transformers import CLIPTextModelWithProjection

        text = SDXLText([tokenizer, tokenizer], [text_encoder, CLIPTextModelWithProjection(text_config)],
                        force_zeros_for_empty_prompt=True)
    else:
        text = SDText(tokenizer, text_encoder)
    return DiffusionModel(
        vae=codec, backbone=FAMILIES[config.arch].backbone(unet), text=text, scheduler_config=dict(scheduler.config),
        name=MODEL_NAMES[config.arch], defaults=SHAPES_DEFAULTS,
    )


XL_TIME_DIM = 8  # SDXL's per-id Fourier width is 256; the shapes world needs few


def _build_flux_model(config: TrainConfig, clip_tokenizer, t5_tokenizer) -> DiffusionModel:
    from ..conditioning import FluxText

    parts = build_flux_components(config, clip_tokenizer, t5_tokenizer)
    # T5's keys are max_sequence_length long: the T5 tokenizer's model_max_length (build_t5_tokenizer)
    text = FluxText([clip_tokenizer, t5_tokenizer], [parts["text_encoder"], parts["text_encoder_2"]])
    return DiffusionModel(
        vae=PatchCodec(patch_size=config.patch_size), backbone=FAMILIES["flux"].backbone(parts["transformer"]),
        text=text, scheduler_config=parts["scheduler"], name=MODEL_NAMES["flux"], defaults=SHAPES_FLUX_DEFAULTS)


def text_condition(model: DiffusionModel, ids: torch.Tensor, dropped: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The UNet's conditioning of a training batch, with gradients into the text encoders, as the model's text
    side builds it at inference (:meth:`~promptedit.conditioning.TextConditioner.encode_ids`; the recipe's
    encoders share one tokenizer): SD's last hidden states (B, L, D); SDXL's both encoders' penultimate states
    (B, L, 2D), pooled embedding and time ids, zeros for the captions dropped for classifier-free guidance
    (``dropped`` (B,) bool), as ``force_zeros_for_empty_prompt`` does at inference. Returns (hidden states,
    extra UNet kwargs)."""
    cond = model.text.encode_ids([ids] * len(model.text.encoders), size=(spec.CANVAS_SIZE, spec.CANVAS_SIZE))
    if model.family_entry.pooled:
        keep = (~dropped).to(cond.pooled.dtype)
        cond = dataclasses.replace(cond, embeddings=cond.embeddings * keep[:, None, None],
                                   pooled=cond.pooled * keep[:, None])
    kwargs = cond.unet_kwargs()
    return kwargs.pop("encoder_hidden_states"), kwargs


def init_sdxl_from_sd(model: DiffusionModel, sd: DiffusionModel) -> float:
    """Start an SDXL-architecture model from an SD-architecture one of the same recipe: every UNet weight whose
    shape agrees; the cross-attention keys and values reading the first encoder's half of the features, the
    other half at zero; the text-time embedding's last layer at zero (no effect at the start); both text
    encoders from the SD one, their extra last layer the identity (so the penultimate layer SDXL reads is the
    SD encoder's last, before its final layer norm).

    The SD UNet's keys and values read the encoder's output after that layer norm, LN(x) = γ ⊙ (x − μ)/σ + β,
    which the SDXL features lack: the norm's linear part is folded into the first half of every cross-attention
    key and value, W ↦ W diag(γ) (I − 11ᵀ/D) / σ̄ with σ̄ the tokens' mean σ over the recipe's captions (σ itself
    varies by token, so this is close, not exact), and W_v β into the output projection's bias (a constant key
    changes no softmax). On 6 batches of 32: Min-SNR v-loss 0.0043 for the SD model, 0.0187 for this start
    without the fold, 0.0064 with it. Returns σ̄."""
    source = {k: v.float() for k, v in sd.text_encoder.state_dict().items()}
    norm = getattr(sd.text_encoder, "text_model", sd.text_encoder).final_layer_norm
    gamma, beta = norm.weight.detach().float(), norm.bias.detach().float()  # (D,)
    dim = gamma.shape[0]
    for encoder in model.text.encoders:
        state = encoder.state_dict()
        prefix = "text_model." if any(k.startswith("text_model.") for k in state) else ""  # transformers 4 / 5
        layers = sorted({int(k.split("encoder.layers.")[1].split(".")[0]) for k in state if "encoder.layers." in k})
        state.update({prefix + k.removeprefix("text_model."): v for k, v in source.items()
                      if prefix + k.removeprefix("text_model.") in state
                      and state[prefix + k.removeprefix("text_model.")].shape == v.shape})
        last = f"{prefix}encoder.layers.{layers[-1]}"
        for name in (f"{last}.self_attn.out_proj", f"{last}.mlp.fc2"):
            state[f"{name}.weight"] = torch.zeros_like(state[f"{name}.weight"])
            state[f"{name}.bias"] = torch.zeros_like(state[f"{name}.bias"])
        encoder.load_state_dict(state)
    # σ̄: the mean over tokens of the features' standard deviation, as the layer norm computes it
    tokenizer = model.tokenizer
    ids = tokenizer(caption_corpus(n=500, seed=3), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids  # (N, L)
    with torch.no_grad():
        features = model.text.encoders[0](ids, output_hidden_states=True).hidden_states[-2]  # (N, L, D)
    sigma = (features.var(-1, unbiased=False) + norm.eps).sqrt().mean()
    fold = torch.diag(gamma) @ (torch.eye(dim) - torch.ones(dim, dim) / dim) / sigma  # (D, D)
    mine = model.unet.state_dict()
    theirs = {k: v.float() for k, v in sd.unet.state_dict().items()}
    widened = [k for k, v in theirs.items() if k in mine and mine[k].shape != v.shape
               and k.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))]  # (C, D) -> (C, 2D)
    mine.update({k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape})
    for k in widened:
        mine[k] = torch.cat([theirs[k] @ fold, torch.zeros_like(theirs[k])], dim=1)
        if k.endswith("to_v.weight"):  # W_v β, a constant value, into the (SD model's) output projection's bias
            out = k.removesuffix("to_v.weight") + "to_out.0."
            mine[out + "bias"] = mine[out + "bias"] + mine[out + "weight"] @ (theirs[k] @ beta)
    for k in ("add_embedding.linear_2.weight", "add_embedding.linear_2.bias"):
        mine[k] = torch.zeros_like(mine[k])
    model.unet.load_state_dict(mine)
    return float(sigma)


#: the embedded model's defaults (its promptedit.json): 20 steps at guidance 5; maps at the latent's own
#: resolution (its 16 × 16 latent is the 16 × 16 of SD's 64 × 64 at 1/4); real-image edits with 80 %
#: self-attention and the inversion's null in the source branch; local blends carried once along the
#: self-attention (whole objects at every size); instant masks unsmoothed, refined, one region
SHAPES_DEFAULTS = ModelDefaults(
    sampling=SamplingDefaults(num_inference_steps=20, guidance_scale=5.0),
    p2p=P2PDefaults(cross_replace=0.8, self_replace=0.4, self_replace_min_downsample=1, blend_downsample=1,
                    blend_propagation=1, attention_downsample=1),
    inversion=InversionDefaults(num_inference_steps=50, self_replace=0.8, edit_null="source"),
    masks=MaskDefaults(downsample=1, smooth_times=0, guided_filter_radius=2.0, region_peak=0.9))
#: the FLUX-architecture model's: the SD model's, its maps at the transformer's 2 × 2 token grid (4 px at codec
#: patch 2, the SD model's resolution), and the canvas's size (a FLUX transformer's config records none)
SHAPES_FLUX_DEFAULTS = dataclasses.replace(
    SHAPES_DEFAULTS, sampling=dataclasses.replace(SHAPES_DEFAULTS.sampling, image_size=spec.CANVAS_SIZE),
    p2p=dataclasses.replace(SHAPES_DEFAULTS.p2p, self_replace_min_downsample=2, blend_downsample=2,
                                             attention_downsample=2),
    masks=dataclasses.replace(SHAPES_DEFAULTS.masks, downsample=2))


def rendered_batch(config: TrainConfig, step: int) -> tuple[list[str], torch.Tensor, list[np.ndarray]]:
    """Captions, images [-1, 1] (B, 3, 64, 64) and the objects' masks (B arrays bool (n_objects, 64, 64)) of
    training batch ``step``: a pure function of the step, so any worker can render any batch."""
    start = step * config.batch_size
    captions, images, masks = [], [], []
    for caption, image, m in iter_samples(config.batch_size, seed=config.data_seed, start=start,
                                          p_two_objects=config.two_object_fraction):
        captions.append(caption)
        images.append(image)
        masks.append(m)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return captions, x, masks


def drop_captions(captions: list[str], p: float, rng: torch.Generator) -> list[str]:
    """Caption dropout for classifier-free guidance (Ho & Salimans 2022): each caption becomes "" with
    probability ``p``."""
    drop = torch.rand(len(captions), generator=rng) < p
    return ["" if d else c for c, d in zip(captions, drop.tolist())]


class _StepBatches(torch.utils.data.Dataset):
    """Batch ``start + i`` of the recipe's stream as item i (rendered in a DataLoader worker)."""

    def __init__(self, config: TrainConfig, start: int):
        self.config, self.start = config, start

    def __len__(self) -> int:
        return max(0, self.config.steps - self.start)

    def __getitem__(self, i: int):
        return rendered_batch(self.config, self.start + i)


def _as_is(item):
    return item


def _leave_interrupts_to_the_trainer(worker_id: int) -> None:
    """A rendering worker ignores Ctrl-C, which a terminal sends to the whole process group: the training process
    decides (it may finish its step and save), and ends the workers with the loader."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def rendered_batches(config: TrainConfig, start: int, workers: int = 0):
    """Yield :func:`rendered_batch` for steps ``start``, ``start + 1``, … up to ``config.steps``; with
    ``workers`` > 0 they are rendered ahead by that many processes (the same batches, in order)."""
    if workers <= 0:
        for step in range(start, config.steps):
            yield rendered_batch(config, step)
        return
    loader = torch.utils.data.DataLoader(_StepBatches(config, start), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=4, collate_fn=_as_is,
                                         worker_init_fn=_leave_interrupts_to_the_trainer)
    yield from loader


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float,
                    prediction_type: str = "epsilon") -> torch.Tensor:
    """Min-SNR-γ weighting (Hang et al. 2023): min(SNR_t, γ) / SNR_t for ε-prediction,
    min(SNR_t, γ) / (SNR_t + 1) for v-prediction."""
    a = alphas_cumprod[t]
    snr = a / (1 - a)
    return torch.clamp(snr, max=gamma) / (snr + 1 if prediction_type == "v_prediction" else snr)


class EMA:
    """Exponential moving average of parameters, with the usual warm-up of the decay."""

    def __init__(self, modules: list[torch.nn.Module], decay: float):
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)

    @torch.no_grad()
    def copy_to(self) -> None:
        """Put the EMA weights into the modules (at the end of training)."""
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)


def check_architecture(config: TrainConfig, model: DiffusionModel) -> None:
    """Raise ValueError, naming the component, unless ``model``'s UNet and text encoder have the parameter shapes
    that ``config`` builds (with the model's tokenizer), or when the model's family is neither the run's nor one
    the run's family trains from (``Family.trains_from``: an SDXL run may start from an SD model,
    :func:`init_sdxl_from_sd`; an SD run not from an SDXL one; a FLUX run from an SD model's CLIP text encoder,
    compared alone)."""
    if model.family != config.arch and model.family not in FAMILIES[config.arch].trains_from:
        raise ValueError(f"cannot start an {config.arch.upper()}-architecture run from {model.name}, an "
                         f"{model.family.upper()}-architecture model")
    if FAMILIES[config.arch].mmdit:  # from a FLUX model, every weight; from an SD one, its CLIP text encoder
        tokenizers = (model.text.components()["tokenizer"], model.tokenizer if model.family_entry.mmdit else
                      build_t5_tokenizer(config))
        with torch.device("meta"):
            fresh = build_model(config, tokenizers)
        pairs = [(fresh.text_encoder, model.text_encoder, "CLIP text encoder")]
        if model.family_entry.mmdit:
            pairs += [(fresh.unet, model.unet, "transformer"), (fresh.text.encoders[1], model.text.encoders[1],
                                                                "T5 encoder")]
    else:
        with torch.device("meta"):
            # a model of the other family is compared with that family's own UNet layout
            layout = {} if model.family == config.arch else {"mid_block": None, "up_attention": None}
            fresh = build_model(dataclasses.replace(config, arch=model.family, **layout), model.tokenizer)
        pairs = [(fresh.unet, model.unet, "UNet"), (fresh.text_encoder, model.text_encoder, "text encoder")]
    for mine, theirs, what in pairs:
        want = {k: tuple(v.shape) for k, v in mine.state_dict().items()}
        if want != {k: tuple(v.shape) for k, v in theirs.state_dict().items()}:
            raise ValueError(f"cannot start from {model.name}: its {what} does not have this recipe's architecture")


def keys_encoder(model: DiffusionModel) -> torch.nn.Module:
    """The text encoder whose outputs are the attention's text keys (the word-identity term's): T5 in a FLUX
    model, the (first) CLIP encoder in the others."""
    return model.text.encoders[1] if model.family_entry.mmdit else model.text_encoder


def special_token_ids(tokenizer) -> set[int]:
    """The ids of the tokenizer's start, end and padding tokens (T5 has no start token)."""
    return {i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}


def fit_identity_head(model: DiffusionModel, tokenizer, config: TrainConfig, iters: int = 300,
                      batch_size: int = 256) -> torch.Tensor:
    """The word-identity classifier (V, D) fitted to a frozen text encoder's outputs, for a run that starts from
    trained weights: a head started from the token embeddings would first pull the encoder's outputs towards
    them."""
    words = caption_corpus(n=4000, seed=config.seed + 7)
    special_ids = special_token_ids(tokenizer)
    text_encoder = keys_encoder(model)
    flux = FAMILIES[config.arch].mmdit
    device = next(text_encoder.parameters()).device
    head = torch.nn.Parameter(text_encoder.get_input_embeddings().weight.detach().clone())  # (V, D)
    opt = torch.optim.Adam([head], lr=1e-2)
    rng = np.random.default_rng(config.seed)
    for _ in range(iters):
        batch = [words[i] for i in rng.integers(0, len(words), batch_size)]
        ids = tokenizer(batch, padding="max_length", max_length=config.max_sequence_length if flux else
                        config.max_length, truncation=True, return_tensors="pt").input_ids.to(device)  # (B, L)
        with torch.no_grad():  # the features the backbone reads (and the identity term trains), first encoder's
            if flux:  # T5's last hidden states, the keys
                hidden = text_encoder(ids)[0]  # (B, L, D)
            else:
                hidden = text_condition(model, ids, torch.zeros(len(ids), dtype=torch.bool, device=device))[0]
                hidden = hidden[..., : config.text_hidden]  # (B, L, D)
        loss = token_identity_loss(hidden, ids, word_positions(ids, special_ids), head, config.identity_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return head.detach()


def read_checkpoint(path: Path) -> dict:
    """A run's checkpoint, as :func:`train` saves it; one line naming the file (ModelLoadError) for a truncated
    or otherwise unreadable one."""
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as e:  # torch.load's, by damage
        raise ModelLoadError(f"{path} cannot be read: truncated or damaged ({type(e).__name__}); put back a copy, or "
                             "start the run over (--fresh)") from None
    wanted = ("unet", "text_encoder", "optimizer", "ema", "rng", "step", "elapsed", "history")
    if not isinstance(state, dict) or any(k not in state for k in wanted) or not isinstance(state["step"], int):
        raise ModelLoadError(f"{path} is not a checkpoint of this recipe; start the run over (--fresh)")
    return state


def learning_rate(config: TrainConfig, step: int, elapsed: float) -> float:
    """Linear warm-up, then cosine decay over the steps or the time budget (``elapsed`` seconds of it spent),
    whichever ends first."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    p = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    if config.max_minutes:
        p = max(p, elapsed / 60 / config.max_minutes)
    p = min(p, 1.0)
    return config.lr * (config.min_lr_fraction + (1 - config.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * p)))


def _open_checkpoint(config: TrainConfig, ckpt_path: Path, resume: bool, init_from: DiffusionModel | None
                     ) -> tuple[dict | None, DiffusionModel | None]:
    """(the checkpoint to resume or None, the model to start from or None); refusals before anything is written."""
    resuming = resume and ckpt_path.exists()
    start_from = None if resuming else init_from  # a checkpoint to resume wins over the model to start from
    if start_from is not None:
        check_architecture(config, start_from)
    state = read_checkpoint(ckpt_path) if resuming else None
    if state is not None and state["step"] > config.steps:
        raise ParameterError(f"{ckpt_path} is at step {state['step']}, past the {config.steps} steps asked for: a "
                             f"run cannot be shortened; ask for {state['step']} steps or more, or start over (--fresh)")
    return state, start_from


def _run_tokenizer(config: TrainConfig, out: Path, start_from: DiffusionModel | None):
    """The starting model's tokenizer, else the one an earlier run left in ``out``, else a new one; saved in
    ``out`` unless it came from there."""
    if start_from is not None:  # its weights need its tokenizer, whatever an earlier run left in ``out``
        tokenizer = start_from.text.components()["tokenizer"]  # the (first) CLIP tokenizer
        tokenizer.save_pretrained(out / "tokenizer")
    elif (out / "tokenizer").is_dir():  # a resumed run keeps the tokenizer it started with
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer")
    else:
        tokenizer = build_tokenizer(config)
        tokenizer.save_pretrained(out / "tokenizer")
    if not FAMILIES[config.arch].mmdit:
        return tokenizer
    # the T5 tokenizer of a FLUX run, the attention's keys: the starting FLUX model's, else the run's own
    if start_from is not None and start_from.family_entry.mmdit:
        t5_tokenizer = start_from.tokenizer
    elif (out / "tokenizer_2").is_dir():
        from transformers import T5TokenizerFast

        return tokenizer, T5TokenizerFast.from_pretrained(out / "tokenizer_2")
    else:
        t5_tokenizer = build_t5_tokenizer(config)
    t5_tokenizer.save_pretrained(out / "tokenizer_2")
    return tokenizer, t5_tokenizer


def _start_model(config: TrainConfig, tokenizer, start_from: DiffusionModel | None, device: torch.device,
                 log) -> DiffusionModel:
    """The run's model on ``device`` in training mode, with ``start_from``'s weights when given (where the
    shapes agree, for an SDXL run from an SD model; only the CLIP text encoder, for a FLUX run from one)."""
    model = build_model(config, tokenizer)
    encoders = list(model.text.encoders)
    if start_from is not None and FAMILIES[config.arch].mmdit and not start_from.family_entry.mmdit:
        model.text_encoder.load_state_dict({k: v.float() for k, v in start_from.text_encoder.state_dict().items()})
        log(f"starting the CLIP text encoder (the pooled vector) from {start_from.name}'s")
    elif start_from is not None and start_from.family == model.family:
        model.unet.load_state_dict({k: v.float() for k, v in start_from.unet.state_dict().items()})
        for mine, theirs in zip(encoders, start_from.text.encoders):
            mine.load_state_dict({k: v.float() for k, v in theirs.state_dict().items()})
        log(f"starting from {start_from.name}'s weights")
    elif start_from is not None:
        init_sdxl_from_sd(model, start_from)
        log(f"starting from {start_from.name}'s weights where the SDXL architecture's shapes agree")
    for m in (model.unet, *encoders, model.vae):
        m.to(device)
    model.unet.train()
    for e in encoders:
        e.train()
    return model


#: The loss terms a run averages over each window of 25 steps, in the order its history records them.
LOSS_TERMS = ("loss", "grounding", "word_mass", "identity")


@dataclass
class _TrainingRun:
    """A training run between steps: its model, optimisers, EMA and random stream, and what its checkpoint holds."""

    config: TrainConfig
    model: DiffusionModel
    opt: torch.optim.Optimizer
    ema: EMA
    rng: torch.Generator
    identity_head: torch.nn.Parameter  # (V, D)
    identity_opt: torch.optim.Optimizer
    step: int = 0
    elapsed: float = 0.0
    history: list = dataclasses.field(default_factory=list)

    @property
    def encoders(self) -> list[torch.nn.Module]:
        return list(self.model.text.encoders)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for m in (self.model.unet, *self.encoders) for p in m.parameters()]

    def save(self, ckpt_path: Path) -> None:
        encoders = self.encoders
        state = {
            "unet": self.model.unet.state_dict(), "text_encoder": self.model.text_encoder.state_dict(),
            "optimizer": self.opt.state_dict(),
            **({"text_encoder_2": encoders[1].state_dict()} if len(encoders) > 1 else {}),
            "ema": self.ema.shadow, "rng": self.rng.get_state(), "step": self.step, "elapsed": self.elapsed,
            "history": self.history, "identity_head": self.identity_head.detach().clone(),
            "identity_optimizer": self.identity_opt.state_dict(), "config": dataclasses.asdict(self.config),
        }
        write_with(ckpt_path, lambda f: torch.save(state, f))


def _make_run(config: TrainConfig, model: DiffusionModel, device: torch.device, state: dict | None,
              ckpt_path: Path, start_from: DiffusionModel | None, log) -> _TrainingRun:
    """The optimisers, EMA and random stream of a new run, or of the checkpoint ``state`` resumed."""
    unet, text_encoder, encoders = model.unet, model.text_encoder, list(model.text.encoders)
    params = [p for m in (unet, *encoders) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.99))
    ema = EMA([unet, *encoders], config.ema_decay)
    rng = torch.Generator().manual_seed(config.seed + 1)
    step, elapsed, history = 0, 0.0, []
    if state is not None:
        try:  # a checkpoint of another architecture (a config.json replaced) fails here
            unet.load_state_dict(state["unet"])
            text_encoder.load_state_dict(state["text_encoder"])
            if len(encoders) > 1:
                encoders[1].load_state_dict(state["text_encoder_2"])
            opt.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise ModelLoadError(f"{ckpt_path} does not fit its run's config.json ({type(e).__name__}); start the "
                                 "run over (--fresh)") from None
        ema.shadow = [s.to(device) for s in state["ema"]]
        rng.set_state(state["rng"])
        step, elapsed, history = state["step"], state["elapsed"], state["history"]
        log(f"resumed from step {step} ({elapsed / 60:.1f} min trained)")
    # the word-identity classifier (train/words.py): trained beside the model, not exported; it starts from
    # the token embeddings (one direction per word) and has its own optimiser, so that checkpoints of runs
    # without it resume unchanged
    identity_head = torch.nn.Parameter(keys_encoder(model).get_input_embeddings().weight.detach().clone())  # (V, D)
    identity_opt = torch.optim.AdamW([identity_head], lr=config.lr, weight_decay=0.0, betas=(0.9, 0.99))
    if state is not None and "identity_head" in state:
        identity_head.data.copy_(state["identity_head"])
        identity_opt.load_state_dict(state["identity_optimizer"])
    elif start_from is not None and start_from.family == model.family and config.identity_weight > 0:
        identity_head.data.copy_(fit_identity_head(model, model.tokenizer, config))
    return _TrainingRun(config, model, opt, ema, rng, identity_head, identity_opt, step, elapsed, history)


def _step_losses(run: _TrainingRun, batch, noise_scheduler, alphas_cumprod: torch.Tensor, recorder: GroundingRecorder,
                 grounding: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one batch (rendered images, captions with dropout, noise and timesteps drawn on the CPU) and
    its terms by :data:`LOSS_TERMS` name ("loss": the weighted denoising loss)."""
    config, model = run.config, run.model
    device = model.device
    captions, x, masks = batch
    captions = drop_captions(captions, config.caption_dropout, run.rng)
    dropped = torch.tensor([c == "" for c in captions], device=device)
    flux = FAMILIES[config.arch].mmdit
    tokenizer = model.tokenizer  # the attention's keys' (T5's in a FLUX model)
    ids = tokenizer(captions, padding="max_length", max_length=config.max_sequence_length if flux else
                    config.max_length, truncation=True, return_tensors="pt").input_ids.to(device)  # (B, L)
    codec = model.vae
    with torch.no_grad():
        z0 = codec.encode(x.to(device)).latent_dist.mean * codec.config.scaling_factor  # (B, C, h, w)
    recorder.begin(num_steps=1, latent_size=tuple(z0.shape[-2:]), n_prompts=z0.shape[0])
    recorder.begin_step(0)
    if flux:  # rectified flow (train/flow.py); the pooled vector from CLIP's ids of the same captions
        clip_ids = model.text.components()["tokenizer"](captions, padding="max_length", max_length=config.max_length,
                                                         truncation=True, return_tensors="pt").input_ids  # (B, L_clip)
        d_loss, hidden, signal = flow_loss(model, z0, [clip_ids.to(device), ids], run.rng, config)
        words_hidden = hidden  # (B, L, D): T5's, the keys
    else:
        noise = torch.randn(z0.shape, generator=run.rng).to(device)
        t = torch.randint(0, config.num_train_timesteps, (z0.shape[0],), generator=run.rng).to(device)
        zt = noise_scheduler.add_noise(z0, noise, t)
        hidden, added = text_condition(model, ids, dropped)  # (B, L, D or 2D)
        pred = model.unet(zt, t, encoder_hidden_states=hidden, **added).sample
        target = noise_scheduler.get_velocity(z0, noise, t) if config.prediction_type == "v_prediction" else noise
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        d_loss = (per_sample * min_snr_weights(alphas_cumprod, t, config.min_snr_gamma, config.prediction_type)).mean()
        signal = alphas_cumprod[t] ** 0.5  # √ᾱ_t: layout is unknowable from pure noise
        words_hidden = hidden[..., : config.text_hidden]  # the (first) encoder's features of each token
    loss, terms = d_loss, {"loss": d_loss}
    if grounding:
        # word i of a caption is token i + 1 after CLIP's start token, token i in T5's (no start token)
        regions, grounded = grounding_targets(captions, masks, ids.shape[1], first=0 if flux else 1)
        regions, grounded = regions.to(device), grounded.to(device)
        if config.grounding_weight > 0:
            terms["grounding"] = token_grounding_loss(recorder.maps, regions, grounded, signal)
            loss = loss + config.grounding_weight * terms["grounding"]
        if config.word_mass_weight > 0:
            terms["word_mass"] = word_mass_loss(recorder.maps, regions, grounded, signal, floor=config.word_mass_floor)
            loss = loss + config.word_mass_weight * terms["word_mass"]
    if config.identity_weight > 0:
        terms["identity"] = token_identity_loss(words_hidden, ids, word_positions(ids, special_token_ids(tokenizer)),
                                                run.identity_head, config.identity_temperature)
        loss = loss + config.identity_weight * terms["identity"]
    return loss, terms


def _log_window(run: _TrainingRun, windows: dict[str, list[float]], bar) -> None:
    """Append the means of the last window of steps to the run's history and the progress bar; empty the window."""
    entry = {"step": run.step, "loss": float(np.mean(windows["loss"])), "minutes": run.elapsed / 60}
    entry.update({k: float(np.mean(windows[k])) for k in LOSS_TERMS[1:] if windows[k]})
    run.history.append(entry)
    lr = learning_rate(run.config, run.step, run.elapsed)
    bar.set_postfix(loss=f"{np.mean(windows['loss']):.4f}", lr=f"{lr:.1e}",
                    **{k: f"{np.mean(windows[k]):.3f}" for k in LOSS_TERMS[1:] if windows[k]})
    for w in windows.values():
        w.clear()


def _finish(run: _TrainingRun) -> DiffusionModel:
    """The model with its EMA weights, on the CPU, frozen, named and with its training record."""
    model, config = run.model, run.config
    run.ema.copy_to()
    model.to("cpu")
    model.unet.eval()
    for e in run.encoders:
        e.eval()
    for m in (model.unet, *run.encoders, model.vae):
        m.requires_grad_(False)
    model.name = MODEL_NAMES[config.arch]
    model.training_info = {"steps": run.step, "minutes": run.elapsed / 60, "history": run.history,
                           "config": dataclasses.asdict(config)}  # type: ignore[attr-defined]
    return model


def train(config: TrainConfig, out: str | os.PathLike, *, resume: bool = True, progress: bool = True,
          log=print, device: str | torch.device = "cpu", workers: int = 0,
          init_from: DiffusionModel | None = None, stop: Callable[[], bool] | None = None) -> DiffusionModel:
    """Train (or resume) in ``out`` on ``device``, rendering batches ahead in ``workers`` processes (0: in this
    one); returns the model with EMA weights on the CPU, ready to export. The random stream (caption dropout,
    noise, timesteps) is drawn on the CPU, so a run is the same on any device up to floating-point order.

    ``init_from``: a model of this recipe's architecture (an exported run, e.g. the embedded model) whose text
    encoder, UNet and tokenizer a new run starts from, with a fresh optimiser and its EMA started at those
    weights (fine-tuning). Ignored when ``out`` holds a checkpoint to resume.

    ``stop``: a function asked at every step boundary; when it answers True the run stops there, saves its
    checkpoint and returns (a front-end's Ctrl-C). A resumed run trains up to ``config.steps``; a checkpoint
    already past them is refused (a run cannot be shortened), as is one that cannot be read, before anything is
    written."""
    device = torch.device(device)
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    state, start_from = _open_checkpoint(config, ckpt_path, resume, init_from)
    out.mkdir(parents=True, exist_ok=True)
    model = _start_model(config, _run_tokenizer(config, out, start_from), start_from, device, log)
    noise_scheduler = alphas_cumprod = None  # a FLUX run's noise levels are train/flow.py's
    if not FAMILIES[config.arch].mmdit:
        from diffusers import DDPMScheduler

        noise_scheduler = DDPMScheduler.from_config(model.scheduler_config)
        alphas_cumprod = noise_scheduler.alphas_cumprod.to(device)
    run = _make_run(config, model, device, state, ckpt_path, start_from, log)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    recorder = GroundingRecorder()
    hooks = contextlib.ExitStack()
    grounding = config.grounding_weight > 0 or config.word_mass_weight > 0
    if grounding:
        hooks.enter_context(model.backbone.attach(recorder))
    bar = tqdm(total=config.steps, initial=run.step, desc="training", disable=not progress, smoothing=0.05)
    windows: dict[str, list[float]] = {k: [] for k in LOSS_TERMS}
    t_last = time.perf_counter()
    batches = rendered_batches(config, run.step, workers)
    params = run.params
    while run.step < config.steps:
        if stop is not None and stop():
            break
        if config.max_minutes is not None and run.elapsed / 60 >= config.max_minutes:
            log(f"time budget of {config.max_minutes} min reached at step {run.step}")
            break
        for g in (*run.opt.param_groups, *run.identity_opt.param_groups):
            g["lr"] = learning_rate(config, run.step, run.elapsed)
        loss, terms = _step_losses(run, next(batches), noise_scheduler, alphas_cumprod, recorder, grounding)
        run.opt.zero_grad(set_to_none=True)
        run.identity_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        run.opt.step()
        if config.identity_weight > 0:
            run.identity_opt.step()
        run.ema.update(run.step)
        run.step += 1
        now = time.perf_counter()
        run.elapsed += now - t_last
        t_last = now
        for k, term in terms.items():
            windows[k].append(term.item())
        bar.update(1)
        if run.step % 25 == 0:
            _log_window(run, windows, bar)
        if run.step % config.checkpoint_every == 0 or run.step == config.steps:
            run.save(ckpt_path)
    bar.close()
    hooks.close()
    batches.close()
    run.save(ckpt_path)
    return _finish(run)
