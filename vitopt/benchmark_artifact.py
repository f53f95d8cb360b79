"""``vitopt bench``: latency of an artifact that already exists, on its own runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vitopt.bench import BenchSettings, measure
from vitopt.environment import default_threads, describe_environment
from vitopt.errors import InputError, UnsupportedOptionError
from vitopt.formats import FORMATS, Format, format_for_path
from vitopt.run_files import check_against_report


def format_of(path: Path) -> Format:
    fmt = format_for_path(path)
    if fmt is not None:
        return fmt
    suffixes = ", ".join(FORMATS.get(n).suffix for n in FORMATS.names())
    raise UnsupportedOptionError(f"no known format for {str(path)!r}", hint=f"known: {suffixes}")


def benchmark_artifact(*, path: Path, runs: int, min_time_s: float, threads: int | None,
                       batch_size: int) -> dict[str, Any]:  # fmt: skip
    if not path.exists():
        raise InputError(f"artifact {str(path)!r} does not exist", hint="check the path")
    fmt = format_of(path)
    check_against_report(path)
    threads = threads or default_threads()
    runner = fmt.open_runner(path, threads=threads)
    # Latency of these models does not depend on pixel values, so a fixed-seed tensor will do.
    x = np.random.default_rng(0).standard_normal((batch_size, *runner.input_shape()[1:]), dtype=np.float32)
    settings = BenchSettings(min_runs=runs, min_time_s=min_time_s, threads=threads, batch_size=batch_size)
    stats = measure(lambda: runner.run(x), settings=settings)
    return {"artifact": str(path), "format": fmt.name, "runtime": fmt.runtime,
            "latency_ms": stats.to_dict(), "environment": describe_environment(threads=threads)}  # fmt: skip
