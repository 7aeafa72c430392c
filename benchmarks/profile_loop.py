"""Where our loop's host time goes, beside diffusers' pipeline: torch.profiler over one run of each (after a
warm-up), printing per case the wall time, the CPU time of the top host-side ops, the number of host-device
syncs (``aten::item`` / ``aten::_local_scalar_dense``, ``cudaStreamSynchronize``, ``cudaMemcpy`` device to host)
and kernel launches per denoising step, and writing Chrome traces (open in chrome://tracing or Perfetto).

    python benchmarks/profile_loop.py --model sd15-random --device cuda --fp16 --size 512 --steps 20 --out out/prof
    python benchmarks/profile_loop.py --model tiny --steps 4 --out /tmp/prof          # a dry run on the CPU

For issue 23 (an edit within 1.10x of plain generation on a GPU): the cases are diffusers' pipeline, our loop
without control, and a word swap; the gap between the first two is host-side work of ours.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from common import arg_parser, get_model, machine, sync  # noqa: E402
from p2p import EDITS, SRC, diffusers_pipeline  # noqa: E402
from promptedit.runner import SeedStart, resolve_sampling, run as run_branches
from promptedit.control.edit_spec import build_controller

SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
            "cudaMemcpyAsync", "cudaMemcpy")


def profile(name: str, fn, device, out: Path, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    fn()  # warm-up
    sync(device)
    with torch_profile(activities=activities) as prof:
        t = time.perf_counter()
        fn()
        sync(device)
        wall = time.perf_counter() - t
    trace = out / f"{name.replace(' ', '_').replace(':', '')}.json"
    prof.export_chrome_trace(str(trace))
    events = prof.key_averages()
    syncs = {e.key: e.count for e in events if e.key in SYNC_OPS}
    launches = sum(e.count for e in events if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return {"case": name, "wall_s": wall, "syncs_per_step": {k: v / steps for k, v in syncs.items()},
            "kernel_launches_per_step": launches / steps if launches else None,
            "top_host_ops_ms": {e.key: round(e.self_cpu_time_total / 1e3, 2) for e in top}, "trace": str(trace)}


def main(argv=None):
    ap = arg_parser(__doc__, images=None, repeats=1)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--out", default="out/profile")
    args = ap.parse_args(argv)
    model = get_model(args.model, args.device, args.fp16)
    size = args.size or model.image_size
    steps = args.steps or 10
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = diffusers_pipeline(model)
    prompts = [SRC, EDITS["replace"].targets[0]]
    start = SeedStart(0)
    sampling = resolve_sampling(model, start, steps, 7.5, size, size, allow_large=True)

    def plain():
        pipe(prompts, num_inference_steps=steps, guidance_scale=7.5, height=size, width=size,
             generator=torch.Generator("cpu").manual_seed(0), output_type="latent")

    def loop():
        run_branches(model, prompts, start, sampling=sampling, decode=False, progress=False)

    def replace():
        ctrl, _, _ = build_controller(EDITS["replace"], model.tokenizer, steps, model.defaults.p2p)
        run_branches(model, prompts, start, sampling=sampling, controller=ctrl, decode=False, progress=False)

    rows = [profile(name, fn, model.device, out, steps)
            for name, fn in (("plain (diffusers)", plain), ("loop (no control)", loop), ("edit: replace", replace))]
    base = rows[0]["wall_s"]
    print(f"model {model.name}, device {model.device}, {size} px, {steps} steps (latents only, no decode)")
    for r in rows:
        print(f"{r['case']:20s} {r['wall_s']:8.3f} s  x{r['wall_s'] / base:5.2f}  syncs/step {r['syncs_per_step']}  "
              f"launches/step {r['kernel_launches_per_step']}")
        print("    top host ops (ms):", r["top_host_ops_ms"])
    (out / "profile.json").write_text(json.dumps({"machine": machine(), "model": model.name, "size": size,
                                                  "steps": steps, "rows": rows}, indent=2))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
