"""``vitopt train``, ``distill`` and ``eval``: the same functions the pruning passes call.

Under ``torchrun --nproc_per_node N -m vitopt.cli distill ...`` every rank runs the command and
the trainer joins the process group torchrun describes; only rank 0 writes and prints results.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vitopt.cli import app
from vitopt.cli.options import Debug, JsonOut, ModelName, ModelOptions, Threads, model_options
from vitopt.cli.support import handle_errors, load_for_cli, out, parse_assignments, step, write_json_file
from vitopt.errors import InputError

Data = Annotated[Path, typer.Option(help="Training images: ImageFolder directory or .tar of one.")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoint, metrics, weights.")]
Epochs = Annotated[int, typer.Option(min=1, help="Epochs to train.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Start afresh over the run in --out.")]
ValData = Annotated[Optional[Path], typer.Option(help="Labelled images evaluated after each epoch.")]
BatchSize = Annotated[Optional[int], typer.Option(min=1, help="Global batch size (split across ranks).")]
Lr = Annotated[Optional[float], typer.Option(help="Peak learning rate.")]
Bf16 = Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast (fast on CPUs with AMX).")]
Settings = Annotated[Optional[list[str]], typer.Option("--set", help="Any TrainConfig field: key=value.")]


def _train_config(*, epochs: int, batch_size, lr, bf16: bool, settings) -> Any:
    from pydantic import ValidationError

    from vitopt.train import TrainConfig

    values = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "bf16": bf16 or None}
    values = {k: v for k, v in values.items() if v is not None} | parse_assignments(settings, flag="--set")
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "settings"
        raise InputError(f"training setting {where}: {first['msg']}",
                         hint="fields: " + ", ".join(TrainConfig.model_fields)) from None  # fmt: skip


def _print_summary(summary: dict[str, Any]) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 speaks for the job
        return
    last = summary["last"]
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()}
    out.print(f"trained {summary['epochs']} epochs; last epoch: {shown}; weights: {summary['weights']}")


@app.command()
@handle_errors
@model_options(spec=False)
def train(
    model: ModelName, data: Data, out_dir: OutDir, epochs: Epochs = 10, resume: Resume = False,
    overwrite: Overwrite = False, val_data: ValData = None, batch_size: BatchSize = None, lr: Lr = None,
    bf16: Bf16 = False, settings: Settings = None, debug: Debug = False, model_options: ModelOptions = ModelOptions(),
) -> None:  # fmt: skip
    """Supervised training (cross-entropy with label smoothing) on labelled images."""
    from vitopt.train import fit
    from vitopt.train.loop import check_run_folder

    config = _train_config(epochs=epochs, batch_size=batch_size, lr=lr, bf16=bf16, settings=settings)
    check_run_folder(out_dir, resume=resume, overwrite=overwrite)
    loaded = model_options.load(model)
    _print_summary(fit(model=loaded, data=data, out_dir=out_dir, config=config, val_data=val_data, resume=resume,
                       overwrite=overwrite))


@app.command()
@handle_errors
@model_options(spec=False)
def distill(
    student: ModelName,
    teacher: Annotated[str, typer.Option(help="Teacher model (frozen, eval mode).")],
    data: Data, out_dir: OutDir, epochs: Epochs = 10, resume: Resume = False, overwrite: Overwrite = False,
    val_data: ValData = None,
    teacher_checkpoint: Annotated[Optional[Path], typer.Option(help="Teacher weights.")] = None,
    batch_size: BatchSize = None, lr: Lr = None, bf16: Bf16 = False,
    hard: Annotated[bool, typer.Option("--hard", help="Hard distillation (teacher argmax).")] = False,
    settings: Settings = None, debug: Debug = False, model_options: ModelOptions = ModelOptions(),
) -> None:  # fmt: skip
    """Knowledge distillation of STUDENT from --teacher (soft KD by default; labels used where present)."""
    from vitopt.train import fit
    from vitopt.train.loop import check_run_folder

    extra = [*(settings or []), *(["hard_distill=true"] if hard else [])]
    config = _train_config(epochs=epochs, batch_size=batch_size, lr=lr, bf16=bf16, settings=extra)
    check_run_folder(out_dir, resume=resume, overwrite=overwrite)
    teacher_model = load_for_cli(teacher, checkpoint=teacher_checkpoint, trust=model_options.trust_checkpoint)
    loaded = model_options.load(student)
    summary = fit(model=loaded, data=data, out_dir=out_dir, config=config, teacher=teacher_model,
                  val_data=val_data, resume=resume, overwrite=overwrite)  # fmt: skip
    _print_summary(summary)


@app.command(name="eval")
@handle_errors
@model_options(spec=False)
def eval_(
    model: Annotated[str, typer.Argument(help="A model (timm/vitopt name, file) or an exported artifact.")],
    data: Annotated[Path, typer.Option(help="Labelled images: ImageFolder directory or .tar of one.")],
    reference: Annotated[Optional[str], typer.Option(help="Compare with this model: agreement, KL.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on at most N images.")] = None,
    threads: Threads = None, json_out: JsonOut = None, debug: Debug = False,
    model_options: ModelOptions = ModelOptions(),
) -> None:  # fmt: skip
    """Top-1 (and top-5) accuracy of a model or artifact; with --reference, agreement and mean KL."""
    from vitopt.evaluate import evaluate, predictor_for

    kwargs = parse_assignments(model_options.model_arg, flag="--model-arg")
    with step(f"loading {model}"):
        predictor = predictor_for(name=model, threads=threads, checkpoint=model_options.checkpoint,
                                  trust_checkpoint=model_options.trust_checkpoint, model_kwargs=kwargs)  # fmt: skip
        ref = predictor_for(name=reference, threads=threads) if reference else None
    with step(f"evaluating on {data}"):
        result = evaluate(predictor=predictor, data=data, limit=limit, reference=ref)
    out.print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    if json_out:
        write_json_file(json_out, result)
