"""Any permutation of a rank > 5 tensor, run at rank <= 5 (Core ML's limit) as a chain of transpositions.

A permutation is a product of transpositions, and swapping two dims i < j of a contiguous tensor only
needs five groups: the dims before i, dim i, the dims between, dim j, the dims after; each group merged
into one dim. So the tensor goes from one five-group view to the next, never holding a rank > 5 view,
and ends in the permuted tensor's element order (at most rank - 1 copies instead of one). Used where
merging the dims that move together (``rewrites._lower_permute``) still leaves more than five runs.
"""

from __future__ import annotations

import math

import torch
from torch import fx

from vitopt.backends.coreml.rank_lowering import call

aten = torch.ops.aten


def swaps_for(perm: list[int]) -> list[tuple[int, int]]:
    """Position swaps (i < j) that turn the identity order into ``perm`` (selection order)."""
    order, swaps = list(range(len(perm))), []
    for position, wanted in enumerate(perm):
        found = order.index(wanted)
        if found != position:
            swaps.append((position, found))
            order[position], order[found] = order[found], order[position]
    return swaps


def five_groups(shape: list[int], i: int, j: int) -> list[int]:
    return [math.prod(shape[:i]), shape[i], math.prod(shape[i + 1 : j]), shape[j], math.prod(shape[j + 1 :])]


def permute_by_swaps(graph: fx.Graph, source: fx.Node, shape: list[int], perm: list[int]) -> fx.Node:
    """Nodes (inserted at the graph's current insertion point) computing ``source.view(shape).permute(perm)``
    in contiguous order, flattened to one dim; ``source`` holds ``prod(shape)`` elements in order."""
    current, out = list(shape), call(graph, aten.reshape.default, (source, [math.prod(shape)]))
    for i, j in swaps_for(perm):
        grouped = call(graph, aten.reshape.default, (out, five_groups(current, i, j)))
        swapped = call(graph, aten.permute.default, (grouped, [0, 3, 2, 1, 4]))
        out = call(graph, aten.reshape.default, (swapped, [math.prod(current)]))
        current[i], current[j] = current[j], current[i]
    return out
