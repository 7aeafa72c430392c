"""Time a Prompt-to-Prompt edit against plain generation of the same prompts, side by side.

Runs, interleaved and on the same model, steps and prompts:
  * plain: diffusers' own pipeline (StableDiffusionPipeline, or StableDiffusionXLPipeline for SDXL) on
    [source, target] in one batch;
  * loop: promptedit's denoising loop with no controller (same batch);
  * one row per edit kind (replace, refine, reweight, replace + local blend), and the linear
    ones again with explicit probabilities everywhere (fused=False), to show what ValueEdit buys.
Prints median seconds over --repeats runs after a warm-up, ratios against `plain`,
and peak memory per case (CUDA: the allocator's peak; Linux CPU: peak resident-set growth during the run).

    python benchmarks/p2p.py --model tiny --steps 10
    python benchmarks/p2p.py --model PATH --steps 50 --repeats 5
    python benchmarks/p2p.py --model sd15-random --size 256 --steps 5 --repeats 2 --cases replace,reweight
    python benchmarks/p2p.py --model sdxl-random --size 512 --steps 3 --repeats 2 --cases loop,replace
"""

from __future__ import annotations

import torch

from promptedit.runner import SeedStart, resolve_sampling, run as run_branches
from promptedit.control.edit_spec import EditSpec, build_controller
from common import arg_parser, dump, get_model, machine, print_table, time_cases  # noqa: E402

SRC = "a red circle on a white background"
EDITS = {
    "replace": EditSpec(SRC, ("a blue circle on a white background",), mode="replace"),
    "refine": EditSpec(SRC, ("a striped red circle on a white background",), mode="refine"),
    "reweight": EditSpec(SRC, (SRC,), mode="reweight", reweight={"red": 2.0}),
    "replace+blend": EditSpec(SRC, ("a blue circle on a white background",), mode="replace",
                              blend_words=("circle",)),
}


def diffusers_pipeline(model):
    """diffusers' own pipeline of the model's family over the same components: StableDiffusionPipeline, or
    StableDiffusionXLPipeline for SDXL."""
    import diffusers

    pipe = getattr(diffusers, model.family_entry.pipelines.txt2img)(**model.pipeline_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv=None):
    ap = arg_parser(__doc__, images=None, repeats=3)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--compile", action="store_true",
                    help="also time the uncontrolled loop with the UNet compiled (model.compile(); torch.compile)")
    ap.add_argument("--cases", default=None,
                    help="comma-separated subset of: plain, loop, " + ", ".join(EDITS) + ", explicit "
                         "(the explicit-probability rows); plain is always run (the baseline)")
    args = ap.parse_args(argv)
    model = get_model(args.model, args.device, args.fp16)
    size = args.size or model.image_size
    steps = args.steps or 10
    pipe = diffusers_pipeline(model)
    prompts = [SRC, EDITS["replace"].targets[0]]

    def plain():
        pipe(prompts, num_inference_steps=steps, height=size, width=size,
             generator=torch.Generator("cpu").manual_seed(0), output_type="np",
             **model.family_entry.pipeline_call(model, 7.5))

    start = SeedStart(0)
    sampling = resolve_sampling(model, start, steps, 7.5, size, size, allow_large=True)

    def loop():
        run_branches(model, prompts, start, sampling=sampling, progress=False)

    def edit_fn(spec, fused=True):
        def run():
            ctrl, _, _ = build_controller(spec, model.tokenizer, steps, model.defaults.p2p)
            ctrl.fused = fused
            run_branches(model, spec.prompts, start, sampling=sampling, controller=ctrl, progress=False)
        return run

    known = {"plain", "loop", *EDITS, "explicit"}
    wanted = known if args.cases is None else {"plain", *args.cases.split(",")}
    unknown = wanted - known
    if unknown:
        ap.error(f"unknown case(s) {', '.join(sorted(unknown))}")
    cases = {"plain (diffusers)": plain}
    if "loop" in wanted:
        cases["loop (no control)"] = loop
    if args.compile:  # the compiled UNet serves runs without attention control
        import dataclasses

        compiled = dataclasses.replace(model).compile()
        cases["loop (compiled UNet)"] = lambda: run_branches(compiled, prompts, start, sampling=sampling, progress=False)
    cases.update({f"edit: {k}": edit_fn(v) for k, v in EDITS.items() if k in wanted})
    # what applying linear edits through the values (ValueEdit) buys: the same edits with explicit probabilities
    if "explicit" in wanted:
        cases.update({f"edit: {k}, explicit probs": edit_fn(v, fused=False) for k, v in EDITS.items()
                      if k != "replace+blend" and k in wanted})
    medians, peaks = time_cases(cases, args.repeats, model.device)
    rows = print_table(f"model {model.name}, device {model.device}, {size} px, {steps} steps, median of "
                       f"{args.repeats}, torch threads {torch.get_num_threads()}", medians, peaks, "plain (diffusers)")
    maps = stored_map_bytes(model, start, sampling, steps)
    print(f"attention maps of an edit with its maps stored: {maps['stored'] / 2**20:.2f} MiB kept (per-word maps "
          f"summed over layers and steps); the full attention matrices of one step's attention layers "
          f"{maps['full_step'] / 2**20:.1f} MiB, of the run {maps['full_run'] / 2**20:.1f} MiB "
          f"({maps['full_run'] / maps['stored']:.0f}x)")
    dump(args.json, {"machine": machine(), "model": model.name, "size": size, "steps": steps, "rows": rows,
                     "maps": maps})


def stored_map_bytes(model, start, sampling, steps) -> dict:
    """Bytes the attention store keeps for a word swap with its maps recorded (what attention figures, local blend
    and instant masks read), against the full attention matrices (queries × all keys, every head) of every
    attention layer: one step's, and the run's (what the papers' attention store holds before averaging)."""
    from promptedit.control import AttentionStore, Compose

    spec = EDITS["replace"]
    ctrl, _, _ = build_controller(spec, model.tokenizer, steps, model.defaults.p2p)
    store = AttentionStore()
    run_branches(model, spec.prompts, start, sampling=sampling, controller=Compose([ctrl, store]), progress=False)
    stored = sum(t.numel() * t.element_size() for t in store.sums.values())
    h, w = sampling.height // model.vae_scale_factor, sampling.width // model.vae_scale_factor
    keys_text = model.max_length
    full = 0
    heads = getattr(model.unet.config, "num_attention_heads", None)
    for site in model.backbone.sites():
        if not site.on_grid:
            continue
        n_img = (h // site.grid) * (w // site.grid)
        n_keys = n_img + keys_text if site.kind == "joint" else (keys_text if site.kind == "cross" else n_img)
        n_q = n_img + keys_text if site.kind == "joint" else n_img
        layer_heads = heads if isinstance(heads, int) else 8  # a UNet's heads vary by level; 8 is SD's
        full += len(spec.prompts) * layer_heads * n_q * n_keys * 4
    return {"stored": stored, "full_step": full, "full_run": full * steps}


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
