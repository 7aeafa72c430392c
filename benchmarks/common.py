"""Shared pieces of the benchmark scripts: models, timing, tables.

Models: ``tiny``, ``tiny-xl`` and ``tiny-flux`` (random weights, 32 px, SD's, SDXL's and FLUX.1's architectures in
miniature), ``sd15-random`` and ``sdxl-random`` (random weights with the full Stable Diffusion 1.5 or XL base
architecture, built from its configuration in code: no download), ``flux-random`` (FLUX.1-dev's blocks at full
width, reduced depth), ``embedded`` or ``embedded-xl`` (the shipped shapes-world
models, SD's and SDXL's architecture), or a
diffusers folder.
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import time
from collections.abc import Callable

import torch


def sd15_random(seed: int = 0):
    """Random weights, SD 1.5's architecture (UNet 860 M, CLIP ViT-L/14 text encoder, KL VAE f=8)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from promptedit.backbones.unet import UNetBackbone
    from promptedit.conditioning import SDText
    from promptedit.models import DiffusionModel
    from promptedit.testing import TINY_CORPUS
    from promptedit.text.vocab import build_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # SD 1.5's config
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                        sample_size=512, scaling_factor=0.18215)
    tokenizer = build_clip_tokenizer(TINY_CORPUS * 4, vocab_size=1000)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    for m in (unet, vae, text):
        m.eval().requires_grad_(False)
    return DiffusionModel(vae=vae, backbone=UNetBackbone(unet), text=SDText(tokenizer, text),
                          scheduler_config=dict(sched.config),
                          name="sd15-random")


def sdxl_random(seed: int = 0):
    """Random weights, Stable Diffusion XL base's architecture (UNet 2.6 B with text-time conditioning, CLIP
    ViT-L/14 and OpenCLIP ViT-bigG/14 text encoders, KL VAE f=8 with force_upcast), built from its
    configuration in code: no download. Timings need the shapes, not the weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from promptedit.backbones.unet import UNetBackbone
    from promptedit.conditioning import SDXLText
    from promptedit.models import DiffusionModel
    from promptedit.testing import TINY_CORPUS
    from promptedit.text.vocab import build_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(  # SDXL base 1.0's unet/config.json
        sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                        sample_size=1024, scaling_factor=0.13025, force_upcast=True)
    tokenizers = [build_clip_tokenizer(TINY_CORPUS * 4, vocab_size=1000) for _ in range(2)]
    encoders = []
    for cls, hidden, layers, heads, inter in ((CLIPTextModel, 768, 12, 12, 3072),
                                              (CLIPTextModelWithProjection, 1280, 32, 20, 5120)):
        tok = tokenizers[len(encoders)]
        encoders.append(cls(CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter,
                                           num_hidden_layers=layers, num_attention_heads=heads,
                                           max_position_embeddings=77, projection_dim=hidden if layers == 32 else 768,
                                           hidden_act="gelu", bos_token_id=tok.bos_token_id,
                                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    for m in (unet, vae, *encoders):
        m.eval().requires_grad_(False)
    return DiffusionModel(vae=vae, backbone=UNetBackbone(unet), text=SDXLText(tokenizers, encoders),
                          scheduler_config=dict(sched.config),
                          name="sdxl-random")


def flux_random(seed: int = 0, *, double: int = 1, single: int = 2, max_sequence_length: int = 256):
    """Random weights, FLUX.1-dev's architecture at reduced depth (``double`` double-stream and ``single``
    single-stream blocks of FLUX.1's 19 + 38; each block at full width: 24 heads of 128, RoPE axes 16 + 56 + 56,
    guidance embedding), its VAE (16 latent channels, f = 8), CLIP ViT-L/14 (pooled) and a one-layer T5 of T5-XXL's
    width (4096) for the keys, T5 padded to ``max_sequence_length``; built in code, no download. Timings need the
    shapes, not the weights."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from promptedit.backbones.mmdit import FluxBackbone
    from promptedit.conditioning import FluxText
    from promptedit.models import DiffusionModel
    from promptedit.testing import TINY_CORPUS
    from promptedit.text.vocab import build_clip_tokenizer, build_t5_tokenizer

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(num_layers=double, num_single_layers=single, guidance_embeds=True)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=16, layers_per_block=2,
                        sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
                        use_post_quant_conv=False)
    clip_tok = build_clip_tokenizer(TINY_CORPUS * 4, vocab_size=1000)
    t5_tok = build_t5_tokenizer(TINY_CORPUS * 4, vocab_size=1000, model_max_length=max_sequence_length)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
                                        pad_token_id=clip_tok.pad_token_id))
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=4096, d_kv=64, d_ff=10240, num_layers=1,
                                 num_heads=64, feed_forward_proj="gated-gelu", pad_token_id=t5_tok.pad_token_id,
                                 eos_token_id=t5_tok.eos_token_id, decoder_start_token_id=t5_tok.pad_token_id))
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                            base_image_seq_len=256, max_image_seq_len=4096)
    for m in (transformer, vae, clip, t5):
        m.eval().requires_grad_(False)
    from promptedit.defaults import ModelDefaults
    from promptedit.families import FAMILIES

    backbone = FluxBackbone(transformer)
    defaults = ModelDefaults.from_dict(FAMILIES["flux"].defaults(backbone))  # a FLUX.1-dev folder's, as loaded
    return DiffusionModel(vae=vae, backbone=backbone, text=FluxText([clip_tok, t5_tok], [clip, t5]),
                          scheduler_config=dict(sched.config), name=f"flux-random-{double}+{single}",
                          defaults=defaults.replace("sampling", image_size=1024))


