"""``compress``: model passes, then one artifact per target, then the report.

The library entry point behind ``vitopt compress``; the CLI only fills its arguments.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from vitopt.artifacts import RunContext, build_artifact, ship_chosen
from vitopt.convertibility import check_targets, raise_on_blockers
from vitopt.data import load_batch
from vitopt.environment import default_threads, isa_summary
from vitopt.errors import DataError
from vitopt.evaluate import accuracy, evaluation_loader, torch_predict
from vitopt.flops import ModelCost, model_cost
from vitopt.formats import FORMATS
from vitopt.measure import baselines_needed, export_baselines, measure_group
from vitopt.models import LoadedModel
from vitopt.passes import PassContext, pass_registry
from vitopt.pruning.saved import discard_work, save_if_restructured
from vitopt.publish import staging_dir
from vitopt.recipe import PassStep, Recipe
from vitopt.report import add_plot, build_report, failed, write_report
from vitopt.run_folder import check_free_space, check_output_folder, run_folder
from vitopt.select import choose
from vitopt.train.distributed import init_world
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
    resume: bool = False,
) -> dict[str, Any] | None:
    """Run ``recipe`` on ``model``; write artifacts and ``report.json``/``report.md`` to ``out_dir``.

    ``data`` holds calibration images (default: the set shipped with vitopt); ``eval_data``
    a labelled set for accuracy. ``step(description)`` wraps each step (progress display).
    Returns the report as a dict. Passes that train (``prune``, ``distill``) checkpoint under a work
    folder beside ``out_dir``; ``resume`` continues them. Under torchrun every rank runs the passes
    (data-parallel) and only rank 0 exports, measures and reports (the others return None).
    """
    step = step or (lambda _: nullcontext())
    out_dir = check_output_folder(out_dir)
    for target in recipe.targets:
        FORMATS.get(target.format).check_installed()
    _require_data_for_training(recipe, data=data)
    check_free_space(out_dir, needed_bytes=_expected_bytes(model, recipe))
    world = init_world()
    with step("checking that every target accepts the model"):
        findings = check_targets(module=model.module, spec=model.spec, targets=_formats(recipe))
    raise_on_blockers(findings)  # before any pass: hours of compression for a target that rejects the model
    with step("loading calibration images"):
        images = load_batch(spec=model.spec, path=data, n=recipe.verify.n_images)
        calibration = _calibration(recipe, data=data, spec=model.spec, images=images)
        labelled = _labelled(recipe, data=data, spec=model.spec)
    original = copy.deepcopy(model.module).eval()
    work = work_dir_for(out_dir)
    with run_folder(out_dir, active=world.is_main) as folder:  # the lock is held from here: one run per folder
        passes = run_passes(model, recipe=recipe, images=images, step=step, teacher=original, data=data,
                            work_dir=work, resume=resume)  # fmt: skip
        if folder is None:  # a torchrun rank other than 0
            return None
        loader, baseline = _evaluate_original(model, original=original, eval_data=eval_data, eval_limit=eval_limit,
                                              step=step)  # fmt: skip
        with staging_dir(folder.path) as staging:
            ctx = RunContext(
                candidate=passes.module, original=original, model_changed=bool(passes.records), spec=model.spec,
                images=images, candidate_logits=torch_logits(passes.module, images),
                original_logits=torch_logits(original, images), staging=staging, out_dir=folder.path,
                recipe=recipe, threads=_threads(recipe), eval_loader=loader, calibration=calibration,
                labelled=labelled,
            )  # fmt: skip
            rows = run_targets(ctx, step=step)
            saved = save_if_restructured(passes.module, model=model, staging=staging, out_dir=folder.path)
        report = build_report(
            model=model, passes=passes.records, costs=(passes.costs[0], passes.costs[-1]), artifacts=rows,
            baseline=baseline, recipe=recipe, threads=_threads(recipe), findings=findings,
        )  # fmt: skip
        if saved:
            report["pytorch_model"] = saved
        add_plot(report, out_dir=folder.path)
        report = folder.commit(report, write_report=write_report, failed=bool(failed(report)))
    discard_work(work)  # the run succeeded: its checkpoints are no longer needed
    return report


def _expected_bytes(model: LoadedModel, recipe: Recipe) -> int:
    """A generous bound on what the run writes: fp32 weights per candidate artifact, plus the pruned
    model and the float exports quantisers start from."""
    params = sum(p.numel() for p in model.module.parameters())
    artifacts = sum(len(t.candidates()) + 1 for t in recipe.targets) + 1
    return 4 * params * artifacts


def work_dir_for(out_dir: Path) -> Path:
    """Beside the output folder, not in it: a good earlier output stays untouched until publishing."""
    return out_dir.parent / f".{out_dir.name}.work"


def _require_data_for_training(recipe: Recipe, *, data) -> None:
    trainers = [p.name for p in recipe.passes if pass_registry().get(p.name).trains]
    if trainers and data is None:
        raise DataError(f"pass {trainers[0]!r} trains the model and needs images: none given",
                        hint="pass --data PATH (a folder or tar of images; labels optional)")  # fmt: skip


@dataclass(frozen=True)
class PassesRun:
    module: nn.Module
    records: list[dict[str, Any]]
    costs: list[ModelCost]  # the model's cost before the first pass and after each one


def run_passes(model: LoadedModel, *, recipe: Recipe, images, step: Step, teacher: nn.Module, data=None,
               work_dir: Path | None = None, resume: bool = False) -> PassesRun:  # fmt: skip
    """Apply the recipe's passes in order, recording time, params and FLOPs around each. ``teacher`` is an
    unmodified copy of the model that passes distil from (only ever run forward; the trainer freezes it)."""
    module = copy.deepcopy(model.module).eval()
    context = PassContext(spec=model.spec, calibration=images, teacher=teacher,
                          data=Path(data) if data else None, work_dir=work_dir, resume=resume,
                          targets=tuple(recipe.targets), threads=_threads(recipe))  # fmt: skip
    records, costs = [], [model_cost(module, input_size=model.spec.input_size)]
    for index, pass_step in enumerate(recipe.passes):
        context.extras["pass_index"] = index
        with step(f"pass {pass_step.name}"):
            module, record, cost = _run_pass(pass_step, module, context=context, before=costs[-1])
        records.append(record)
        costs.append(cost)
    return PassesRun(module.eval(), records, costs)


def _run_pass(pass_step: PassStep, module: nn.Module, *, context: PassContext, before: ModelCost):
    the_pass = pass_registry().get(pass_step.name)(pass_step.build_options())
    start = time.perf_counter()
    result = the_pass.run(module, context=context)
    seconds = time.perf_counter() - start
    after = model_cost(result.module, input_size=context.spec.input_size)
    record = {
        "name": pass_step.name, "options": pass_step.options, "seconds": round(seconds, 3),
        "params_before": before.params, "params_after": after.params,
        "flops_before": before.flops, "flops_after": after.flops, "details": result.details,
    }  # fmt: skip
    return result.module, record, after


def _evaluate_original(model: LoadedModel, *, original, eval_data, eval_limit, step: Step):
    """(the labelled loader or None, the baseline entry of the report)."""
    baseline: dict[str, Any] = {"model": "unmodified PyTorch model"}
    if eval_data is None:
        return None, baseline
    loader = evaluation_loader(path=Path(eval_data), spec=model.spec, limit=eval_limit)
    with step("evaluating the unmodified model"):
        baseline["accuracy"] = accuracy(predict=torch_predict(original), loader=loader)
    return loader, baseline


def run_targets(ctx: RunContext, *, step: Step) -> list[dict[str, Any]]:
    """Forward only: build every artifact (each candidate of ``precision: auto``), export the baselines
    they need, measure each target's artifacts together, then choose among candidates."""
    groups = [_build_group(ctx, target, step=step) for target in ctx.recipe.targets]
    needed, baselines = baselines_needed(ctx, groups), {}
    if needed:
        with step(f"exporting the unmodified model as latency baseline ({', '.join(k[0] for k in needed)})"):
            baselines = export_baselines(ctx, needed)
    rows = []
    for target, group in zip(ctx.recipe.targets, groups, strict=True):
        with step(f"target {target.format} {target.precision}: benchmark, evaluate"):
            measured = measure_group(ctx, group, baselines)
        if target.precision == "auto":
            chosen = choose(measured, settings=target.quantize, isa=isa_summary())
            measured = ship_chosen(chosen, group, out_dir=ctx.out_dir)
        rows += measured
    return rows


