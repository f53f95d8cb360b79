"""Unit saliency: NViT's Hessian-aware score, with Taylor and magnitude for ablation.

NViT scores a group S by I(S) = (sum over w in S of w * dL/dw)^2 with L the distillation loss
against the unpruned model. At the start of pruning the student *is* the teacher, so the KD loss
sits at its minimum and its gradient is exactly zero: that squared gradient is the Fisher
approximation of the KD loss's Hessian only once it is taken in expectation. We therefore draw
the target of each image from the teacher's own predictive distribution (the Monte-Carlo form of
the KD loss: same expected loss, same expected gradient) so that E[(w . g)^2] = w^T F w, the
Fisher = Hessian of the KD loss at that point. One backward per batch, never per sample: the
cross terms of the batch sum vanish in expectation because E[g] = 0 under sampled targets, so
(sum over the batch)^2 / batch is an unbiased per-sample estimate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitopt.train.distributed import World, all_sum

Criterion = Literal["hessian", "taylor", "magnitude"]
Scores = dict[tuple[str, int | None], torch.Tensor]


def estimate(model: nn.Module, *, family, criterion: Criterion, teacher: nn.Module | None = None,
             batches: Iterable[torch.Tensor] = (), seed: int = 0, world: World | None = None,
             on_batch=None) -> Scores:  # fmt: skip
    """Per-unit scores of ``model`` (keys as ``family.unit_sums``); higher means more important.
    Under DDP every rank scores its own batches and the sums are all-reduced: identical scores,
    hence identical pruning decisions, on every rank."""
    if criterion == "magnitude":
        return family.unit_sums(model, lambda p: p.detach() ** 2)
    totals, count = None, 0
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    for x in batches:
        g = _batch_sums(model, family=family, teacher=teacher, x=x, generator=generator)
        step = {k: (v**2 / len(x)) if criterion == "hessian" else v.abs() for k, v in g.items()}
        totals = step if totals is None else {k: totals[k] + step[k] for k in totals}
        count += 1
        if on_batch:
            on_batch()
    if totals is None:
        raise ValueError("saliency needs at least one batch of images")
    return _mean_over_ranks(totals, count, world)


def _batch_sums(model, *, family, teacher, x: torch.Tensor, generator) -> Scores:
    with torch.no_grad():
        target = torch.multinomial(F.softmax(teacher(x).float(), dim=1), 1, generator=generator).squeeze(1)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x).float(), target, reduction="sum").backward()
    sums = family.unit_sums(model, lambda p: p.detach() * p.grad if p.grad is not None else torch.zeros_like(p))
    model.zero_grad(set_to_none=True)
    return sums


def _mean_over_ranks(totals: Scores, count: int, world: World | None) -> Scores:
    keys = list(totals)
    flat = torch.cat([totals[k].double() for k in keys] + [torch.tensor([float(count)], dtype=torch.float64)])
    if world is not None and world.distributed:
        flat = torch.tensor(all_sum(flat.tolist(), world), dtype=torch.float64)
    means, offset = {}, 0
    for k in keys:
        n = totals[k].numel()
        means[k] = (flat[offset : offset + n] / flat[-1]).float()
        offset += n
    return means


def smooth(previous: Scores | None, current: Scores, *, momentum: float) -> Scores:
    """EMA across pruning steps (NViT: 0.9). Units removed since ``previous`` are dropped by the
    caller re-indexing; here shapes must match, otherwise the new score is taken as is."""
    if previous is None:
        return current
    return {k: momentum * previous[k] + (1 - momentum) * v if k in previous and previous[k].shape == v.shape
            else v for k, v in current.items()}  # fmt: skip
