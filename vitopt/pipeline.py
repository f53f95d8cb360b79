"""``compress``: model passes, then one artifact per target, then the report.

The library entry point behind ``vitopt compress``; the CLI only fills its arguments.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from vitopt.artifacts import TargetJob, run_target
from vitopt.convertibility import check_targets, raise_on_blockers
from vitopt.data import load_batch
from vitopt.environment import default_threads
from vitopt.evaluate import accuracy, evaluation_loader, torch_predict
from vitopt.exporters.base import staging_dir
from vitopt.flops import model_cost
from vitopt.formats import FORMATS
from vitopt.models import LoadedModel
from vitopt.passes import PassContext, pass_registry
from vitopt.recipe import PassStep, Recipe
from vitopt.report import build_report, write_report
from vitopt.verify import torch_logits

Step = Callable[[str], AbstractContextManager]


def compress(
    *,
    model: LoadedModel,
    recipe: Recipe,
    out_dir: str | Path,
    data: str | Path | None = None,
    eval_data: str | Path | None = None,
    eval_limit: int | None = None,
    step: Step | None = None,
) -> dict[str, Any]:
    """Run ``recipe`` on ``model``; write artifacts and ``report.json``/``report.md`` to ``out_dir``.

    ``data`` holds calibration images (default: the set shipped with vitopt); ``eval_data``
    a labelled set for accuracy. ``step(description)`` wraps each step (progress display).
    Returns the report as a dict.
    """
    step = step or (lambda _: nullcontext())
    out_dir = Path(out_dir)
    for target in recipe.targets:
        FORMATS.get(target.format).check_installed()
    with step("checking that every target accepts the model"):
        findings = check_targets(module=model.module, spec=model.spec, targets=_formats(recipe))
    raise_on_blockers(findings)  # before any pass: hours of compression for a target that rejects the model
    with step("loading calibration images"):
        images = load_batch(spec=model.spec, path=data, n=recipe.verify.n_images)
    original = copy.deepcopy(model.module).eval()
    candidate, pass_records = run_passes(model, recipe=recipe, images=images, step=step)
    rows, baseline = _run_targets(
        model, candidate=candidate, original=original, recipe=recipe, images=images,
        out_dir=out_dir, eval_data=eval_data, eval_limit=eval_limit, step=step,
        model_changed=bool(pass_records),
    )  # fmt: skip
    report = build_report(
        model=model, original=original, candidate=candidate, passes=pass_records,
        artifacts=rows, baseline=baseline, recipe=recipe, threads=_threads(recipe),
    )  # fmt: skip
    report["convertibility"] = {t: [f.to_dict() for f in fs] for t, fs in findings.items()}
    write_report(report, out_dir=out_dir)
    return report


def run_passes(model: LoadedModel, *, recipe: Recipe, images, step: Step) -> tuple[nn.Module, list]:
    """Apply the recipe's passes in order, recording time, params and FLOPs around each."""
    module, records = copy.deepcopy(model.module).eval(), []
    context = PassContext(spec=model.spec, calibration=images, teacher=model.module)
    for pass_step in recipe.passes:
        with step(f"pass {pass_step.name}"):
            module, record = _run_pass(pass_step, module, context=context)
        records.append(record)
    return module.eval(), records


def _run_pass(pass_step: PassStep, module: nn.Module, *, context: PassContext):
    the_pass = pass_registry().get(pass_step.name)(pass_step.build_options())
    before = model_cost(module, input_size=context.spec.input_size)
    start = time.perf_counter()
    result = the_pass.run(module, context=context)
    seconds = time.perf_counter() - start
    after = model_cost(result.module, input_size=context.spec.input_size)
    record = {
        "name": pass_step.name, "options": pass_step.options, "seconds": round(seconds, 3),
        "params_before": before.params, "params_after": after.params,
        "flops_before": before.flops, "flops_after": after.flops, "details": result.details,
    }  # fmt: skip
    return result.module, record


def _run_targets(model: LoadedModel, *, candidate, original, recipe, images, out_dir,
                 eval_data, eval_limit, step, model_changed) -> tuple[list, dict]:  # fmt: skip
    loader = None
    baseline: dict[str, Any] = {"model": "unmodified PyTorch model"}
    if eval_data is not None:
        loader = evaluation_loader(path=Path(eval_data), spec=model.spec, limit=eval_limit)
        with step("evaluating the unmodified model"):
            baseline["accuracy"] = accuracy(predict=torch_predict(original), loader=loader)
    rows = []
    with staging_dir(out_dir) as staging:
        job = TargetJob(
            target=recipe.targets[0], candidate=candidate, original=original,
            model_changed=model_changed, spec=model.spec, images=images,
            candidate_logits=torch_logits(candidate, images), original_logits=torch_logits(original, images),
            staging=staging, out_dir=out_dir, recipe=recipe, threads=_threads(recipe), eval_loader=loader,
        )  # fmt: skip
        for target in recipe.targets:
            with step(f"target {target.format} {target.precision}: export, verify, benchmark"):
                rows.append(run_target(_for(job, target)))
    return rows, baseline


def _for(job: TargetJob, target) -> TargetJob:
    return replace(job, target=target)


def _formats(recipe: Recipe) -> list[str]:
    return list(dict.fromkeys(t.format for t in recipe.targets))


def _threads(recipe: Recipe) -> int:
    return recipe.bench.threads or default_threads()
