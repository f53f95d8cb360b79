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


def _count_cpu_sdpa() -> None:
    """torch's counter knows the CUDA fused-attention ops but not the CPU one that SDPA dispatches to
    here, so attention matmuls were silently left out (a 6-block ViT at 65 tokens: ~6% of its FLOPs).
    Registered with torch's own SDPA formula."""
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op.default in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


_count_cpu_sdpa()


def count_params(module: nn.Module) -> int:
    """Unique parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def count_flops(module: nn.Module, *, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at ``input_shape`` (batch included)."""
    counter = FlopCounterMode(display=False)
    frozen = [p for p in module.parameters() if p.requires_grad]
    # The counter's module tracker hooks the gradient of every input that requires grad; a view of a
    # parameter made under no_grad (CaiT's expanded class token) requires grad but has no grad_fn, and
    # the hook asserts. Counting needs no gradients, so parameters stop requiring them meanwhile.
    try:
        for param in frozen:
            param.requires_grad_(False)
        with torch.no_grad(), counter:
            module(torch.zeros(input_shape))
    finally:
        for param in frozen:
            param.requires_grad_(True)
    return int(counter.get_total_flops())


def model_cost(module: nn.Module, *, input_size: tuple[int, int, int]) -> ModelCost:
    return ModelCost(
        params=count_params(module),
        flops=count_flops(module, input_shape=(1, *input_size)),
    )
