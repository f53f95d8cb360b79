"""Latency and accuracy of published artifacts, each next to its baseline in the same run.

The baseline of an artifact is the unmodified model exported to the same format in fp32
(Core ML's default precision is fp16, so it is named explicitly). The pipeline exports every
baseline it needs once, after the artifacts are built and before any is measured; when no
pass changed the model and the artifact is fp32, the artifact file is its own baseline (still
loaded in a second session and measured interleaved, so the ratio shows the noise floor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vitopt.artifacts import BuiltArtifact, RunContext, export_module
from vitopt.bench import BenchSettings, measure_interleaved, speedup
from vitopt.errors import RunError, one_line
from vitopt.evaluate import accuracy, runner_predict
from vitopt.recipe import Target

BaselineKey = tuple[str, str]  # (format, its options as JSON): one export per distinct pair


def baseline_target(target: Target) -> Target:
    """The target the unmodified model is exported to for comparison: same format and options, fp32."""
    return Target(format=target.format, precision="fp32", options=target.options)


def baselines_needed(ctx: RunContext, built: list[BuiltArtifact]) -> dict[BaselineKey, Target]:
    """The baseline exports the benchmark step will need, one per format and options."""
    if not ctx.recipe.bench.enabled:
        return {}
    needed = [b.target for b in built if b.measurable and not _is_own_baseline(ctx, b.target)]
    return {_key(t): baseline_target(t) for t in needed}


def export_baselines(ctx: RunContext, needed: dict[BaselineKey, Target]) -> dict[BaselineKey, Path | str]:
    """Each baseline's staged file, or why its export failed (its artifacts are then not benchmarked)."""
    exported: dict[BaselineKey, Path | str] = {}
    for i, (key, target) in enumerate(needed.items()):
        try:
            exported[key] = export_module(ctx, target, module=ctx.original, subdir=f"baseline-{i}-{key[0]}").main
        except RunError as err:
            exported[key] = f"the unmodified model's {key[0]} export failed: {one_line(err)}"
    return exported


def measure_artifact(ctx: RunContext, built: BuiltArtifact, baselines: dict[BaselineKey, Path | str]) -> dict:
    """The finished report row: latency against the baseline, then accuracy where labels exist."""
    row = dict(built.row)
    if not built.measurable:
        return row
    runner = built.runner_cls(Path(row["path"]), threads=ctx.threads)  # reopened from its final place
    row |= _latency(ctx, built, runner, baselines)
    if ctx.eval_loader is not None:
        row["accuracy"] = accuracy(predict=runner_predict(runner), loader=ctx.eval_loader)
    return row


def _latency(ctx: RunContext, built: BuiltArtifact, runner, baselines: dict) -> dict[str, Any]:
    settings = ctx.recipe.bench
    if not settings.enabled:
        return {"status": "not_benchmarked", "reason": "benchmarking disabled by the recipe"}
    baseline_path = runner.path if _is_own_baseline(ctx, built.target) else baselines[_key(built.target)]
    if isinstance(baseline_path, str):
        return {"status": "not_benchmarked", "reason": baseline_path}
    baseline = built.runner_cls(baseline_path, threads=ctx.threads)
    x = np.ascontiguousarray(ctx.images[: settings.batch_size].numpy())
    bench = BenchSettings(warmup=settings.warmup, min_runs=settings.min_runs, min_time_s=settings.min_time_s,
                          threads=ctx.threads, batch_size=len(x))  # fmt: skip
    stats = measure_interleaved({"baseline": lambda: baseline.run(x), "candidate": lambda: runner.run(x)},
                                settings=bench)  # fmt: skip
    return {
        "latency_ms": stats["candidate"].to_dict(), "baseline_latency_ms": stats["baseline"].to_dict(),
        "speedup": round(speedup(baseline=stats["baseline"], candidate=stats["candidate"]), 4),
    }  # fmt: skip


def _is_own_baseline(ctx: RunContext, target: Target) -> bool:
    return not ctx.model_changed and target.precision == "fp32"


def _key(target: Target) -> BaselineKey:
    return target.format, json.dumps(target.options, sort_keys=True, default=str)
