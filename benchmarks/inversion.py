"""Time each inversion method the model runs side by side on the same images, with ratios against its default
(null-text inversion on DDIM models, Euler on flow models)
(the paper's settings: 50 DDIM steps — the model's inversion steps unless --steps —, at most 10 Adam iterations per step,
lr 1e-2·(1 − i/100), early stop at 1e-5 + i·2e-5), and each reconstruction's PSNR.

Images: shapes-world renders (held-out seeds) at the model's size.

    python benchmarks/inversion.py --model embedded --images 4 --repeats 1
    python benchmarks/inversion.py --model tiny
"""

from __future__ import annotations

import numpy as np
import torch
from common import arg_parser, dump, get_model, machine, print_table, time_cases

from promptedit.methods.inversion import default_method, invert, reconstruct, sampler_methods
from promptedit.images.metrics import psnr


def images_for(model, n: int):
    from PIL import Image

    from promptedit.world.spec import HELD_OUT_SEED
    from promptedit.world import render
    from promptedit.world.dataset import scene_at

    out = []
    for i in range(n):
        r = render(scene_at(HELD_OUT_SEED + 20, i))
        img = r.image
        if img.shape[0] != model.image_size:
            img = np.asarray(Image.fromarray(img).resize((model.image_size,) * 2, Image.LANCZOS))
        out.append((r.caption, img))
    return out


def main(argv=None):
    ap = arg_parser(__doc__, images=2, repeats=1)
    args = ap.parse_args(argv)
    model = get_model(args.model, args.device, args.fp16)
    items = images_for(model, args.images)
    rec = {}

    def case(method):
        def run():
            values = []
            for caption, img in items:
                inv = invert(model, img, caption, method=method, num_inference_steps=args.steps, progress=False)
                values.append(psnr(reconstruct(model, inv, progress=False).images[0], img))
            rec[method] = {"psnr_db": float(np.mean(values))}
        return run

    methods = sampler_methods(model.make_sampler())  # the methods the model's sampler runs (DDIM's or the flow's)
    if not model.make_guidance(2.0).branches > 1:  # a guidance-distilled model: no unconditional branch to replace
        methods = [m for m in methods if m not in ("null-text", "negative-prompt")]
    cases = {m: case(m) for m in methods}
    medians, peaks = time_cases(cases, args.repeats, model.device)
    rows = print_table(f"inversion + reconstruction of {args.images} image(s), model {model.name}, device "
                       f"{model.device}, median of {args.repeats}", medians, peaks, default_method(model)
                       if default_method(model) in cases else next(iter(cases)), rec)
    dump(args.json, {"machine": machine(), "model": model.name, "rows": rows})


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
