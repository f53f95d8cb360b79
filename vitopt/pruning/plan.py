"""Which units a pruning step removes: NViT's global ranking with a latency (or FLOPs, params) cost.

Every prunable dimension offers its next group: the ``multiple`` lowest-scoring units still there
(EMB, or a block's heads, QK, V or MLP). NViT's criterion is I(S) - eta * dCost(S), removing what
scores lowest. For a fixed eta that removes exactly the groups with I(S) / dCost(S) < eta; pruning
until a budget is met therefore means raising eta (the Lagrange multiplier of the cost constraint)
until enough groups fall under it, which is the same as removing groups in increasing order of
I(S) / dCost(S) (``rank: ratio``, the default). ``rank: penalty`` keeps the fixed-eta form with
both terms normalised by the step's totals, for ablation; with a fixed eta it favours the groups
that save the most cost (whole heads) whatever their saliency, which costs accuracy (bench/RESULTS.md).
Saliencies are compared globally, never rescaled per layer; costs are re-read after every removal,
since a block's latency is not additive in its widths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from vitopt.pruning.vit import Keep
from vitopt.pruning.widths import BLOCK_DIMENSIONS, Widths

Cost = Callable[[Widths], float]


@dataclass(frozen=True)
class PlanSettings:
    multiples: dict[str, int]
    dimensions: tuple[str, ...]  # which of emb, heads, qk, v, mlp may shrink
    eta: float
    rank: Literal["ratio", "penalty"] = "ratio"


@dataclass
class _State:
    widths: Widths
    removed: dict[tuple[str, int | None], list[int]]  # unit indices removed so far, per (dim, block)


def plan_step(*, widths: Widths, scores: dict, cost: Cost, target: float, settings: PlanSettings) -> Keep:
    """The units to keep so that ``cost(widths) <= target`` (or as close as the minimum widths allow)."""
    state = _State(widths=widths, removed={k: [] for k in scores})
    total_saliency = float(sum(s.sum() for s in scores.values())) or 1.0
    current = cost(widths)
    while current > target:
        best = _best_group(state, scores=scores, cost=cost, current=current, total=total_saliency, settings=settings)
        if best is None:
            break
        key, units, widths_after = best
        state.removed[key] += units
        state.widths, current = widths_after, cost(widths_after)
    return _keep(widths, state.removed)


def _best_group(state: _State, *, scores, cost: Cost, current: float, total: float, settings: PlanSettings):
    best, best_crit = None, float("inf")
    for key in scores:
        group = _next_group(state, key, scores=scores, settings=settings)
        if group is None:
            continue
        units, widths_after = group
        crit = _criterion(float(scores[key][units].sum()) / total, (current - cost(widths_after)) / current, settings)
        if crit < best_crit:
            best, best_crit = (key, units, widths_after), crit
    return best


def _criterion(saliency: float, saved: float, settings: PlanSettings) -> float:
    if settings.rank == "penalty":
        return saliency - settings.eta * saved
    return saliency / saved if saved > 0 else float("inf")  # a group that saves nothing goes last


def _next_group(state: _State, key, *, scores, settings: PlanSettings):
    dim, block = key
    if dim not in settings.dimensions:
        return None
    step = settings.multiples.get(dim, 1)
    width = state.widths.emb if dim == "emb" else state.widths.blocks[block].get(dim)
    if width - step < max(step, 1):  # never empty a dimension
        return None
    removed = set(state.removed[key])
    order = [int(i) for i in torch.argsort(scores[key]) if int(i) not in removed]
    units = order[:step]
    if dim == "emb":
        return units, Widths(emb=width - step, blocks=state.widths.blocks)
    return units, state.widths.with_block(block, state.widths.blocks[block].with_(dim, width - step))


def _keep(widths: Widths, removed: dict) -> Keep:
    def kept(key, n: int) -> torch.Tensor:
        gone = set(removed.get(key, []))
        return torch.tensor([i for i in range(n) if i not in gone], dtype=torch.long)

    blocks = tuple({d: kept((d, i), b.get(d)) for d in BLOCK_DIMENSIONS} for i, b in enumerate(widths.blocks))
    return Keep(emb=kept(("emb", None), widths.emb), blocks=blocks)


def reindex(scores: dict, keep: Keep) -> dict:
    """Scores of the units that remain, in their new order (for smoothing across steps)."""
    out = {}
    for (dim, block), s in scores.items():
        index = keep.emb if dim == "emb" else keep.blocks[block][dim]
        out[dim, block] = s[index]
    return out
