"""``promptedit flow-edit``: a velocity edit of a real image on a flow-matching model (FLUX.1, SD3): FlowEdit or
UniEdit-Flow. Its options, checks and run are :mod:`promptedit.options`'."""

from __future__ import annotations

import time

import click

from ..options import flow_edit_options, plan_flow_edit, run_flow_edit
from .common import given, load, model_options


@click.command("flow-edit")
@flow_edit_options
@model_options
def flow_edit(model, device, threads, quiet, **kw):
    """Edit a real --image from --source to --target by steering a flow model's velocity (FLUX.1, SD3; DDIM models are
    refused): FlowEdit (--method flowedit, no inversion) or UniEdit-Flow (--method uniedit).

    --steps defaults to the method's (FlowEdit 28, UniEdit-Flow 15), --guidance to FlowEdit's target guidance 5.5
    or UniEdit-Flow's 1. Writes DIR/source.png (the input as edited), DIR/edited.png, DIR/grid.png and
    DIR/result.json.
    """
    started = time.perf_counter()
    plan = plan_flow_edit(**kw, given=given())
    m = load(model, device, quiet=quiet, threads=threads)
    result = run_flow_edit(m, plan, quiet=quiet, started=started)
    click.echo(f"wrote {plan.out} ({result.method}, {result.timings['total']:.1f} s)")


COMMANDS = [flow_edit]
