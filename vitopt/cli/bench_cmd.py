"""``vitopt bench``: the latency of an artifact that already exists, on its own runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vitopt.cli import app
from vitopt.cli.options import Debug, JsonOut, Threads
from vitopt.cli.support import handle_errors, out, step, write_json_file


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
        write_json_file(json_out, result)
