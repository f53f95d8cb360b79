"""One epoch of training steps, with periodic and Ctrl-C checkpoints."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from vitopt.errors import RunError
from vitopt.train.distributed import all_sum
from vitopt.train.losses import training_loss
from vitopt.train.progress import epoch_progress
from vitopt.train.state import step_seed
from vitopt.train.tensor_data import make_batch


class StopRequested(RunError):
    """Ctrl-C during training: a checkpoint at (epoch, step) was written; --resume continues."""

    exit_code = 130
    label = "stopped"

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"interrupted at epoch {epoch + 1}, step {step}: checkpoint written",
                         hint="run the same command with --resume to continue")  # fmt: skip
        self.epoch, self.step = epoch, step


class EpochRunner:
    def __init__(self, run, *, checkpoint: Callable[[int, int], None]) -> None:
        self.run_ = run
        self.checkpoint = checkpoint
        self.stop_flag = False

    def run(self, epoch: int, *, start_step: int, show_progress: bool) -> dict[str, Any]:
        r, cfg = self.run_, self.run_.config
        batches = self._rank_batches(epoch)
        sums = torch.zeros(4, dtype=torch.float64)  # loss_sum, n, correct, agree
        started, last_save = time.perf_counter(), time.perf_counter()
        with epoch_progress(enabled=show_progress) as bar:
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=len(batches), completed=start_step,
                                loss=0.0, ips=0.0) if bar else None  # fmt: skip
            for step in range(start_step, len(batches)):
                if self.should_stop():
                    raise StopRequested(epoch, step)
                sums += self._step(batches[step], seed=step_seed(cfg.seed, epoch, step, r.world.rank))
                if time.perf_counter() - last_save > cfg.checkpoint_minutes * 60:
                    self.checkpoint(epoch, step + 1)
                    last_save = time.perf_counter()
                if bar:
                    done = step + 1 - start_step
                    bar.update(task, advance=1, loss=sums[0].item() / max(sums[1].item(), 1),
                               ips=done * cfg.batch_size / (time.perf_counter() - started))  # fmt: skip
        return self._epoch_record(epoch, sums, seconds=time.perf_counter() - started, steps=len(batches) - start_step)

    def _rank_batches(self, epoch: int) -> list[list[int]]:
        r = self.run_
        sampler = DistributedSampler(r.train_data, num_replicas=r.world.size, rank=r.world.rank, shuffle=True,
                                     seed=r.config.seed, drop_last=True)  # fmt: skip
        sampler.set_epoch(epoch)
        order, per_rank = list(sampler), max(1, r.config.batch_size // r.world.size)
        return [order[i * per_rank : (i + 1) * per_rank] for i in range(r.steps_per_epoch)]

    def _step(self, indices: list[int], *, seed: int) -> torch.Tensor:
        r, cfg = self.run_, self.run_.config
        torch.manual_seed(seed)  # dropout / drop-path draws: reproducible at any resume point
        generator = torch.Generator().manual_seed(seed)
        x, y = make_batch(r.train_data, indices, spec=r.model.spec, train=True, padding=cfg.crop_padding,
                          hflip=cfg.hflip, generator=generator)  # fmt: skip
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            teacher_logits = _teacher_logits(r.teacher, x)
            logits = r.module(x)
            loss = training_loss(logits, targets=y, teacher_logits=teacher_logits, config=cfg)
        r.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(r.model.module.parameters(), cfg.clip_grad)
        r.optimizer.step()
        r.scheduler.step()
        return _step_sums(loss, logits.detach(), y, teacher_logits)

    def should_stop(self) -> bool:
        """Every rank must stop at the same step, so the flag is summed across ranks."""
        return all_sum([float(self.stop_flag)], self.run_.world)[0] > 0

    def _epoch_record(self, epoch: int, sums: torch.Tensor, *, seconds: float, steps: int) -> dict[str, Any]:
        r = self.run_
        loss_sum, n, correct, agree = all_sum(sums.tolist(), r.world)
        record = {"epoch": epoch + 1, "phase": "train", "train_loss": loss_sum / max(n, 1),
                  "lr": r.scheduler.get_last_lr()[0], "seconds": round(seconds, 1),
                  "img_per_s": round(n / max(seconds, 1e-9), 1), "steps": steps}  # fmt: skip
        if bool((r.train_data.targets >= 0).all()):
            record["train_top1"] = correct / max(n, 1)
        if r.teacher is not None:
            record["train_agreement"] = agree / max(n, 1)
        return record


@torch.no_grad()
def _teacher_logits(teacher, x: torch.Tensor) -> torch.Tensor | None:
    return None if teacher is None else teacher(x).float()


def _step_sums(loss, logits, y, teacher_logits) -> torch.Tensor:
    pred = logits.argmax(1)
    agree = (pred == teacher_logits.argmax(1)).sum() if teacher_logits is not None else 0
    return torch.tensor([loss.item() * len(y), len(y), (pred == y).sum().item(), float(agree)], dtype=torch.float64)


@contextmanager
def catch_sigint(runner: EpochRunner):
    """First Ctrl-C: stop at the next step boundary with a checkpoint. Second: stop now."""

    def handler(signum, frame):
        if runner.stop_flag:
            raise KeyboardInterrupt
        runner.stop_flag = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
