"""``fit``: the training loop behind ``vitopt train``, ``vitopt distill`` and pruning fine-tunes.

Runs as one process or as one rank of a ``torchrun`` job; only rank 0 writes. A checkpoint is
written after every epoch, every ``checkpoint_minutes`` and on Ctrl-C, atomically, and
``resume=True`` continues at the exact step it stopped at.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from vitopt.errors import InputError
from vitopt.models import LoadedModel
from vitopt.train.config import TrainConfig
from vitopt.train.distributed import World, barrier, group_joined, init_world, shutdown
from vitopt.train.epoch import EpochRunner, StopRequested, catch_sigint
from vitopt.train.progress import append_metrics, console, read_metrics
from vitopt.train.state import STATE_FILE, load_state, save_state
from vitopt.train.tensor_data import TensorImages, load_tensor_images
from vitopt.train.validate import validate

METRICS_FILE, WEIGHTS_FILE = "metrics.jsonl", "model.safetensors"

log = logging.getLogger("vitopt")


@dataclass
class TrainRun:
    """Everything one run holds; built by ``fit``, driven epoch by epoch."""

    model: LoadedModel
    config: TrainConfig
    out_dir: Path
    world: World
    train_data: TensorImages
    val_data: TensorImages | None
    teacher: torch.nn.Module | None
    module: torch.nn.Module = field(init=False)
    optimizer: Any = field(init=False)
    scheduler: Any = field(init=False)
    steps_per_epoch: int = field(init=False)


def fit(*, model: LoadedModel, data: str | Path, out_dir: str | Path, config: TrainConfig,
        teacher: LoadedModel | None = None, val_data: str | Path | None = None, resume: bool = False,
        overwrite: bool = False, show_progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train ``model`` in place on ``data`` (with KD from ``teacher`` if given). Returns a summary.

    A run folder that holds a run is continued (``resume``) or started afresh (``overwrite``), never
    silently replaced."""
    check_run_folder(out_dir, resume=resume, overwrite=overwrite)
    if overwrite:
        _clear_run(Path(out_dir))
    joined = group_joined()  # a caller that runs several fits under torchrun keeps its process group
    world = init_world()
    _warn_if_bf16_is_emulated(config)
    torch.manual_seed(config.seed)
    run = TrainRun(model=model, config=config, out_dir=Path(out_dir), world=world,
                   train_data=_load_on_main_first(data, model, world), teacher=_frozen(teacher),
                   val_data=_load_on_main_first(val_data, model, world) if val_data else None)  # fmt: skip
    _build_optimisation(run)
    epoch, step = _resume_position(run) if resume else (0, 0)
    if not resume:
        _record_initial(run)
    try:
        return _train_epochs(run, start_epoch=epoch, start_step=step, show_progress=show_progress)
    finally:
        if not joined:
            shutdown(world)


