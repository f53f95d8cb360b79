"""Which models the pruning passes understand, and how: one adapter per family.

An adapter answers five questions about a model: its widths, whether a dimension may be pruned,
the per-unit sums of a per-weight quantity, how to slice it, and what one block of it looks like
at given widths (for the latency table).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from torch import nn

from vitopt.errors import UnsupportedOptionError

SUPPORTED = ("timm VisionTransformer models (ViT, DeiT, distilled DeiT, DeiT III, vitopt/vit-cifar10) and "
             "SwinTransformer models (heads and MLP width; flops or params budgets)")


@dataclass(frozen=True)
class Family:
    name: str
    module: ModuleType  # read_widths, prunable, unit_sums, slice_model, keep_first, costs (and latency probes)

    def __getattr__(self, attr: str):
        return getattr(self.module, attr)


def family_for(model: nn.Module) -> Family:
    """The adapter for ``model``, or one line naming what is supported."""
    from vitopt.pruning import swin, vit

    for name, adapter, matches in (("vit", vit, vit.is_vit), ("swin", swin, swin.is_swin)):
        if matches(model):
            reason = adapter.unsupported_reason(model)
            if reason is None:
                return Family(name, adapter)
            raise UnsupportedOptionError(f"cannot prune this {type(model).__name__}: {reason}", hint=SUPPORTED)
    raise UnsupportedOptionError(
        f"structural pruning does not support {type(model).__name__} models yet",
        hint=f"supported: {SUPPORTED}",
    )
