"""Validation during training: top-1/top-5 where labels exist, agreement and KL with a teacher."""

from __future__ import annotations

from typing import Any

import torch

from vitopt.spec import ModelSpec
from vitopt.train.distributed import World, all_sum
from vitopt.train.losses import mean_kl
from vitopt.train.tensor_data import TensorImages, make_batch


@torch.no_grad()
def validate(module, *, data: TensorImages, spec: ModelSpec, world: World, teacher=None, limit: int | None,
             batch_size: int = 256, bf16: bool = False) -> dict[str, Any]:  # fmt: skip
    """Evaluate on an evenly spaced subset (``limit``), sharded across ranks and summed."""
    was_training = module.training
    module.eval()
    indices = _subset(len(data), limit)[world.rank :: world.size]
    sums = torch.zeros(6, dtype=torch.float64)  # n, top1, top5, labelled, agree, kl_sum
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        x, y = make_batch(data, chunk, spec=spec, train=False, padding=None, hflip=False, generator=None)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = module(x).float()
            ref = teacher(x).float() if teacher is not None else None
        sums += _batch_sums(logits, y, ref)
    module.train(was_training)
    return _summarise(all_sum(sums.tolist(), world), has_teacher=teacher is not None)


def _subset(n: int, limit: int | None) -> list[int]:
    if limit is None or limit >= n:
        return list(range(n))
    return [int(i * n / limit) for i in range(limit)]


def _batch_sums(logits: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
    labelled = y >= 0
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    out = torch.zeros(6, dtype=torch.float64)
    out[0] = len(y)
    out[1] = (logits.argmax(1) == y)[labelled].sum()
    out[2] = (top5 == y[:, None]).any(1)[labelled].sum()
    out[3] = labelled.sum()
    if ref is not None:
        out[4] = (logits.argmax(1) == ref.argmax(1)).sum()
        out[5] = mean_kl(logits, ref) * len(y)
    return out


def _summarise(sums: list[float], *, has_teacher: bool) -> dict[str, Any]:
    n, top1, top5, labelled, agree, kl = sums
    result: dict[str, Any] = {"n_images": int(n)}
    if labelled:
        result.update(top1=top1 / labelled, top5=top5 / labelled)
    if has_teacher:
        result.update(agreement=agree / max(n, 1), kl=kl / max(n, 1))
    return result
