"""One target, end to end: export, verify against PyTorch, publish, benchmark, evaluate.

Every outcome is a row of the report with an honest status: ``ok``, ``export_failed``,
``verify_failed`` (the artifact goes to ``rejected/``, never over a good one) or
``not_benchmarked`` (with the reason: no runtime here, or benchmarking disabled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitopt.bench import BenchSettings, measure_interleaved, speedup
from vitopt.errors import RunError
from vitopt.evaluate import accuracy, runner_predict
from vitopt.exporters.base import ExportedArtifact, publish
from vitopt.formats import FORMATS
from vitopt.recipe import Recipe, Target
from vitopt.spec import ModelSpec
from vitopt.verify import check_parity


@dataclass
class TargetJob:
    """Everything one target needs; shared pieces (images, logits, staging) are built once."""

    target: Target
    candidate: nn.Module
    original: nn.Module
    model_changed: bool
    spec: ModelSpec
    images: torch.Tensor
    candidate_logits: np.ndarray
    original_logits: np.ndarray
    staging: Path
    out_dir: Path
    recipe: Recipe
    threads: int
    eval_loader: Any = None
    baselines: dict[str, Path] = field(default_factory=dict)


def run_target(job: TargetJob) -> dict[str, Any]:
    fmt = FORMATS.get(job.target.format)
    row: dict[str, Any] = {"target": fmt.name, "runtime": fmt.runtime, "precision": job.target.precision}
    try:
        staged = _export(job, module=job.candidate, subdir=f"{fmt.name}-{job.target.precision}")
    except RunError as err:
        return {**row, "status": "export_failed", "reason": str(err), "path": None}
    row.update(export=staged.details, size_bytes=staged.size_bytes)
    runner_cls = fmt.runner_class()
    if runner_cls is None:
        return {**row, **_publish(staged, job, ok=True), "status": "not_benchmarked",
                "reason": f"no {fmt.runtime} runtime on this machine"}  # fmt: skip
    runner = runner_cls(staged.main, threads=job.threads)
    parity = _verify(job, runner)
    row.update(parity=parity.to_dict(), fidelity=_fidelity(job, runner))
    row.update(_publish(staged, job, ok=parity.passed))
    if not parity.passed:
        return {**row, "status": "verify_failed", "reason": _parity_reason(parity)}
    runner = runner_cls(Path(row["path"]), threads=job.threads)  # reopen from its final place
    row.update(_measure(job, runner, runner_cls))
    if job.eval_loader is not None:
        row["accuracy"] = accuracy(predict=runner_predict(runner), loader=job.eval_loader)
    return row


def _export(job: TargetJob, *, module: nn.Module, subdir: str) -> ExportedArtifact:
    fmt = FORMATS.get(job.target.format)
    exporter = fmt.exporter_class()(fmt=fmt, precision=job.target.precision, options=job.target.options)
    staging = job.staging / subdir
    staging.mkdir(parents=True, exist_ok=True)
    return exporter.export(module, spec=job.spec, staging=staging, calibration=job.images)


def _verify(job: TargetJob, runner):
    settings = job.recipe.verify
    return check_parity(
        reference=job.candidate_logits, runner=runner, images=job.images,
        max_abs_diff=settings.max_abs_diff, min_top1_agreement=settings.min_top1_agreement,
    )  # fmt: skip


def _fidelity(job: TargetJob, runner) -> dict[str, Any] | None:
    """Top-1 agreement with the ORIGINAL model: what passes cost, beyond export error."""
    if not job.model_changed:
        return None
    logits = runner.run_in_chunks(job.images.numpy())
    agree = float(np.mean(logits.argmax(1) == job.original_logits.argmax(1)))
    return {"top1_agreement_with_original": agree, "n_images": len(logits)}


def _publish(staged: ExportedArtifact, job: TargetJob, *, ok: bool) -> dict[str, Any]:
    dest = job.out_dir if ok else job.out_dir / "rejected"
    dest.mkdir(parents=True, exist_ok=True)
    final = publish(staged, out_dir=dest)
    return {"path": os.fspath(final.main), "size_bytes": final.size_bytes}


def _parity_reason(parity) -> str:
    return (
        f"parity outside tolerance: max abs diff {parity.max_abs_diff:.3g} "
        f"(tolerance {parity.tolerance_max_abs_diff:.3g}), top-1 agreement "
        f"{parity.top1_agreement:.4f} (needs {parity.tolerance_top1_agreement:.4f}); "
        "the artifact was moved to rejected/ and not shipped"
    )


def _measure(job: TargetJob, runner, runner_cls) -> dict[str, Any]:
    settings = job.recipe.bench
    if not settings.enabled:
        return {"status": "not_benchmarked", "reason": "benchmarking disabled by the recipe"}
    baseline = runner_cls(_baseline_path(job, candidate=runner.path), threads=job.threads)
    x = np.ascontiguousarray(job.images[: settings.batch_size].numpy())
    bench = BenchSettings(
        warmup=settings.warmup, min_runs=settings.min_runs, min_time_s=settings.min_time_s,
        threads=job.threads, batch_size=len(x),
    )  # fmt: skip
    pair = {"baseline": lambda: baseline.run(x), "candidate": lambda: runner.run(x)}
    stats = measure_interleaved(pair, settings=bench)
    return {
        "status": "ok", "reason": None,
        "latency_ms": stats["candidate"].to_dict(), "baseline_latency_ms": stats["baseline"].to_dict(),
        "speedup": round(speedup(baseline=stats["baseline"], candidate=stats["candidate"]), 4),
    }  # fmt: skip


def _baseline_path(job: TargetJob, *, candidate: Path) -> Path:
    """The unmodified model exported to the same format in fp32, once per format.

    When no pass changed the model and the precision is fp32 the candidate file is that
    export already; it is still measured in its own session, interleaved.
    """
    name = job.target.format
    if not job.model_changed and job.target.precision == "fp32":
        return candidate
    if name not in job.baselines:
        base = replace(job, target=Target(format=name, options=job.target.options))
        job.baselines[name] = _export(base, module=job.original, subdir=f"baseline-{name}").main
    return job.baselines[name]
