"""One pruning run: the step loop of the ``prune`` pass, with checkpoints after every slicing and
fine-tune so that it resumes exactly (see ``prune_state``)."""

from __future__ import annotations

import copy
import logging
import time
import zlib
from typing import Any

import torch
from torch import nn

from vitopt.errors import RunError
from vitopt.passes import PassContext, PassResult
from vitopt.pruning import prune_state, saliency
from vitopt.pruning.budget import BudgetCost
from vitopt.pruning.finetune import finetune
from vitopt.pruning.plan import PlanSettings, plan_step, reindex
from vitopt.pruning.prune_state import PruneProgress
from vitopt.train.distributed import World, all_sum, barrier, broadcast_object, init_world

log = logging.getLogger("vitopt")


class PruneRun:
    def __init__(self, *, original: nn.Module, family, context: PassContext, options, cost: BudgetCost) -> None:
        self.original, self.family, self.context, self.options, self.cost = original, family, context, options, cost
        self.work = context.work_dir / "prune"
        self.world: World = init_world()
        self.start_widths = family.read_widths(original)
        dims = tuple(d for d in options.dimensions if family.prunable(original, d))
        self.plan = PlanSettings(multiples=dict(options.multiples), dimensions=dims, eta=options.eta, rank=options.rank)
        self.module, self.progress = self._start()
        self._timer = None  # AgainstOriginal, on rank 0, once a latency budget is first measured

    def _start(self) -> tuple[nn.Module, PruneProgress]:
        options = self.options.model_dump()
        if self.context.resume:
            saved = prune_state.load(self.work, original=self.original, family=self.family, options=options)
            if saved is not None:
                log.info("resuming the pruning run in %s", self.work)
                return saved
        elif (self.work / prune_state.STATE_FILE).is_file() and self.world.is_main:
            log.warning("discarding an earlier interrupted pruning run in %s (use --resume to continue it)", self.work)
            prune_state.discard(self.work)
        barrier(self.world)
        return copy.deepcopy(self.original).eval(), PruneProgress()

    def execute(self) -> PassResult:
        try:
            while self.progress.step < self.options.steps + self.progress.extra_steps:
                if not self.progress.sliced:
                    self._prune_step(self.progress.step)
                self._finetune_step(self.progress.step)
                if self.progress.step >= self.options.steps + self.progress.extra_steps:
                    self._check_measured()
        finally:
            if self._timer is not None:
                self._timer.close()
        if not self.progress.final:
            self._final_finetune()
        return PassResult(self.module.eval(), self.details())

    def _prune_step(self, step: int) -> None:
        started = time.perf_counter()
        if self._latency_loop() and step > 0 and self._last_measured_step() != step:
            self._measure()  # the table's error on the model as it is now corrects this step's target
        scores = self._scores(step)
        widths = self.family.read_widths(self.module)
        target = self._step_target(step)
        keep = plan_step(widths=widths, scores=scores, cost=self.cost.of, target=target, settings=self.plan)
        self.family.slice_model(self.module, keep)
        after = self.family.read_widths(self.module)
        _check_ranks_agree(after, self.world)
        self.progress.ema = _to_str_keys(reindex(scores, keep))
        self.progress.log.append({"step": step + 1, "target": round(target, 6),
                                  "before": round(self.cost.of(widths), 6),
                                  "after": round(self.cost.of(after), 6), "correction": round(self._correction(), 4),
                                  "widths": after.to_dict(),
                                  "seconds_saliency_and_plan": round(time.perf_counter() - started, 1)})  # fmt: skip
        self.progress.sliced = True
        self._save()

    def _step_target(self, step: int) -> float:
        """Equal shares of the budget per step (an extra step: the budget itself), in table units: the real
        fraction divided by how far the table's prediction was off on the last measured model."""
        fraction = self.cost.fraction if step >= self.options.steps else \
            1 - (1 - self.cost.fraction) * (step + 1) / self.options.steps  # fmt: skip
        if self.cost.kind == "latency" and step + 1 >= self.options.steps:
            fraction *= 1 - self.options.latency_margin
        return self.cost.original * fraction / self._correction()

    def _latency_loop(self) -> bool:
        return self.cost.kind == "latency" and self.options.measure_steps

    def _correction(self) -> float:
        """Measured over predicted latency fraction of the last model timed on the target (1 before any)."""
        last = self.progress.measurements[-1] if self.progress.measurements else None
        return last["fraction"] / last["predicted_fraction"] if last else 1.0

    def _last_measured_step(self) -> int | None:
        return self.progress.measurements[-1]["step"] if self.progress.measurements else None

    def _measure(self) -> dict:
        """Time the current model against the original on the target runtime (rank 0; shared with all)."""
        from vitopt.pruning.latency_measure import AgainstOriginal

        seen = None
        if self.world.is_main:
            if self._timer is None:  # the original is exported once per run, not once per measurement
                self._timer = AgainstOriginal(self.original, spec=self.context.spec, target=self.context.targets[0],
                                              threads=self.context.threads)  # fmt: skip
            seen = self._timer.fraction(self.module)
        seen = broadcast_object(seen, self.world)
        predicted = self.cost.of(self.family.read_widths(self.module)) / self.cost.original
        seen.update(step=self.progress.step, predicted_fraction=round(predicted, 4))
        self.progress.measurements.append(seen)
        self._save()
        return seen

    def _check_measured(self) -> None:
        """Closed loop on a latency budget: after the last step, the pruned model is timed against the
        original; a miss beyond the tolerance adds one more step aimed at the corrected target."""
        if not self._latency_loop():
            return
        seen = self._measure()
        missed = seen["fraction"] > self.cost.fraction * (1 + self.options.latency_tolerance)
        if missed and self.progress.extra_steps < self.options.max_extra_steps:
            self.progress.extra_steps += 1
            self._save()

    def _scores(self, step: int) -> dict:
        options = self.options
        batches = self._saliency_batches(step)
        with self._bar(f"step {step + 1}/{options.steps}: saliency ({options.criterion})", len(batches)) as tick:
            scores = saliency.estimate(self.module, family=self.family, criterion=options.criterion,
                                       teacher=self.context.teacher, batches=batches, seed=options.finetune.seed + step,
                                       world=self.world, on_batch=tick)  # fmt: skip
        previous = _from_str_keys(self.progress.ema)
        return saliency.smooth(previous, scores, momentum=options.ema)

    def _saliency_batches(self, step: int) -> list[torch.Tensor]:
        """This rank's share of ``saliency_images`` images of --data, drawn anew (and seeded) each step."""
        if self.options.criterion == "magnitude":
            return []
        from vitopt.train.tensor_data import make_batch

        data = self._train_images()
        g = torch.Generator().manual_seed(self.options.finetune.seed * 7919 + step)
        chosen = torch.randperm(len(data), generator=g)[: self.options.saliency_images].tolist()
        mine = chosen[self.world.rank :: self.world.size]
        size = self.options.saliency_batch
        return [make_batch(data, mine[i : i + size], spec=self.context.spec, train=False, padding=None, hflip=False,
                           generator=None)[0] for i in range(0, len(mine), size)]  # fmt: skip

    def _train_images(self):
        from vitopt.train.tensor_data import load_tensor_images

        if not hasattr(self, "_images"):
            self._images = load_tensor_images(path=self.context.data, spec=self.context.spec)
        return self._images

    def _finetune_step(self, step: int) -> None:
        from vitopt.pruning.prune_pass import finetune_images

        images = finetune_images(self.options, len(self._train_images()))
        if self.options.step_epochs > 0:
            started = time.perf_counter()
            finetune(self.module, context=self.context, options=self.options.finetune,
                     out_dir=self.work / f"step-{step + 1}", epochs=1, images_per_epoch=images,
                     seed_offset=step + 1)  # fmt: skip
            self.progress.log[-1]["seconds_finetune"] = round(time.perf_counter() - started, 1)
        self.progress.step, self.progress.sliced = step + 1, False
        self._save()

    def _final_finetune(self) -> None:
        if self.options.finetune.epochs > 0:
            finetune(self.module, context=self.context, options=self.options.finetune, out_dir=self.work / "final",
                     epochs=self.options.finetune.epochs, seed_offset=1000)  # fmt: skip
        self.progress.final = True
        self._save()

    def _save(self) -> None:
        if self.world.is_main:
            prune_state.save(self.work, module=self.module, widths=self.family.read_widths(self.module),
                             progress=self.progress, options=self.options.model_dump())  # fmt: skip
        barrier(self.world)

    def _bar(self, description: str, total: int):
        from vitopt.pruning.progress import bar

        return bar(description, total, enabled=self.world.is_main and total > 0)

    def details(self) -> dict[str, Any]:
        end = self.family.read_widths(self.module)
        kind, fraction = self.options.budget
        return {
            "budget": {"kind": kind, "fraction": fraction, "unit": self.cost.unit,
                       "original": round(self.cost.original, 6), "target": round(self.cost.target, 6)},
            "predicted": {"value": round(self.cost.of(end), 6),
                          "fraction": round(self.cost.of(end) / self.cost.original, 4)},
            "criterion": self.options.criterion, "rank": self.options.rank, "eta": self.options.eta,
            "steps": self.progress.log,
            "measured_during_pruning": self.progress.measurements, "ranks": self.world.size,
            "widths_before": self.start_widths.to_dict(), "widths_after": end.to_dict(), "cost_info": self.cost.info,
        }  # fmt: skip


def _check_ranks_agree(widths, world: World) -> None:
    """Under DDP every rank must take the same decision (their scores are all-reduced); a rank that
    did not would train a different model shape and hang the next all-reduce, so stop here instead."""
    if not world.distributed:
        return
    mine = float(zlib.crc32(str(widths.to_dict()).encode()) % 1_000_003)  # hash() differs per process
    if all_sum([mine], world)[0] != mine * world.size:
        raise RunError("DDP ranks pruned to different widths", hint="report this with the recipe used")


def _to_str_keys(scores: dict) -> dict[str, torch.Tensor]:
    return {f"{dim}:{'' if block is None else block}": s for (dim, block), s in scores.items()}


def _from_str_keys(scores: dict[str, torch.Tensor] | None) -> dict | None:
    if scores is None:
        return None
    out = {}
    for key, s in scores.items():
        dim, block = key.split(":")
        out[dim, None if block == "" else int(block)] = s
    return out
