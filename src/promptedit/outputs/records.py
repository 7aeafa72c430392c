"""One record builder: the ``result.json`` of every output, for the CLI, the web app, the demo and batch runs.

Pure: a method's result (:mod:`promptedit.methods.result`) and what the front-end adds (files, inputs) in, a
JSON-able dict out. Writing it is the front-end's job (:mod:`promptedit.outputs.files`).
"""

from __future__ import annotations

import dataclasses
import platform
import time

import numpy as np


def environment() -> dict:
    """Versions and machine."""
    import diffusers
    import torch
    import transformers

    from .. import __version__

    return {
        "promptedit": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
    }


def _rounded(timings: dict) -> dict:
    return {k: round(float(v), 4) for k, v in timings.items()}


def result_fields(result) -> dict:
    """What a result says about itself: method, prompts, sampling, the edit, the mask, the inversion, timings."""
    rec: dict = {
        "method": result.method,
        "prompts": list(result.prompts),
        "seed": result.seed,
        "num_inference_steps": result.sampling.num_inference_steps,
        "guidance_scale": result.sampling.guidance_scale,
        "height": result.sampling.height,
        "width": result.sampling.width,
        "scheduler": result.sampling.sampler,
    }
    if result.sampling.negative_prompt is not None:
        rec["negative_prompt"] = result.sampling.negative_prompt
    # each kind of result has its own fields (promptedit.methods.result): read those this one has
    if getattr(result, "spec", None) is not None:
        rec["spec"] = dataclasses.asdict(result.spec)
        rec["mode"] = result.mode
    if getattr(result, "notes", None):
        rec["notes"] = list(result.notes)
    if getattr(result, "edit_null", None) is not None:
        rec["edit_null"] = result.edit_null
    if getattr(result, "inversion", None) is not None:
        rec["inversion"] = result.inversion.metadata()
    if getattr(result, "mask", None) is not None:
        rec["mask_fraction"] = round(float(np.asarray(result.mask).mean()), 4)
    if getattr(result, "words", None) is not None:
        rec["words"] = result.words
    if getattr(result, "settings", None):
        rec["settings"] = result.settings
    if getattr(result, "attention_downsample", None) is not None:
        rec["attention_downsample"] = result.attention_downsample
    rec["timings"] = _rounded(result.timings)
    return rec


def build_record(command: str, model=None, result=None, *, started: float | None = None, files: dict | None = None,
                 inputs: dict | None = None, extra: dict | None = None, with_environment: bool = True) -> dict:
    """The record of one output.

    Args:
        command: what made it (``edit``, ``invert``, ``batch``, the app's tab …).
        model: the model used (its name, family and defaults are recorded).
        result: the method's :class:`~promptedit.methods.result.Result` (of its kind), if any.
        started: ``time.perf_counter()`` at the start of the command (adds the wall time).
        files: the output files, by role.
        inputs: what was read (image path, how it was prepared, mask file …).
        extra: anything else the front-end adds (e.g. the equivalent flags of a one-prompt edit).
    """
    rec: dict = {"command": command}
    if model is not None:
        rec.update({"model": model.name, "model_family": model.family, "model_defaults": model.defaults.to_dict()})
    if result is not None:
        rec.update(result_fields(result))
    if inputs:
        rec["inputs"] = inputs
    if extra:
        rec.update(extra)
    if files:
        rec["files"] = files
    if started is not None:
        rec.setdefault("timings", {})["wall"] = round(time.perf_counter() - started, 4)
    if with_environment:
        rec["environment"] = environment()
    return rec
