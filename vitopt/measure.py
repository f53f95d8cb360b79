"""Latency and accuracy of published artifacts, each next to its baseline in the same run.

The baseline of an artifact is the unmodified model exported to the same format in fp32
(Core ML's default precision is fp16, so it is named explicitly). The pipeline exports every
baseline it needs once, after the artifacts are built and before any is measured; when no
pass changed the model and the target has an fp32 artifact, that file is the baseline (still
loaded in a second session and measured interleaved, so its ratio shows the noise floor).
All artifacts of one target (the candidates of ``precision: auto``) and the baseline are
measured in one interleaved run, so their ratios compare like with like.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from vitopt.artifacts import BuiltArtifact, RunContext, export_module
from vitopt.bench import BenchSettings, measure_interleaved, speedup
from vitopt.errors import RunError, one_line
from vitopt.evaluate import accuracy, runner_predict, torch_predict
from vitopt.formats import FORMATS
from vitopt.recipe import Target
from vitopt.verify import torch_logits

BaselineKey = tuple[str, str]  # (format, its options as JSON): one export per distinct pair


def baseline_target(target: Target) -> Target:
    """The target the unmodified model is exported to for comparison: same format and options, fp32."""
    return Target(format=target.format, precision="fp32", options=target.options)


def baselines_needed(ctx: RunContext, groups: list[list[BuiltArtifact]]) -> dict[BaselineKey, Target]:
    """The baseline exports the benchmark step will need, one per format and options."""
    if not ctx.recipe.bench.enabled:
        return {}
    needed = [_measurable(g)[0].target for g in groups if _measurable(g) and _own_baseline(ctx, g) is None]
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


def measure_group(ctx: RunContext, group: list[BuiltArtifact], baselines: dict[BaselineKey, Path | str]) -> list:
    """Finished report rows for one target's artifacts (one, or every candidate of ``precision: auto``):
    latency of all of them and of their baseline in one interleaved run, then accuracy."""
    rows = [dict(b.row) for b in group]
    measurable = [i for i, b in enumerate(group) if b.measurable]
    runners = {i: group[i].runner_cls(Path(rows[i]["path"]), threads=ctx.threads) for i in measurable}
    if runners:
        latency = _latency(ctx, group, runners, baselines)
        for i in measurable:
            rows[i] |= latency[i]
    for i, runner in runners.items():
        if ctx.eval_loader is not None:
            rows[i]["accuracy"] = accuracy(predict=runner_predict(runner), loader=ctx.eval_loader)
    for i, built in enumerate(group):
        if i not in runners and built.row["status"] == "not_benchmarked":
            rows[i] |= _simulated(ctx, built.target)
    return rows


def _simulated(ctx: RunContext, target: Target) -> dict:
    """Where the runtime cannot run here, a quantised artifact's numbers from a PyTorch model with the
    same weight compression (Core ML off macOS): agreement with the float model and, with labels, accuracy."""
    quantizer = FORMATS.get(target.format).quantizer_for(target.precision, settings=target.quantize)
    model = None if quantizer is None else quantizer.simulate(ctx.candidate, scheme=target.precision)
    if model is None:
        return {}
    logits = torch_logits(model, ctx.images)
    agree = float(np.mean(logits.argmax(1) == ctx.candidate_logits.argmax(1)))
    fields = {"simulated": {"how": f"PyTorch model with the same {target.precision} weight compression",
                            "top1_agreement": agree, "n_images": len(logits)}}  # fmt: skip
    if ctx.eval_loader is not None:
        fields["accuracy"] = {**accuracy(predict=torch_predict(model), loader=ctx.eval_loader), "simulated": True}
    return fields


def _latency(ctx: RunContext, group: list[BuiltArtifact], runners: dict, baselines: dict) -> dict[int, dict]:
    settings = ctx.recipe.bench
    if not settings.enabled:
        return {i: {"status": "not_benchmarked", "reason": "benchmarking disabled by the recipe"} for i in runners}
    own = _own_baseline(ctx, group)
    baseline_path = Path(own.row["path"]) if own is not None else baselines[_key(_measurable(group)[0].target)]
    if isinstance(baseline_path, str):
        return {i: {"status": "not_benchmarked", "reason": baseline_path} for i in runners}
    baseline = _measurable(group)[0].runner_cls(Path(baseline_path), threads=ctx.threads)  # its own session
    x = np.ascontiguousarray(ctx.images[: settings.batch_size].numpy())
    fns = {"baseline": lambda: baseline.run(x), **{i: functools.partial(r.run, x) for i, r in runners.items()}}
    bench = BenchSettings(warmup=settings.warmup, min_runs=settings.min_runs, min_time_s=settings.min_time_s,
                          threads=ctx.threads, batch_size=len(x))  # fmt: skip
    stats = measure_interleaved(fns, settings=bench)
    # The samples are kept in round order: sample k of an artifact and of its baseline were timed in the
    # same round, so a gate can bootstrap their ratio pairwise (vitopt gate).
    return {i: {"latency_ms": stats[i].to_dict(), "baseline_latency_ms": stats["baseline"].to_dict(),
                "speedup": round(speedup(baseline=stats["baseline"], candidate=stats[i]), 4),
                "latency_samples_ms": list(stats[i].samples),
                "baseline_latency_samples_ms": list(stats["baseline"].samples)}
            for i in runners}  # fmt: skip


def _measurable(group: list[BuiltArtifact]) -> list[BuiltArtifact]:
    return [b for b in group if b.measurable]


def _own_baseline(ctx: RunContext, group: list[BuiltArtifact]) -> BuiltArtifact | None:
    """The group's fp32 artifact when no pass changed the model: it is the baseline export already."""
    if ctx.model_changed:
        return None
    return next((b for b in _measurable(group) if b.target.precision == "fp32"), None)


def _key(target: Target) -> BaselineKey:
    return target.format, json.dumps(target.options, sort_keys=True, default=str)
