"""Time a Prompt-to-Prompt edit against plain generation of the same prompts, side by side.

Runs, interleaved and on the same model, steps and prompts:
  * plain: diffusers' own StableDiffusionPipeline on [source, target] in one batch;
  * loop: promptedit's denoising loop with no controller (same batch);
  * one row per edit kind (replace, refine, reweight, replace + local blend).
Prints median seconds over --repeats runs after a warm-up, ratios against `plain`,
and peak memory (CUDA only; on CPU peak RSS growth is not separable per run).

    python benchmarks/p2p.py --model tiny --steps 10
    python benchmarks/p2p.py --model PATH --steps 50 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from promptedit.editing import EditSpec, build_controller, run_prompts
from common import get_model  # noqa: E402

SRC = "a red circle on a white background"
EDITS = {
    "replace": EditSpec(SRC, ("a blue circle on a white background",), mode="replace"),
    "refine": EditSpec(SRC, ("a striped red circle on a white background",), mode="refine"),
    "reweight": EditSpec(SRC, (SRC,), mode="reweight", reweight={"red": 2.0}),
    "replace+blend": EditSpec(SRC, ("a blue circle on a white background",), mode="replace",
                              blend_words=("circle",)),
}


def diffusers_pipeline(model):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
        scheduler=model.make_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync(model):
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="'tiny' (random weights) or a diffusers folder")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)

    model = get_model(args.model)
    size = args.size or model.image_size
    pipe = diffusers_pipeline(model)
    prompts = [SRC, EDITS["replace"].targets[0]]

    def plain():
        pipe(prompts, num_inference_steps=args.steps, guidance_scale=7.5, height=size, width=size,
             generator=torch.Generator("cpu").manual_seed(0), output_type="np")

    def loop():
        run_prompts(model, prompts, seed=0, num_inference_steps=args.steps, guidance_scale=7.5,
                    height=size, width=size, progress=False)

    def edit_fn(spec):
        def run():
            ctrl, _, _ = build_controller(spec, model.tokenizer, args.steps, model.defaults)
            run_prompts(model, spec.prompts, seed=0, num_inference_steps=args.steps, guidance_scale=7.5,
                        height=size, width=size, controller=ctrl, progress=False)
        return run

    cases = {"plain (diffusers)": plain, "loop (no control)": loop}
    cases.update({f"edit: {k}": edit_fn(v) for k, v in EDITS.items()})
    times = {k: [] for k in cases}
    peaks = {k: 0 for k in cases}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(args.repeats):  # interleaved, so drift hits every case alike
        for name, fn in cases.items():
            if model.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(model)
            t = time.perf_counter()
            fn()
            sync(model)
            times[name].append(time.perf_counter() - t)
            if model.device.type == "cuda":
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated())
    base = statistics.median(times["plain (diffusers)"])
    base_mem = peaks["plain (diffusers)"] or 1
    rows = []
    print(f"model {model.name}  device {model.device}  {size}px  {args.steps} steps  "
          f"median of {args.repeats}  torch threads {torch.get_num_threads()}")
    print(f"{'case':24s} {'seconds':>9s} {'ratio':>7s} {'peak MiB':>9s} {'mem ratio':>9s}")
    for name in cases:
        med = statistics.median(times[name])
        peak = peaks[name] / 2**20
        rows.append({"case": name, "seconds": med, "ratio": med / base,
                     "peak_mib": peak, "mem_ratio": peaks[name] / base_mem if peaks[name] else None})
        mem = f"{peak:9.1f} {peaks[name] / base_mem:9.2f}" if peaks[name] else f"{'-':>9s} {'-':>9s}"
        print(f"{name:24s} {med:9.3f} {med / base:7.2f} {mem}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model.name, "device": str(model.device), "size": size, "steps": args.steps,
                       "repeats": args.repeats, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
