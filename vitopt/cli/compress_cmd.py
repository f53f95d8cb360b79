"""``vitopt compress``: fill a recipe from the flags, run the pipeline, print the report it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitopt.cli import app
from vitopt.cli.options import MODEL_HELP, Debug, ModelOptions, Threads, model_options
from vitopt.cli.support import console, handle_errors, step

TARGETS_HELP = "onnx, openvino, coreml or tensorrt (repeatable)."


@app.command()
@handle_errors
@model_options()
def compress(
    model: Annotated[Optional[str], typer.Argument(help=MODEL_HELP)] = None,
    target: Annotated[Optional[list[str]], typer.Option("--target", "-t", help=TARGETS_HELP)] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("vitopt-out"),
    recipe: Annotated[Optional[str], typer.Option(help="Recipe YAML path or shipped name (baseline).")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="Images passes train on and quantisers calibrate with: folder or .tar (labels optional).")] = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="Labelled images for accuracy.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on at most N images.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted pruning or distillation run.")] = False,
    threads: Threads = None, debug: Debug = False, model_options: ModelOptions = ModelOptions(),
) -> None:  # fmt: skip
    """Run a recipe's passes, export each target, verify and benchmark it, and write a report."""
    from vitopt.pipeline import compress as run_compress
    from vitopt.recipes import resolve_recipe
    from vitopt.report import failed
    from vitopt.report_view import render_text
    from vitopt.run_folder import check_output_folder
    from vitopt.zoo import DEFAULT_MODEL

    the_recipe = resolve_recipe(recipe=recipe, targets=target, threads=threads)
    check_output_folder(out_dir)
    loaded = model_options.load(model or DEFAULT_MODEL)
    report = run_compress(model=loaded, recipe=the_recipe, out_dir=out_dir, data=data,
                          eval_data=eval_data, eval_limit=eval_limit, step=step, resume=resume)  # fmt: skip
    if report is None:  # a torchrun rank other than 0: rank 0 exports and reports
        return
    typer.echo(render_text(report), nl=False)
    folder = Path(report["output_folder"])
    console.print(f"report: {folder / 'report.json'} and {folder / 'report.md'}")
    if failed(report):
        console.print(f"[bold red]{len(failed(report))} artifact(s) failed[/]: see the report")
        raise typer.Exit(1)
