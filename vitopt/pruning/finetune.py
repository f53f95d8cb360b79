"""KD fine-tunes for passes, through the trainer's ``fit`` (so DDP under torchrun, checkpoints and
resume come with it): the student learns from the unmodified model, and from labels where --data
has them (mixed by ``kd_alpha``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from torch import nn

from vitopt.errors import DataError
from vitopt.models import LoadedModel
from vitopt.passes import PassContext, PassOptions
from vitopt.train import TrainConfig, fit
from vitopt.train.state import STATE_FILE


class FinetuneOptions(PassOptions):
    epochs: int = Field(1, ge=0)
    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(128, ge=1)
    kd_temperature: float = Field(1.0, gt=0)
    kd_alpha: float = Field(0.5, ge=0, le=1)  # with labelled data: (1 - a) * task + a * KD; without: KD only
    warmup_epochs: float = Field(0.1, ge=0)
    bf16: bool | None = None  # default: where the CPU computes bf16 natively
    seed: int = 0
    images_per_epoch: int | None = Field(None, ge=1)  # default: all of --data each epoch


def require_data(context: PassContext, *, pass_name: str) -> Path:
    if context.data is None:
        raise DataError(f"pass {pass_name!r} trains the model and was given no images",
                        hint="pass --data PATH (a folder or tar of images; labels optional)")  # fmt: skip
    return Path(context.data)


def finetune(module: nn.Module, *, context: PassContext, options: FinetuneOptions, out_dir: Path, epochs: int,
             images_per_epoch: int | None = None, seed_offset: int = 0, eval_limit: int = 500) -> dict:  # fmt: skip
    """Train ``module`` in place; with --resume, from ``out_dir``'s checkpoint when one is there."""
    images_per_epoch = images_per_epoch or options.images_per_epoch
    from vitopt.environment import native_bf16

    config = TrainConfig(
        epochs=epochs, batch_size=options.batch_size, lr=options.lr, min_lr=options.lr / 100,
        warmup_epochs=min(options.warmup_epochs, epochs), kd_alpha=options.kd_alpha,
        kd_temperature=options.kd_temperature, bf16=native_bf16() if options.bf16 is None else options.bf16,
        seed=options.seed + seed_offset, eval_limit=eval_limit, images_per_epoch=images_per_epoch,
        checkpoint_minutes=5.0,
    )  # fmt: skip
    student = LoadedModel(module=module, spec=context.spec, source="pass", weights="pass", notices=[])
    teacher = LoadedModel(module=context.teacher, spec=context.spec, source="teacher", weights="", notices=[])
    out_dir.mkdir(parents=True, exist_ok=True)
    # this pass owns the folder: continue it with --resume, else start over (it may hold another model's run)
    resume = context.resume and (out_dir / STATE_FILE).is_file()
    summary = fit(model=student, data=require_data(context, pass_name="finetune"), out_dir=out_dir, config=config,
                  teacher=teacher, resume=resume, overwrite=not resume, show_progress=True)  # fmt: skip
    module.eval()
    return summary
