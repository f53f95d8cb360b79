"""DIMAP's structured mode: whole heads and MLP units, scored by summed module-aware importance, removed
through the family adapter's slicing (ViT, Swin v1 and v2), to a unit sparsity or a searched
params/FLOPs target."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitopt.errors import UnsupportedOptionError
from vitopt.flops import model_cost
from vitopt.pruning import dimap
from vitopt.pruning.families import family_for
from vitopt.pruning.vit import Keep
from vitopt.pruning.widths import Widths

SEARCH_STEPS = 40


def prune_structured(module: nn.Module, *, options) -> tuple[nn.Module, dict[str, Any]]:
    family = family_for(module)
    scores = dimap.unit_scores(module, family)
    rule = {"min_units": {"heads": options.min_heads, "mlp": options.mlp_multiple},
            "multiple": {"heads": 1, "mlp": options.mlp_multiple}}  # fmt: skip
    before = family.read_widths(module)
    fraction = options.sparsity if options.sparsity is not None else _search(module, family, scores, rule, options)
    kept = dimap.structured_keep(scores, fraction=fraction, **rule)
    family.slice_model(module, _keep(before, kept))
    after = family.read_widths(module)
    budget = "given" if options.sparsity is not None else "searched for " + (
        f"params {options.params}" if options.params is not None else f"flops {options.flops}")
    summary = (f"Data-free: {fraction:.1%} of the heads and of the MLP units removed (one sparsity for both, "
               f"{budget} of the original), lowest summed importance first across blocks.")
    return module, {"mode": "structured", "unit_sparsity": round(fraction, 4), "family": family.name,
                    "criterion": "DIMAP module-aware importance, data-free", "summary": summary,
                    "widths_before": before.to_dict(), "widths_after": after.to_dict()}  # fmt: skip


def _keep(widths: Widths, kept: dict[tuple[str, int], torch.Tensor]) -> Keep:
    blocks = tuple({"heads": kept["heads", i], "mlp": kept["mlp", i], "qk": torch.arange(b.qk),
                    "v": torch.arange(b.v)} for i, b in enumerate(widths.blocks))  # fmt: skip
    return Keep(emb=torch.arange(widths.emb), blocks=blocks)


def _search(module: nn.Module, family, scores, rule, options) -> float:
    """The smallest unit sparsity whose model keeps at most the target fraction of params or FLOPs
    (bisection on the adapter's cost model; the parts never pruned are a constant)."""
    kind, target = ("params", options.params) if options.params is not None else ("flops", options.flops)
    widths = family.read_widths(module)
    whole = getattr(model_cost(module, input_size=_input_size(module)), kind)
    fixed = whole - family.blocks_cost(module, widths, kind)

    def fraction_kept(sparsity: float) -> float:
        kept = dimap.structured_keep(scores, fraction=sparsity, **rule)
        return (fixed + family.blocks_cost(module, _widths(widths, kept), kind)) / whole

    if fraction_kept(0.999) > target:
        raise UnsupportedOptionError(f"{kind}: {target} is out of reach: removing all but the minimum heads and "
                                     f"MLP units keeps {fraction_kept(0.999):.2f}",
                                     hint="ask for a larger fraction")  # fmt: skip
    low, high = 0.0, 0.999
    for _ in range(SEARCH_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if fraction_kept(mid) > target else (low, mid)
    return high


def _widths(widths: Widths, kept: dict[tuple[str, int], torch.Tensor]) -> Widths:
    blocks = tuple(b.with_("heads", len(kept["heads", i])).with_("mlp", len(kept["mlp", i]))
                   for i, b in enumerate(widths.blocks))  # fmt: skip
    return Widths(emb=widths.emb, blocks=blocks)


def _input_size(module: nn.Module) -> tuple[int, ...]:
    """The input size timm recorded (patch embedding's image size), for counting FLOPs."""
    size = getattr(getattr(module, "patch_embed", None), "img_size", None)
    channels = getattr(getattr(getattr(module, "patch_embed", None), "proj", None), "in_channels", 3)
    if size is None:
        raise UnsupportedOptionError("cannot tell this model's input size for a FLOPs or params target",
                                     hint="use sparsity: instead")  # fmt: skip
    return (channels, *size)
