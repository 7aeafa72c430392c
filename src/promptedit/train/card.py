"""The embedded model's card (MODEL_CARD.md), written from the training record and the benchmark."""

from __future__ import annotations

import platform


def word_mass_bullet(config: dict) -> str:
    """The card's line on the word-mass term (empty when the run did not use it)."""
    w = config.get("word_mass_weight", 0.0)
    if not w:
        return ""
    return f"""- Word mass (`grounding.word_mass_loss`, ours), weight {w}, floor {config.get("word_mass_floor", 0.5)}: at every pixel the
  words that describe it are asked to carry at least that fraction of its cross-attention. L_token normalises
  each map and is blind to mass; before this term the model read every object from the padding tokens (which a
  causal text encoder fills with the whole caption: 60–80 % of an object pixel's attention, 0.1 % on the
  object's own words), so editing a word's map changed almost nothing.
"""


def identity_bullet(config: dict) -> str:
    """The card's line on the word-identity term (empty when the run did not use it)."""
    w = config.get("identity_weight", 0.0)
    if not w:
        return ""
    return f"""- Word identity (`words.token_identity_loss`, ours), weight {w}, temperature {config.get("identity_temperature", 10.0)}:
  a cosine classifier over the vocabulary asks the text encoder's output at every word to name that word
  (the classifier is trained alongside and not shipped). Without it the encoder trained with the denoiser
  had nearly merged the shape words (circle → square moved the output at the shape word by 7 %, a colour
  change by 90–150 %), and generated shapes followed the seed rather than the word.
"""


