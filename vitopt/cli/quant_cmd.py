"""``vitopt quant-sensitivity``: rank a model's layer groups by what int8 costs each of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitopt.cli import app
from vitopt.cli.options import Debug, JsonOut, ModelName, ModelOptions, Threads, model_options
from vitopt.cli.support import console, handle_errors, step, write_json_file

BAR = 30  # characters of the widest bar


@app.command(name="quant-sensitivity")
@handle_errors
@model_options()
def quant_sensitivity(
    model: ModelName,
    data: Annotated[Optional[Path], typer.Option(help="Images to compare on: folder or .tar.")] = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="Labelled images: accuracy cost too.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on at most N images.")] = None,
    images: Annotated[int, typer.Option(min=1, help="Images for calibration and agreement.")] = 128,
    by: Annotated[str, typer.Option(help="blocks (each top-level block) or kinds (qkv, proj, fc1, ...).")] = "blocks",
    threads: Threads = None, json_out: JsonOut = None, debug: Debug = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:  # fmt: skip
    """Quantise one layer group at a time (OpenVINO, NNCF int8) and rank the groups by the cost."""
    from vitopt.errors import InputError
    from vitopt.sensitivity import quant_sensitivity as run

    if by not in ("blocks", "kinds"):
        raise InputError(f"--by takes blocks or kinds, got {by!r}")
    loaded = model_options.load(model)
    with step("quantising one layer group at a time"):
        result = run(model=loaded, data=data, eval_data=eval_data, eval_limit=eval_limit, n_images=images, by=by,
                     threads=threads, progress=lambda name: console.log(f"group {name}"))  # fmt: skip
    typer.echo(render(result), nl=False)
    if json_out:
        write_json_file(json_out, result)


def render(result: dict) -> str:
    """A table with a bar per group: the longer the bar, the more int8 costs there."""
    key = "accuracy_drop" if "top1" in result["float"] else "agreement_loss"
    costs = [g.get("accuracy_drop", 1 - g["top1_agreement"]) for g in result["groups"]]
    scale = max(max(costs), 1e-9)
    lines = [f"{result['model']}: int8 one group at a time ({result['n_images']} images); cost = {key}",
             f"{'group':<24} {'agreement':>9} {'top-1':>7} {'cost':>7}  "]  # fmt: skip
    for group, cost in zip(result["groups"], costs, strict=True):
        top1 = f"{group['top1']:.4f}" if "top1" in group else "-"
        bar = "#" * round(BAR * max(cost, 0) / scale)
        lines.append(f"{group['group']:<24} {group['top1_agreement']:>9.3f} {top1:>7} {cost:>7.4f}  {bar}")
    return "\n".join(lines) + "\n"
