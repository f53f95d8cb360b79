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
from vitopt.errors import RunError, VerificationError
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
    runner_cls, why_not = native_runner(fmt)
    failure = _check(job, fmt, staged=staged, runner_cls=runner_cls, row=row)
    row.update(_publish(staged, job, ok=failure is None))
    if failure is not None:
        return {**row, "status": "verify_failed", "reason": failure}
    if runner_cls is None:
        return {**row, "status": "not_benchmarked", "reason": _not_run_reason(why_not, row)}
    runner = runner_cls(Path(row["path"]), threads=job.threads)  # reopen from its final place
    row.update(_measure(job, runner, runner_cls))
    if job.eval_loader is not None:
        row["accuracy"] = accuracy(predict=runner_predict(runner), loader=job.eval_loader)
    return row


def native_runner(fmt) -> tuple[type | None, str | None]:
    """The format's own runner class if it can execute here, else (None, why not)."""
    runner_cls = fmt.runner_class()
    if runner_cls is None:
        return None, f"no {fmt.runtime} runtime exists for this format in vitopt"
    reason = runner_cls.unavailable_reason()
    return (None, reason) if reason else (runner_cls, None)


def _check(job: TargetJob, fmt, *, staged: ExportedArtifact, runner_cls, row: dict) -> str | None:
    """Static validation, then parity on the native runtime or the format's proxy; a failure reason or None."""
    validate = fmt.validator_function()
    try:
        if validate is not None:
            row["validation"] = validate(staged.main, spec=job.spec, precision=job.target.precision)
    except VerificationError as err:
        return f"{err}; the artifact was moved to rejected/ and not shipped"
    checker_cls = runner_cls or fmt.proxy_runner_class()
    if checker_cls is None:
        return None
    checker = checker_cls(staged.main, threads=job.threads)
    parity = _verify(job, checker, fmt)
    row.update(parity={**parity.to_dict(), "runtime": checker.runtime}, fidelity=_fidelity(job, checker))
    return None if parity.passed else _parity_reason(parity)


def _not_run_reason(why_not: str | None, row: dict) -> str:
    checked = [f"parity checked on {row['parity']['runtime']}"] if row.get("parity") else []
    if row.get("validation"):
        checked.append("file validated (" + ", ".join(row["validation"].get("checked", [])) + ")")
    return f"{why_not}" + (f"; {' and '.join(checked)}" if checked else "")


def _export(job: TargetJob, *, module: nn.Module, subdir: str) -> ExportedArtifact:
    fmt = FORMATS.get(job.target.format)
    provenance = {"vitopt.recipe": job.recipe.name}
    exporter = fmt.exporter_class()(
        fmt=fmt, precision=job.target.precision, options=job.target.options, provenance=provenance
    )
    staging = job.staging / subdir
    staging.mkdir(parents=True, exist_ok=True)
    return exporter.export(module, spec=job.spec, staging=staging, calibration=job.images)


def _verify(job: TargetJob, runner, fmt):
    settings = job.recipe.verify
    reference = job.candidate_logits
    if getattr(runner, "outputs_log_probabilities", False):  # a Core ML classifier returns probabilities
        reference = torch.log_softmax(torch.from_numpy(reference).double(), dim=1).numpy()
    return check_parity(
        reference=reference, runner=runner, images=job.images,
        max_abs_diff=fmt.tolerance(job.target.precision, fp32=settings.max_abs_diff),
        min_top1_agreement=settings.min_top1_agreement,
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
