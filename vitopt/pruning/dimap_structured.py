"""DIMAP's structured mode: whole heads and MLP units, scored by summed module-aware importance, removed
through the family adapter's slicing (ViT, Swin v1 and v2).

Two rules decide how many units each module loses:
- ``rank: cost`` (default for a params/FLOPs target): every unit's score is normalised by its module's
  total (so heads and MLP units compare), divided by what removing it saves, and units go lowest first
  until the target is met; MLP units go in chunks of ``mlp_multiple`` so widths stay round.
- ``rank: latency``: the same, but a unit's price is the milliseconds it saves, measured per stage (ViT:
  one, Swin: four) on the first target's runtime (``unit_latency``); the budget is still FLOPs or params.
- ``rank: equal``: the same fraction of heads and of MLP units, lowest score first across blocks (a
  params/FLOPs target searches that fraction).
Measured on the Swin reference at 50% of the FLOPs, no fine-tune, 2,000 CIFAR-10 test images: top-1 0.631
with ``cost`` against 0.587 with ``equal`` (``bench/bench_dimap.py --parts rules``): a Swin's late-stage
heads see 16x fewer tokens than its early MLPs, so an equal fraction strips cheap, useful heads to reach a
FLOPs target.
"""

from __future__ import annotations

import math
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
Kept = dict[tuple[str, int], torch.Tensor]


def prune_structured(module: nn.Module, *, options, context=None) -> tuple[nn.Module, dict[str, Any]]:
    family = family_for(module)
    scores, before = dimap.unit_scores(module, family), family.read_widths(module)
    if options.sparsity is not None:
        kept, how = _equal(scores, options, fraction=options.sparsity), f"{options.sparsity:.0%} of each module"
    else:
        kind, target = ("params", options.params) if options.params is not None else ("flops", options.flops)
        budget = Budget(module, family, kind=kind, target=target)
        if options.rank == "equal":
            kept = _search_equal(scores, budget, options)
        else:
            ranking = _latency_costs(module, family, context) if options.rank == "latency" else None
            kept = _by_cost(scores, budget, options, ranking=ranking)
        how = f"{kind} {target} of the original, rank: {options.rank}"
    family.slice_model(module, _keep(before, kept))
    after = family.read_widths(module)
    return module, {"mode": "structured", "rank": options.rank, "family": family.name,
                    "criterion": "DIMAP module-aware importance, data-free", "summary": _summary(before, after, how),
                    "widths_before": before.to_dict(), "widths_after": after.to_dict()}  # fmt: skip


def _summary(before: Widths, after: Widths, how: str) -> str:
    def share(dim: str) -> float:
        return 1 - sum(b.get(dim) for b in after.blocks) / sum(b.get(dim) for b in before.blocks)

    return (f"Data-free ({how}): {share('heads'):.0%} of the heads and {share('mlp'):.0%} of the MLP units "
            "removed, lowest module-aware importance first across blocks.")


class Budget:
    """The model's params or FLOPs at given widths: the adapter's cost of the blocks plus the constant rest."""

    def __init__(self, module: nn.Module, family, *, kind: str, target: float) -> None:
        self.module, self.family, self.kind, self.target = module, family, kind, target
        self.widths = family.read_widths(module)
        self.whole = getattr(model_cost(module, input_size=_input_size(module)), kind)
        self.fixed = self.whole - family.blocks_cost(module, self.widths, kind)

    def fraction(self, widths: Widths) -> float:
        return (self.fixed + self.family.blocks_cost(self.module, widths, self.kind)) / self.whole

    def unit_cost(self, dim: str, block: int) -> float:
        """What one unit of ``dim`` in ``block`` costs (costs are linear in heads and in MLP width)."""
        b = self.widths.blocks[block]
        fewer = self.widths.with_block(block, b.with_(dim, b.get(dim) - 1))
        return (self.family.blocks_cost(self.module, self.widths, self.kind)
                - self.family.blocks_cost(self.module, fewer, self.kind))  # fmt: skip


def _latency_costs(module: nn.Module, family, context) -> dict:
    from vitopt.pruning.unit_latency import unit_costs_ms

    if context is None or not context.targets:
        raise UnsupportedOptionError("rank: latency needs a target to measure on", hint="add --target onnx")
    return unit_costs_ms(module, family=family, target=context.targets[0], threads=context.threads or 1,
                         progress=context.progress)  # fmt: skip