def arg_parser(doc: str, *, images: int | None = 2, repeats: int = 3):
    """The options every benchmark takes: --model, --steps, --repeats, --device, --fp16, --json (and --images)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny",
                    help="tiny, tiny-xl, tiny-flux, sd15-random, sdxl-random, flux-random (FLUX.1-dev's blocks at "
                         "reduced depth), embedded, embedded-xl or a diffusers folder")
    if images is not None:
        ap.add_argument("--images", type=int, default=images)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    return ap


def get_model(name: str, device: str | None = None, fp16: bool = False):
    if name == "tiny":
        from promptedit.testing import tiny_components

        model = tiny_components(0)
    elif name == "tiny-xl":
        from promptedit.testing import tiny_sdxl_components

        model = tiny_sdxl_components(0)
    elif name == "tiny-flux":
        from promptedit.testing import tiny_flux_model

        model = tiny_flux_model(0)
    elif name == "flux-random":
        model = flux_random()
    elif name == "sd15-random":
        model = sd15_random()
    elif name == "sdxl-random":
        model = sdxl_random()
    else:
        from promptedit.models import load_model
        from promptedit.families import resolve_model

        return load_model(resolve_model(name), device=device,
                          dtype=torch.float16 if fp16 else None)
    if device or fp16:
        model.to(device or model.device, torch.float16 if fp16 else None)
    return model


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _proc_status() -> dict[str, int] | None:
    """Resident and peak-resident bytes of this process (Linux /proc), or None elsewhere."""
    try:
        text = open("/proc/self/status").read()
    except OSError:
        return None
    found = dict(re.findall(r"(VmHWM|VmRSS):\s+(\d+) kB", text))
    return {k: int(v) * 1024 for k, v in found.items()} if len(found) == 2 else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def time_cases(cases: dict[str, Callable[[], object]], repeats: int, device) -> tuple[dict, dict]:
    """Median seconds per case (interleaved runs after one warm-up each) and peak memory per case: on CUDA
    the allocator's peak; on a Linux CPU the growth of the peak resident set over the resident set at the
    start of the run (the kernel's mark reset before each run), i.e. what the case itself needed."""
    times = {k: [] for k in cases}
    peaks = {k: 0 for k in cases}
    cuda = torch.device(device).type == "cuda"
    for fn in cases.values():
        fn()
    for _ in range(repeats):
        for name, fn in cases.items():
            rss = None
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            elif _reset_peak_rss():
                rss = _proc_status()
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
            if cuda:
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated())
            elif rss is not None:
                after = _proc_status()
                peaks[name] = max(peaks[name], after["VmHWM"] - rss["VmRSS"])
    return {k: statistics.median(v) for k, v in times.items()}, peaks


def print_table(title: str, medians: dict, peaks: dict, base: str, extra: dict | None = None) -> list[dict]:
    """Print seconds, ratio to ``base``, peak memory and any extra columns; returns the rows."""
    extra = extra or {}
    cols = sorted({c for v in extra.values() for c in v})
    print(title)
    print(f"{'case':28s} {'seconds':>9s} {'ratio':>7s} {'peak MiB':>9s} {'mem ratio':>9s}"
          + "".join(f" {c:>12s}" for c in cols))
    rows = []
    for name, med in medians.items():
        ratio = med / medians[base]
        pm = peaks.get(name, 0)
        mem = f"{pm / 2**20:9.1f} {pm / max(peaks.get(base, 0), 1):9.2f}" if pm else f"{'-':>9s} {'-':>9s}"
        ex = extra.get(name, {})
        print(f"{name:28s} {med:9.3f} {ratio:7.2f} {mem}" + "".join(
            f" {ex[c]:12.3f}" if isinstance(ex.get(c), float) else f" {str(ex.get(c, '-')):>12s}" for c in cols))
        rows.append({"case": name, "seconds": med, "ratio": ratio, "peak_mib": pm / 2**20 if pm else None, **ex})
    return rows


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def dump(path: str | None, payload: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(payload, f, indent=2)
