"""One target's artifact: export, validate, parity against PyTorch, publish.

Every outcome is a row of the report with an honest status: ``ok``, ``export_failed``,
``verify_failed`` (the artifact goes to ``rejected/``, never over a good one) or
``not_benchmarked`` (with the reason: no runtime here, or benchmarking disabled). Measuring
the published artifacts against their baselines is ``vitopt.measure``'s step, which runs after
every artifact is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitopt.backends.exporter import ExportedArtifact
from vitopt.backends.metadata import RECIPE_KEY
from vitopt.errors import RunError, VerificationError
from vitopt.formats import FORMATS, Format
from vitopt.publish import publish, replace_path
from vitopt.recipe import Recipe, Target
from vitopt.spec import ModelSpec
from vitopt.verify import check_parity

FAILED_STATUSES = ("export_failed", "verify_failed")  # artifacts that are never benchmarked or shipped


@dataclass(frozen=True)
class RunContext:
    """What every target of one compress run shares; built once by the pipeline."""

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
    calibration: torch.Tensor | None = None  # images for quantisers (default: ``images``)
    # Float exports that quantisers start from, shared by every candidate of a target (never published)
    quantizer_inputs: dict[tuple, ExportedArtifact] = field(default_factory=dict, compare=False)
    labelled: tuple[torch.Tensor, torch.Tensor] | None = None  # labelled images of --data, for accuracy control


@dataclass(frozen=True)
class BuiltArtifact:
    """A target's report row so far and, when it was published and its runtime runs here, its runner class."""

    target: Target
    row: dict[str, Any]
    runner_cls: type | None = None
    files: tuple[Path, ...] = ()  # where the published files are (main last)

    @property
    def measurable(self) -> bool:
        return self.runner_cls is not None and self.row["status"] == "ok"


def ship_chosen(rows: list[dict], group: list[BuiltArtifact], *, out_dir: Path) -> list[dict]:
    """Move the chosen candidate's files from ``candidates/`` to the target's usual names in ``out_dir``
    (model.int8.xml -> model.xml); the others stay under ``candidates/``."""
    for row, built in zip(rows, group, strict=True):
        if row.get("chosen") and built.files and row["status"] not in FAILED_STATUSES:
            tag = f".{built.target.precision}."  # Format.artifact_name's infix, on the .bin of an IR too
            moved = [replace_path(f, out_dir / f.name.replace(tag, ".", 1)) for f in built.files]
            row["path"] = os.fspath(moved[-1])
    return rows


def build_artifact(ctx: RunContext, target: Target, *, dest: Path | None = None,
                   candidate: bool = False) -> BuiltArtifact:  # fmt: skip
    """Export, check and publish ``target`` into ``dest`` (default: the output folder). A ``candidate``
    (of ``precision: auto``) in a quantised precision is held only to running correctly here: its
    accuracy floor is the selection's to apply, so its accuracy is still measured and reported."""
    fmt = FORMATS.get(target.format)
    row: dict[str, Any] = {"target": fmt.name, "runtime": fmt.runtime, "precision": target.precision}
    try:
        staged = export_module(ctx, target, module=ctx.candidate, subdir=f"{fmt.name}-{target.precision}")
    except RunError as err:
        return BuiltArtifact(target, {**row, "status": "export_failed", "reason": str(err), "path": None})
    row |= {"export": staged.details, "size_bytes": staged.size_bytes}
    runner_cls, why_not = native_runner(fmt)
    checks, failure = _check(ctx, target, fmt, staged=staged, runner_cls=runner_cls, candidate=candidate)
    final = _publish(staged, out_dir=dest or ctx.out_dir, ok=failure is None)
    row |= checks | {"path": os.fspath(final.main), "size_bytes": final.size_bytes}
    files = tuple(final.files)
    if failure is not None:
        return BuiltArtifact(target, {**row, "status": "verify_failed", "reason": failure}, files=files)
    if runner_cls is None:
        reason = _not_run_reason(why_not, row)
        return BuiltArtifact(target, {**row, "status": "not_benchmarked", "reason": reason}, files=files)
    return BuiltArtifact(target, {**row, "status": "ok", "reason": None}, runner_cls, files)


def native_runner(fmt: Format) -> tuple[type | None, str | None]:
    """The format's own runner class if it can execute here, else (None, why not)."""
    runner_cls = fmt.runner_class()
    reason = runner_cls.unavailable_reason()
    return (None, reason) if reason else (runner_cls, None)