def _by_cost(scores: dict, budget: Budget, options, *, ranking: dict | None = None) -> Kept:
    """Chunks (one head, or ``mlp_multiple`` MLP units) in increasing order of normalised importance per
    cost saved (the budget's own cost, or ``ranking``'s measured milliseconds), removed until the budget
    holds; a block keeps ``min_heads``, one MLP chunk and ``min_keep``."""
    totals = {dim: sum(float(v.sum()) for k, v in scores.items() if k[0] == dim) for dim in ("heads", "mlp")}
    chunks = [c for key in scores for c in _chunks(key, scores[key], budget, options, totals[key[0]], ranking)]
    removed: dict[tuple[str, int], list[int]] = {key: [] for key in scores}
    left = budget.whole
    for _, key, units, cost in sorted(chunks, key=lambda c: c[0]):
        if left <= budget.target * budget.whole:
            break
        if len(scores[key]) - len(removed[key]) - len(units) >= _floor(key, len(scores[key]), options):
            removed[key] += units
            left -= cost
    if left > budget.target * budget.whole:
        raise UnsupportedOptionError(f"{budget.kind}: {budget.target} is out of reach for DIMAP's heads and MLP "
                                     f"units (at most down to {left / budget.whole:.2f})",
                                     hint="ask for a larger fraction")  # fmt: skip
    return {key: _without(len(v), removed[key]) for key, v in scores.items()}


def _floor(key: tuple[str, int], units: int, options) -> int:
    least = options.min_heads if key[0] == "heads" else options.mlp_multiple
    return max(least, math.ceil(options.min_keep * units))


def _chunks(key, score: torch.Tensor, budget: Budget, options, total: float, ranking: dict | None) -> list:
    """(rank, key, units, budget cost) per chunk: rank is normalised importance per unit of ranking cost."""
    size = 1 if key[0] == "heads" else options.mlp_multiple
    order = score.argsort().tolist()  # least important first: chunks of neighbours in importance
    unit = budget.unit_cost(key[0], key[1])
    price = ranking[key] if ranking is not None else unit
    groups = [order[i : i + size] for i in range(0, len(order) - len(order) % size, size)]
    return [(float(score[g].sum()) / total / (price * len(g)), key, g, unit * len(g)) for g in groups]


def _without(n: int, removed: list[int]) -> torch.Tensor:
    gone = set(removed)
    return torch.tensor([i for i in range(n) if i not in gone], dtype=torch.long)


def _equal(scores: dict, options, *, fraction: float) -> Kept:
    floors = {"heads": options.min_heads, "mlp": options.mlp_multiple}
    return dimap.structured_keep(scores, fraction=fraction, min_units=floors,
                                 multiple={"heads": 1, "mlp": options.mlp_multiple})  # fmt: skip


def _search_equal(scores: dict, budget: Budget, options) -> Kept:
    """The smallest equal fraction whose model keeps at most the target (bisection on the cost model)."""
    def fraction_kept(fraction: float) -> float:
        return budget.fraction(_widths(budget.widths, _equal(scores, options, fraction=fraction)))

    if fraction_kept(0.999) > budget.target:
        raise UnsupportedOptionError(f"{budget.kind}: {budget.target} is out of reach: removing all but the "
                                     f"minimum keeps {fraction_kept(0.999):.2f}",
                                     hint="ask for a larger fraction")  # fmt: skip
    low, high = 0.0, 0.999
    for _ in range(SEARCH_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if fraction_kept(mid) > budget.target else (low, mid)
    return _equal(scores, options, fraction=high)


def _keep(widths: Widths, kept: Kept) -> Keep:
    blocks = tuple({"heads": kept["heads", i], "mlp": kept["mlp", i], "qk": torch.arange(b.qk),
                    "v": torch.arange(b.v)} for i, b in enumerate(widths.blocks))  # fmt: skip
    return Keep(emb=torch.arange(widths.emb), blocks=blocks)


def _widths(widths: Widths, kept: Kept) -> Widths:
    blocks = tuple(b.with_("heads", len(kept["heads", i])).with_("mlp", len(kept["mlp", i]))
                   for i, b in enumerate(widths.blocks))  # fmt: skip
    return Widths(emb=widths.emb, blocks=blocks)


def _input_size(module: nn.Module) -> tuple[int, ...]:
    """The input size timm recorded (patch embedding's image size), for counting FLOPs."""
    embed = getattr(module, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is None:
        raise UnsupportedOptionError("cannot tell this model's input size for a FLOPs or params target",
                                     hint="use sparsity: instead")  # fmt: skip
    return (getattr(getattr(embed, "proj", None), "in_channels", 3), *size)
