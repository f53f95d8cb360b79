"""Parameter and FLOP counts.

FLOPs come from ``torch.utils.flop_counter``, which counts one multiply-add as 2 FLOPs
(matmul, conv and scaled-dot-product attention); reports say so next to the number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_CONVENTION = "torch.utils.flop_counter: 1 multiply-add = 2 FLOPs, batch 1"


@dataclass(frozen=True)
class ModelCost:
    params: int
    flops: int

    def to_dict(self) -> dict[str, int]:
        return {"params": self.params, "flops": self.flops}


def count_params(module: nn.Module) -> int:
    """Unique parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def count_flops(module: nn.Module, *, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at ``input_shape`` (batch included)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(input_shape))
    return int(counter.get_total_flops())


def model_cost(module: nn.Module, *, input_size: tuple[int, int, int]) -> ModelCost:
    return ModelCost(
        params=count_params(module),
        flops=count_flops(module, input_shape=(1, *input_size)),
    )
