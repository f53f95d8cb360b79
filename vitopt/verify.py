"""Parity of an artifact with the PyTorch module it came from, on real images."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from vitopt.backends.runner import Runner


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    n_images: int
    tolerance_max_abs_diff: float
    tolerance_top1_agreement: float

    @property
    def passed(self) -> bool:
        return (
            self.max_abs_diff <= self.tolerance_max_abs_diff
            and self.top1_agreement >= self.tolerance_top1_agreement
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def torch_logits(module: nn.Module, images: torch.Tensor, *, chunk: int = 16) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([module(images[i : i + chunk]) for i in range(0, len(images), chunk)]).numpy()


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, *, max_abs_diff: float, min_top1_agreement: float
) -> Parity:
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    agree = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
    return Parity(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        top1_agreement=agree,
        n_images=len(reference),
        tolerance_max_abs_diff=max_abs_diff,
        tolerance_top1_agreement=min_top1_agreement,
    )


def check_parity(
    *, reference: np.ndarray, runner: Runner, images: torch.Tensor, max_abs_diff: float,
    min_top1_agreement: float,
) -> Parity:  # fmt: skip
    """Compare ``runner``'s logits with precomputed PyTorch ``reference`` logits."""
    candidate = runner.run_in_chunks(images.numpy())
    return compare_logits(
        reference, candidate, max_abs_diff=max_abs_diff, min_top1_agreement=min_top1_agreement
    )
