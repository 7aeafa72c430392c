"""Time instant attention masks (InstDiffEdit) against DiffEdit masks, side by side, with ratios.

Cases: DiffEdit's generate_mask (10 maps, strength 0.5; the baseline), the instant mask after its first
step, the instant mask of the whole pass (by default with the source text's rows beside the edit text's;
also with the edit text's maps alone, the paper's rule), and each whole edit.

    python benchmarks/masks.py --model embedded --images 4
"""

from __future__ import annotations

import torch
from common import arg_parser, dump, get_model, machine, print_table, time_cases
from inversion import images_for

from promptedit.methods.maskedit import diffedit, instdiffedit, make_mask


def main(argv=None):
    ap = arg_parser(__doc__, images=2, repeats=3)
    args = ap.parse_args(argv)
    model = get_model(args.model, args.device, args.fp16)
    items = images_for(model, args.images)
    from promptedit.bench.world import colour_swap_target

    pairs = []
    for caption, img in items:
        from promptedit.world import parse_caption

        colour = parse_caption(caption).objects[0].colour
        pairs.append((caption, colour_swap_target(caption, "blue" if colour != "blue" else "red"), img))
    kw = dict(num_inference_steps=args.steps, progress=False)
    cases = {
        "diffedit mask": lambda: [diffedit(model, im, s, t, mask_only=True, **kw) for s, t, im in pairs],
        "instant mask (1 step)": lambda: [make_mask(model, im, s, t, mask_steps=1, **kw) for s, t, im in pairs],
        "instant mask (whole pass)": lambda: [make_mask(model, im, s, t, **kw) for s, t, im in pairs],
        # the paper's rule: the edit text's maps only (half the batch; the default adds the source text's rows)
        "instant mask (whole pass, edit text's maps)": lambda: [make_mask(model, im, s, t, anchor="edited", **kw)
                                                                for s, t, im in pairs],
        "diffedit edit": lambda: [diffedit(model, im, s, t, **kw) for s, t, im in pairs],
        "instdiffedit edit": lambda: [instdiffedit(model, im, s, t, **kw) for s, t, im in pairs],
    }
    medians, peaks = time_cases(cases, args.repeats, model.device)
    rows = print_table(f"masks for {args.images} image(s), model {model.name}, device {model.device}, "
                       f"median of {args.repeats}", medians, peaks, "diffedit mask")
    dump(args.json, {"machine": machine(), "model": model.name, "rows": rows})


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