def _build_group(ctx: RunContext, target, *, step: Step) -> list:
    dest = ctx.out_dir / "candidates" if target.precision == "auto" else None
    group = []
    for candidate in target.candidates():
        with step(f"target {candidate.format} {candidate.precision}: export, verify"):
            group.append(build_artifact(ctx, candidate, dest=dest, candidate=dest is not None))
    return group


def _labelled(recipe: Recipe, *, data, spec):
    """(images, labels) of --data for quantisers that control accuracy, when --data is labelled."""
    sizes = [t.quantize.validation_images for t in recipe.targets
             if t.quantize.accuracy_control and (t.precision == "auto" or t.quantized) and _uses_labels(t)]  # fmt: skip
    if data is None or not sizes:
        return None
    try:
        loader = evaluation_loader(path=Path(data), spec=spec, limit=max(sizes), batch_size=max(sizes))
    except DataError:  # unlabelled images: calibration only
        return None
    return next(iter(loader))


def _uses_labels(target) -> bool:
    quantizer = FORMATS.get(target.format).quantizer_class()
    return quantizer is not None and quantizer.uses_labels


def _calibration(recipe: Recipe, *, data, spec, images):
    """Images for quantisers: as many as the largest quantised target asks for (default: the verify set)."""
    sizes = [t.quantize.calibration_images for t in recipe.targets if t.precision == "auto" or t.quantized]
    return load_batch(spec=spec, path=data, n=max(sizes)) if sizes else images


def _formats(recipe: Recipe) -> list[str]:
    return list(dict.fromkeys(t.format for t in recipe.targets))


def _threads(recipe: Recipe) -> int:
    return recipe.bench.threads or default_threads()
