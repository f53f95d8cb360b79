"""``vitopt compress``, ``bench`` and ``inspect``: fill a recipe or settings, call the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markdown import Markdown

from vitopt.cli import app
from vitopt.cli.options import (
    MODEL_HELP,
    Checkpoint,
    Debug,
    InputSize,
    JsonOut,
    Labels,
    Mean,
    ModelArg,
    ModelName,
    Std,
    Threads,
    Trust,
)  # fmt: skip
from vitopt.cli.support import console, handle_errors, load_for_cli, out, step

TARGETS_HELP = "onnx, openvino, coreml or tensorrt (repeatable)."

@app.command()
@handle_errors
def compress(
    model: Annotated[Optional[str], typer.Argument(help=MODEL_HELP)] = None,
    target: Annotated[Optional[list[str]], typer.Option("--target", "-t", help=TARGETS_HELP)] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("vitopt-out"),
    recipe: Annotated[Optional[str], typer.Option(help="Recipe YAML path or shipped name (baseline).")] = None,
    checkpoint: Checkpoint = None, trust_checkpoint: Trust = False,
    data: Annotated[Optional[Path], typer.Option(help="Calibration images: folder or .tar.")] = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="Labelled images for accuracy.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on at most N images.")] = None,
    threads: Threads = None,
    input_size: InputSize = None, mean: Mean = None, std: Std = None, labels: Labels = None,
    model_arg: ModelArg = None, debug: Debug = False,
) -> None:  # fmt: skip
    """Run a recipe's passes, export each target, verify and benchmark it, and write a report."""
    from vitopt.pipeline import compress as run_compress
    from vitopt.recipes import resolve_recipe
    from vitopt.report import failed
    from vitopt.zoo import DEFAULT_MODEL

    the_recipe = resolve_recipe(recipe=recipe, targets=target, threads=threads)
    loaded = load_for_cli(model or DEFAULT_MODEL, checkpoint=checkpoint, trust=trust_checkpoint,
                          model_args=model_arg, input_size=input_size, mean=mean, std=std, labels=labels)  # fmt: skip
    report = run_compress(model=loaded, recipe=the_recipe, out_dir=out_dir, data=data,
                          eval_data=eval_data, eval_limit=eval_limit, step=step)  # fmt: skip
    out.print(Markdown((out_dir / "report.md").read_text()))
    console.print(f"report: {out_dir / 'report.json'}")
    if failed(report):
        console.print(f"[bold red]{len(failed(report))} artifact(s) failed[/]: see the report")
        raise typer.Exit(1)


@app.command()
@handle_errors
def bench(
    artifact: Annotated[Path, typer.Argument(help="An exported artifact, e.g. model.onnx.")],
    runs: Annotated[int, typer.Option(min=1, help="Minimum timed runs.")] = 50,
    min_time: Annotated[float, typer.Option(min=0, help="Minimum seconds of timed runs.")] = 2.0,
    threads: Threads = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 1,
    json_out: JsonOut = None, debug: Debug = False,
) -> None:  # fmt: skip
    """Measure the latency of an exported artifact on its runtime."""
    from vitopt.benchmark_artifact import benchmark_artifact

    with step(f"benchmarking {artifact}"):
        result = benchmark_artifact(path=artifact, runs=runs, min_time_s=min_time,
                                    threads=threads, batch_size=batch_size)  # fmt: skip
    lat = result["latency_ms"]
    out.print(f"{artifact} on {result['runtime']}: p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms, "
              f"p99 {lat['p99']:.3f} ms, cv {lat['cv']:.3f}, {lat['runs']} runs, {lat['threads']} threads")  # fmt: skip
    if json_out:
        json_out.write_text(json.dumps(result, indent=2) + "\n")


@app.command()
@handle_errors
def inspect(
    model: ModelName,
    checkpoint: Checkpoint = None, trust_checkpoint: Trust = False,
    input_size: InputSize = None, mean: Mean = None, std: Std = None, labels: Labels = None,
    model_arg: ModelArg = None, json_out: JsonOut = None, debug: Debug = False,
) -> None:  # fmt: skip
    """Parameters, FLOPs, input contract and block structure of a model."""
    from vitopt.inspect_model import describe_model
    from vitopt.inspect_view import render_description

    loaded = load_for_cli(model, checkpoint=checkpoint, trust=trust_checkpoint, model_args=model_arg,
                          input_size=input_size, mean=mean, std=std, labels=labels)  # fmt: skip
    info = describe_model(loaded)
    render_description(info, console=out)
    if json_out:
        json_out.write_text(json.dumps(info, indent=2) + "\n")