def model_card(*, config: dict, steps: int, minutes: float, params: dict, command: str, bench_md: str,
               final_loss: float | None, hardware: str | None = None, history_md: str = "",
               shortfalls_md: str = "") -> str:
    """MODEL_CARD.md. ``history_md``: bullets on how the run went (sittings, loss curve);
    ``shortfalls_md``: the "Known shortfalls" section's body (omitted when empty)."""
    hardware = hardware or f"{platform.machine()} CPU, 2 cores, no GPU"
    unet = config["unet_channels"]
    return f"""# promptedit shapes-world model

The default model of every promptedit command: a small text-to-image model with Stable Diffusion's
structure, trained by the project on the shapes world (`docs/shapes-world.md`, a copy of the project's normative specification), so that everything runs
offline on a CPU in seconds and every editing method can be measured against exact ground truth.

## Architecture ({sum(params.values()) / 1e6:.2f} M parameters)
| component | what | parameters |
| --- | --- | --- |
| codec (`vae/`) | `promptedit.codec.PatchCodec`: exact space-to-depth of 4×4 pixel patches, 64×64×3 ↔ 16×16×48; lossless (reconstruction PSNR ∞ up to float rounding) | 0 trained |
| text encoder | `CLIPTextModel`, {config["text_layers"]} layers, width {config["text_hidden"]}, {config["text_heads"]} heads, {config["max_length"]} positions, trained from scratch with the denoiser | {params["text_encoder"] / 1e6:.2f} M |
| tokenizer | CLIP-style byte-level BPE built from the world's captions; every word of the specification is one token; `<|startoftext|>` / `<|endoftext|>` as CLIP | — |
| UNet | `UNet2DConditionModel`, channels {tuple(unet)}, {config["layers_per_block"]} layers per block, cross-attention at 16×16, 8×8 and 4×4 | {params["unet"] / 1e6:.2f} M |
| scheduler | DDIM over a 1000-step linear β schedule ({config["beta_start"]} → {config["beta_end"]}), {"v-prediction" if config.get("prediction_type") == "v_prediction" else "ε-prediction"} | — |

## Training
- Command: `{command}`
- Seed {config["seed"]}, data seed {config["data_seed"]} (scenes rendered on the fly; benchmarks use held-out seeds).
- {steps} steps of batch {config["batch_size"]} ({steps * config["batch_size"]:,} images) in {minutes:.1f} minutes on {hardware}.
- AdamW, lr {config["lr"]} with {config["warmup_steps"]} warm-up steps and cosine decay (over the steps or the time
  budget, whichever ends first), weight decay {config["weight_decay"]}, gradient clip {config["grad_clip"]};
  Min-SNR-γ weighting (γ = {config["min_snr_gamma"]}); caption dropout {config["caption_dropout"]} for classifier-free
  guidance; EMA of the weights (decay {config["ema_decay"]}) is what ships.
- Token grounding (`promptedit/train/grounding.py`, after TokenCompose's L_token, Wang et al. 2024), weight
  {config.get("grounding_weight", 0.0)}: each object word's cross-attention (size, texture, colour, shape) is asked to fall
  inside its object's mask, the background words' inside the background, from the renderer's exact masks,
  weighted by √ᾱ_t. Without it a model this small learns near-uniform cross-attention (every word's map had
  cosine ≥ 0.98 with every other), and attention-based editing has no layout to inject and no mask to read.
{word_mass_bullet(config)}{identity_bullet(config)}- Final training loss (weighted, last 25 steps): {final_loss if final_loss is None else f"{final_loss:.4f}"}.
{history_md.rstrip()}

{"## Known shortfalls (read before trusting a figure)" + chr(10) + shortfalls_md.rstrip() + chr(10) if shortfalls_md else ""}
## Recommended sampling
20 DDIM steps, guidance 5.0 (`promptedit.json` in the model folder sets these as defaults, with attention maps and
local blending at the full 16×16 latent resolution, and self-attention injected at every resolution, 16×16
included: on a 10-edit probe of colour swaps that raised the mask IoU from 0.64 to 0.70). Real images are inverted
with 50 steps (`inversion_steps`, the paper's): DDIM inversion's own ceiling at w = 1 is 22 dB at 20 steps, 29 dB at 50.
Edits of an inversion inject self-attention for the first 80 % of the steps (`inversion_self_replace`): on colour
swaps of rendered images drawn apart from the benchmark's, that raised the PSNR outside the object from 22.3 to
26.9 dB with null-text inversion (n = 4) and from 29.3 to 31.9 dB with direct inversion (n = 10), the new colour
as often right. They give the inversion's null embeddings to the source branch only (`inversion_edit_null`
`source`; ours, the papers give them to every branch): the edited branches take the empty prompt's null, as direct
inversion's do. The inverted null describes the source image and pulled the edits back towards it: on 16 colour
swaps of rendered images drawn apart from the benchmark's, the new colour was right 11 → 16 times with null-text
inversion (PSNR outside the object 28.0 → 31.0 dB; without local blending 11 → 16 times, 23.9 → 26.7 dB) and 9 → 16
times with negative-prompt inversion (24.8 → 28.7 dB). Edits of generated images keep the paper's 40 % (`self_replace`; `--self-replace` per edit): a
longer window keeps a colour swap's mask better but lets shape and background swaps take less often (on the
benchmark's sections run over other captions, 40 / 50 / 60 / 80 % gave colour-swap mask IoU 0.78 / 0.83 / 0.85 /
0.87, new shape 1.00 / 1.00 / 0.90 / 0.35, object colour kept by background swaps 0.95 / 0.95 / 0.80 / 0.75; on the
benchmark's own captions 50 % moved colour-swap IoU 0.82 → 0.84, background-swap IoU 0.80 → 0.77 and added-word
box IoU 0.76 → 0.75: no gain beyond the noise of n = 20).
Instant masks skip the authors' Gaussian smoothing (`mask_smooth_times` 0; φ stays their 0.2): this model's maps
are trained to fall inside their objects, and smoothing bloats them (mask IoU 0.44 with it, 0.68 without, on the
benchmark's scenes). Their final mask is refined by a guided filter with the image as guide, radius 2 map cells
(`mask_refine_radius`; ours, the paper has none): its edges move from the 16 × 16 cells onto the image's, and the
benchmark's mask IoU rises from 0.68 to 0.91 (n = 50; no refinement / radius 1 / 1.5 / 2 / 3 / 4 cells gave 0.69 / 0.86 / 0.89 / 0.89 / 0.90 / 0.89 on 24
scenes apart from the benchmark's; the world's flat colours make its edges easy to follow). Of the refined mask,
only the regions whose peak reaches 0.9 of the strongest region's are kept (`mask_region_peak`; ours): on 72 scenes
of three streams apart from the benchmark's, that raised the PSNR outside the object by 2.5–3.7 dB per stream (of
the 11 masks there that spanned both objects, 6 were cut to the right one, 5 to the wrong one).

## What it knows and does not know
It knows only the shapes world: 8 object colours, 5 shapes, 3 backgrounds, sizes, stripes and dots, the sketch /
pixel-art / blurry styles and night, one or two objects. Any other word is unknown to it (its tokenizer splits
it into pieces it never saw). Layout is never described by captions: it comes from the noise.

## Measured scores (`promptedit bench world`, held-out seeds)
{bench_md}
"""