def export_module(ctx: RunContext, target: Target, *, module: nn.Module, subdir: str) -> ExportedArtifact:
    """``module`` exported for ``target`` into its own folder under the run's staging directory."""
    fmt = FORMATS.get(target.format)
    quantizer = fmt.quantizer_for(target.precision, settings=target.quantize)
    if quantizer is None:
        return _export(ctx, target, module=module, precision=target.precision, subdir=subdir)
    key = (target.format, quantizer.base_precision, repr(sorted(target.options.items())), id(module))
    if key not in ctx.quantizer_inputs:
        ctx.quantizer_inputs[key] = _export(ctx, target, module=module, precision=quantizer.base_precision,
                                            subdir=f"quantizer-input-{len(ctx.quantizer_inputs)}")  # fmt: skip
    dest = ctx.staging / subdir / fmt.artifact_name(target.precision)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return quantizer.quantize(ctx.quantizer_inputs[key], scheme=target.precision, calibration=_calibration(ctx),
                              dest=dest, labelled=ctx.labelled)  # fmt: skip


def _export(ctx: RunContext, target: Target, *, module: nn.Module, precision: str, subdir: str) -> ExportedArtifact:
    fmt = FORMATS.get(target.format)
    exporter = fmt.exporter_class()(fmt=fmt, precision=precision, options=target.options,
                                    provenance={RECIPE_KEY: ctx.recipe.name})  # fmt: skip
    staging = ctx.staging / subdir
    staging.mkdir(parents=True, exist_ok=True)
    return exporter.export(module, spec=ctx.spec, staging=staging, calibration=_calibration(ctx))


def _calibration(ctx: RunContext) -> torch.Tensor:
    return ctx.images if ctx.calibration is None else ctx.calibration


def _check(ctx: RunContext, target: Target, fmt: Format, *, staged: ExportedArtifact, runner_cls,
           candidate: bool) -> tuple[dict, str | None]:  # fmt: skip
    """Static validation, then parity on the native runtime or the format's proxy: (row fields, failure)."""
    validate, fields = fmt.validator_function(), {}
    try:
        if validate is not None:
            fields["validation"] = validate(staged.main, spec=ctx.spec, precision=target.precision)
    except VerificationError as err:
        return fields, f"{err}; the artifact was moved to rejected/ and not shipped"
    checker_runtime = fmt.runtime if runner_cls is not None else fmt.proxy_runtime
    if checker_runtime is None:
        return fields, None
    checker = (runner_cls or fmt.proxy_runner_class())(staged.main, threads=ctx.threads)
    parity = _verify(ctx, target, checker, fmt, candidate=candidate)
    fields |= {"parity": {**parity.to_dict(), "runtime": checker_runtime}, "fidelity": _fidelity(ctx, checker)}
    return fields, None if parity.passed else _parity_reason(parity)


def _not_run_reason(why_not: str | None, row: dict) -> str:
    checked = [f"parity checked on {row['parity']['runtime']}"] if row.get("parity") else []
    if row.get("validation"):
        checked.append("file validated (" + ", ".join(row["validation"].get("checked", [])) + ")")
    return f"{why_not}" + (f"; {' and '.join(checked)}" if checked else "")


def _verify(ctx: RunContext, target: Target, runner, fmt: Format, *, candidate: bool):
    settings, floor = ctx.recipe.verify, ctx.recipe.verify.min_top1_agreement
    if target.quantized:
        floor = 0.0 if candidate else target.quantize.min_top1_agreement  # NaN logits still fail
    reference = ctx.candidate_logits
    if getattr(runner, "outputs_log_probabilities", False):  # a Core ML classifier returns probabilities
        reference = torch.log_softmax(torch.from_numpy(reference).double(), dim=1).numpy()
    return check_parity(
        reference=reference, runner=runner, images=ctx.images,
        max_abs_diff=fmt.tolerance(target.precision, fp32=settings.max_abs_diff),
        min_top1_agreement=floor,
    )  # fmt: skip


def _fidelity(ctx: RunContext, runner) -> dict[str, Any] | None:
    """Top-1 agreement with the ORIGINAL model: what passes cost, beyond export error."""
    if not ctx.model_changed:
        return None
    logits = runner.run_in_chunks(ctx.images.numpy())
    agree = float(np.mean(logits.argmax(1) == ctx.original_logits.argmax(1)))
    return {"top1_agreement_with_original": agree, "n_images": len(logits)}


def _publish(staged: ExportedArtifact, *, out_dir: Path, ok: bool) -> ExportedArtifact:
    dest = out_dir if ok else out_dir / "rejected"
    dest.mkdir(parents=True, exist_ok=True)
    return publish(staged, out_dir=dest)


def _parity_reason(parity) -> str:
    return (
        f"parity outside tolerance: max abs diff {parity.max_abs_diff:.3g} "
        f"(tolerance {parity.tolerance_max_abs_diff:.3g}), top-1 agreement "
        f"{parity.top1_agreement:.4f} (needs {parity.tolerance_top1_agreement:.4f}); "
        "the artifact was moved to rejected/ and not shipped"
    )