def check_run_folder(out_dir: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start over a run without being told which of --resume and --overwrite is meant
    (checked before a model is loaded, so it changes nothing)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file", hint="training writes a run folder: pick a folder path")
    held = [name for name in (STATE_FILE, WEIGHTS_FILE, METRICS_FILE) if (out / name).is_file()]
    if resume and overwrite:
        raise InputError("--resume and --overwrite contradict each other", hint="give one of them")
    if held and not (resume or overwrite):
        raise InputError(f"--out {str(out)!r} already holds a training run ({', '.join(held)})",
                         hint="add --resume to continue it or --overwrite to start afresh")  # fmt: skip


def _clear_run(out: Path) -> None:
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 owns the folder
        for name in (STATE_FILE, WEIGHTS_FILE, METRICS_FILE):
            (out / name).unlink(missing_ok=True)


def _warn_if_bf16_is_emulated(config: TrainConfig) -> None:
    from vitopt.environment import native_bf16

    if config.bf16 and not native_bf16():
        log.warning("bf16 autocast on a CPU without AVX512-BF16 or AMX is emulated and far slower than fp32 "
                    "(measured ~14x on an AVX2-only CPU): consider training without --bf16")  # fmt: skip


def _frozen(teacher: LoadedModel | None) -> torch.nn.Module | None:
    if teacher is None:
        return None
    module = teacher.module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _load_on_main_first(path, model: LoadedModel, world: World) -> TensorImages:
    """Rank 0 decodes and caches; the others then read the cache instead of decoding too."""
    if world.is_main:
        data = load_tensor_images(path=path, spec=model.spec)
    barrier(world)
    return data if world.is_main else load_tensor_images(path=path, spec=model.spec)


def _build_optimisation(run: TrainRun) -> None:
    from timm.optim import create_optimizer_v2  # no weight decay on norms, biases and tokens

    cfg, world = run.config, run.world
    module = run.model.module.train()
    run.module = DistributedDataParallel(module) if world.distributed else module
    run.optimizer = create_optimizer_v2(module, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_rank = max(1, cfg.batch_size // world.size)
    images = min(len(run.train_data), cfg.images_per_epoch or len(run.train_data))
    run.steps_per_epoch = max(1, images // (per_rank * world.size))
    total, warmup = cfg.epochs * run.steps_per_epoch, cfg.warmup_epochs * run.steps_per_epoch
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, lambda s: _lr_factor(s, total=total, warmup=warmup, floor=cfg.min_lr / cfg.lr)
    )


def _lr_factor(step: int, *, total: int, warmup: float, floor: float) -> float:
    """Linear warm-up, then cosine decay to ``floor`` (as a fraction of the peak)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _resume_position(run: TrainRun) -> tuple[int, int]:
    state = load_state(run.out_dir / STATE_FILE)
    run.model.module.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.world.is_main:
        _drop_metrics_after(run.out_dir / METRICS_FILE, epoch=state["epoch"])
        console.print(f"resuming at epoch {state['epoch'] + 1}, step {state['step']}")
    return state["epoch"], state["step"]


def _drop_metrics_after(path: Path, *, epoch: int) -> None:
    """A kill after an epoch's metrics line but before its checkpoint: that epoch reruns, once."""
    kept = [m for m in read_metrics(path) if m["epoch"] <= epoch]
    path.write_text("".join(json.dumps(m) + "\n" for m in kept))


def _record_initial(run: TrainRun) -> None:
    """Before any step: the starting point every later epoch is compared with.
    Every rank validates (its shard; the sums meet in an all-reduce); rank 0 writes."""
    metrics = _val_metrics(run)
    if run.world.is_main:
        (run.out_dir / METRICS_FILE).unlink(missing_ok=True)
        append_metrics(run.out_dir / METRICS_FILE, {"epoch": 0, "phase": "initial", **metrics})


def _val_metrics(run: TrainRun) -> dict[str, Any]:
    data = run.val_data or (run.train_data if run.teacher is not None else None)
    if data is None:
        return {}
    metrics = validate(run.model.module, data=data, spec=run.model.spec, world=run.world, teacher=run.teacher,
                       limit=run.config.eval_limit, bf16=run.config.bf16)  # fmt: skip
    prefix = "val" if run.val_data is not None else "train_slice"
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def _train_epochs(run: TrainRun, *, start_epoch: int, start_step: int, show_progress: bool) -> dict[str, Any]:
    runner = EpochRunner(run, checkpoint=lambda e, s: _checkpoint(run, e, s))
    record: dict[str, Any] = {}
    with catch_sigint(runner):  # also during validation and checkpointing, not only in steps
        for epoch in range(start_epoch, run.config.epochs):
            record = _one_epoch(run, runner, epoch, start_step=start_step if epoch == start_epoch else 0,
                                show_progress=show_progress)  # fmt: skip
    _save_weights(run)
    return {"epochs": run.config.epochs, "last": record, "weights": str(run.out_dir / WEIGHTS_FILE)}


def _one_epoch(run: TrainRun, runner: EpochRunner, epoch: int, *, start_step: int,
               show_progress: bool) -> dict[str, Any]:  # fmt: skip
    try:
        record = runner.run(epoch, start_step=start_step, show_progress=show_progress and run.world.is_main)
    except StopRequested as stop:
        _checkpoint(run, stop.epoch, stop.step)
        raise
    record.update(_val_metrics(run))
    if run.world.is_main:  # the line first: a kill before the checkpoint reruns (and rewrites) it
        append_metrics(run.out_dir / METRICS_FILE, record)
        console.print(_epoch_line(record))
    _checkpoint(run, epoch + 1, 0)
    if epoch + 1 < run.config.epochs and runner.should_stop():
        raise StopRequested(epoch + 1, 0)
    return record


def _checkpoint(run: TrainRun, epoch: int, step: int) -> None:
    if not run.world.is_main:
        return
    save_state(run.out_dir / STATE_FILE, model=run.model.module, optimizer=run.optimizer,
               scheduler=run.scheduler, epoch=epoch, step=step, config=run.config.model_dump(),
               extra={"model_source": run.model.source, "saved_at": time.time()})  # fmt: skip


def _save_weights(run: TrainRun) -> None:
    from safetensors.torch import save_file

    if run.world.is_main:
        state = {k: v.detach().contiguous() for k, v in run.model.module.state_dict().items()}
        tmp = run.out_dir / f".{WEIGHTS_FILE}.tmp"
        save_file(state, str(tmp))
        tmp.replace(run.out_dir / WEIGHTS_FILE)
    barrier(run.world)


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"] + [
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k != "epoch"
    ]
    return ", ".join(parts)
