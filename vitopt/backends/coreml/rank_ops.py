"""Per-op rules for ``rank_lowering``: each takes the lowering state and one node, inserts nodes computing
the same value with no tensor above rank 5, and returns the last one (None: this op cannot be lowered
here, and the node stays as it was).

Dims of size 1 hold no elements in any order, so every rule drops them before merging.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
from torch import fx
from torch.fx.node import map_arg

from vitopt.backends.coreml.rank_lowering import MAX_RANK, Lowering, call, shape_of
from vitopt.backends.coreml.transpositions import permute_by_swaps

aten = torch.ops.aten
Rule = Callable[[Lowering, fx.Node], "fx.Node | None"]


def broadcast_groups(out: list[int], shapes: list[list[int]]) -> list[list[int]]:
    """Runs of consecutive output dims (size-1 dims left out) that every operand broadcasts alike."""
    padded = [[1] * (len(out) - len(s)) + list(s) for s in shapes]
    groups, last = [], None
    for dim, size in enumerate(out):
        if size == 1:
            continue
        pattern = tuple(s[dim] == 1 for s in padded)
        if pattern == last:
            groups[-1].append(dim)
        else:
            groups.append([dim])
        last = pattern
    return groups or [list(range(len(out)))]


def merged(shape: list[int], groups: list[list[int]], rank: int) -> list[int]:
    padded = [1] * (rank - len(shape)) + list(shape)
    return [math.prod(padded[d] for d in group) for group in groups]


def around(shape: list[int], dim: int) -> list[int]:
    """[dims before, dim, dims after]: the three-dim view an op acting along one dim needs."""
    return [math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])]


def pointwise(low: Lowering, node: fx.Node) -> fx.Node | None:
    out = shape_of(node)
    operands = list(node.all_input_nodes)
    groups = broadcast_groups(out, [shape_of(n) for n in operands])
    if len(groups) > MAX_RANK:
        return _pointwise_sorted(low, node, operands)
    views = {n: low.data(n, merged(shape_of(n), groups, len(out))) for n in operands}
    return low.result(_same_op(low, node, views), node)


def _pointwise_sorted(low: Lowering, node: fx.Node, operands: list[fx.Node]) -> fx.Node | None:
    """Broadcast patterns alternating over more than five runs: permute every operand so dims broadcast
    alike sit together (at most one run per distinct pattern), compute, permute the result back."""
    out = shape_of(node)
    padded = {n: [1] * (len(out) - len(shape_of(n))) + shape_of(n) for n in operands}
    order = sorted(range(len(out)), key=lambda d: tuple(padded[n][d] == 1 for n in operands))
    sorted_out = [out[d] for d in order]
    groups = broadcast_groups(sorted_out, [[padded[n][d] for d in order] for n in operands])
    if len(groups) > MAX_RANK:
        return None
    views = {}
    for n in operands:
        moved = permuted(low, n, padded[n], order)
        views[n] = low.data(moved, merged([padded[n][d] for d in order], groups, len(out)))
    computed = _same_op(low, node, views)
    back = permuted(low, computed, sorted_out, [order.index(d) for d in range(len(out))])
    return low.result(back, node)


def _same_op(low: Lowering, node: fx.Node, views: dict[fx.Node, fx.Node]) -> fx.Node:
    args, kwargs = map_arg(node.args, views.__getitem__), map_arg(node.kwargs, views.__getitem__)
    return call(low.graph, node.target, args, kwargs)


def expand(low: Lowering, node: fx.Node) -> fx.Node | None:
    out, source = shape_of(node), node.args[0]
    groups = broadcast_groups(out, [shape_of(source)])
    if len(groups) > MAX_RANK:
        return None
    grown = call(low.graph, aten.expand.default, (low.data(source, merged(shape_of(source), groups, len(out))),
                                                          merged(out, groups, len(out))))  # fmt: skip
    return low.result(grown, node)


def permute(low: Lowering, node: fx.Node, perm: list[int] | None = None) -> fx.Node:
    shape = shape_of(node.args[0])
    perm = [d % len(shape) for d in (perm if perm is not None else node.args[1])]
    return low.result(permuted(low, node.args[0], shape, perm), node)


def permuted(low: Lowering, source: fx.Node, shape: list[int], perm: list[int]) -> fx.Node:
    """``source`` (holding ``prod(shape)`` elements) viewed as ``shape`` and permuted, at rank <= 5: the dims
    that move together merged, and past five runs a chain of transpositions (flat)."""
    kept = sorted(d for d in perm if shape[d] != 1)
    if not kept:  # one element, or none: every order is the same
        return low.data(source, [math.prod(shape)])
    position = {d: i for i, d in enumerate(kept)}
    runs = _adjacent_runs([position[d] for d in perm if shape[d] != 1])
    by_input = sorted(runs)
    sizes = [math.prod(shape[kept[i]] for i in run) for run in by_input]
    order = [by_input.index(run) for run in runs]
    if len(runs) > MAX_RANK:
        return permute_by_swaps(low.graph, low.data(source, [math.prod(shape)]), sizes, order)
    return call(low.graph, aten.permute.default, (low.data(source, sizes), order))


def transpose(low: Lowering, node: fx.Node) -> fx.Node:
    rank = len(shape_of(node.args[0]))
    perm = list(range(rank))
    a, b = node.args[1] % rank, node.args[2] % rank
    perm[a], perm[b] = perm[b], perm[a]
    return permute(low, node, perm)


def same_elements(low: Lowering, node: fx.Node) -> fx.Node:
    """Reshapes, squeezes, copies: the row-major elements do not change, only the shape read off them."""
    return low.result(low.data(node.args[0], [math.prod(shape_of(node.args[0]))]), node)


def along_dim(low: Lowering, node: fx.Node) -> fx.Node:
    """Softmax, slice, select, cumsum: ops along one dim (args[1]) see [before, dim, after]."""
    shape = shape_of(node.args[0])
    dim = (node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % len(shape)
    args = (low.data(node.args[0], around(shape, dim)), 1, *node.args[2:])
    kwargs = {key: value for key, value in node.kwargs.items() if key != "dim"}
    return low.result(call(low.graph, node.target, args, kwargs), node)


def roll(low: Lowering, node: fx.Node) -> fx.Node | None:
    """roll along each named dim in turn, each on the [before, dim, after] view."""
    shape, dims = shape_of(node.args[0]), list(node.args[2] if len(node.args) > 2 else [])
    if not dims:
        return None
    out = node.args[0]
    for shift, dim in zip(node.args[1], dims, strict=True):
        view = low.data(out, around(shape, dim % len(shape)))  # a fresh node has no shape: always reshaped
        out = call(low.graph, aten.roll.default, (view, [shift], [1]))
    return low.result(out, node)


def over_last_dims(low: Lowering, node: fx.Node) -> fx.Node:
    """linear / layer_norm act on the trailing dims (one for linear, len(normalized_shape) for layer_norm);
    the leading dims are independent rows, merged into one."""
    shape = shape_of(node.args[0])
    trailing = len(node.args[1]) if node.target == aten.layer_norm.default else 1
    rows = low.data(node.args[0], [math.prod(shape[:-trailing]), *shape[-trailing:]])
    return low.result(call(low.graph, node.target, (rows, *node.args[1:]), dict(node.kwargs)), node)


def pieces_along_dim(low: Lowering, node: fx.Node) -> fx.Node | None:
    """unbind / split along one dim: the pieces of the [before, dim, after] view, each read back (through
    its getitem) in the shape the original piece had."""
    shape = shape_of(node.args[0])
    dim_at = 1 if node.target == aten.unbind.int else 2
    dim = (node.args[dim_at] if len(node.args) > dim_at else node.kwargs.get("dim", 0)) % len(shape)
    getters = list(node.users)
    if not all(g.op == "call_function" and g.target is operator.getitem and shape_of(g) for g in getters):
        return None
    args = (low.data(node.args[0], around(shape, dim)), *node.args[1:dim_at], 1)
    pieces = call(low.graph, node.target, args)
    for getter in getters:
        piece = low.result(call(low.graph, operator.getitem, (pieces, getter.args[1])), getter)
        if len(shape_of(getter)) > MAX_RANK:
            low.flat[getter] = piece  # still above rank 5: its readers are lowered in turn
        else:
            getter.replace_all_uses_with(piece)
    return pieces


def concatenate(low: Lowering, node: fx.Node) -> fx.Node:
    parts = [n for n in node.args[0] if math.prod(shape_of(n))]
    dim = (node.args[1] if len(node.args) > 1 else 0) % len(shape_of(node))
    views = [low.data(n, around([1] * (len(shape_of(node)) - len(shape_of(n))) + shape_of(n), dim)) for n in parts]
    return low.result(call(low.graph, aten.cat.default, (views, 1)), node)


def reduction(low: Lowering, node: fx.Node) -> fx.Node | None:
    """sum/mean/amax/amin over dims: runs of reduced and kept dims merge; reduce with keepdim, then reshape."""
    shape = shape_of(node.args[0])
    dims = node.args[1] if len(node.args) > 1 and node.args[1] else range(len(shape))
    reduced = {d % len(shape) for d in dims}
    groups, flags = [], []
    for dim in range(len(shape)):
        if flags and flags[-1] == (dim in reduced):
            groups[-1].append(dim)
        else:
            groups.append([dim])
            flags.append(dim in reduced)
    if len(groups) > MAX_RANK:
        return None
    which = [i for i, flag in enumerate(flags) if flag]
    args = (low.data(node.args[0], merged(shape, groups, len(shape))), which, True, *node.args[3:])
    return low.result(call(low.graph, node.target, args, dict(node.kwargs)), node)


def _adjacent_runs(perm: list[int]) -> list[list[int]]:
    """Split a permutation into maximal runs of consecutive input dims, in output order."""
    runs = [[perm[0]]]
    for dim in perm[1:]:
        if dim == runs[-1][-1] + 1:
            runs[-1].append(dim)
        else:
            runs.append([dim])
    return runs


RULES: dict = {
    aten.permute.default: permute,
    aten.transpose.int: transpose,
    aten.expand.default: expand,
    aten.cat.default: concatenate,
    aten.roll.default: roll,
    **dict.fromkeys([aten.unbind.int, aten.split.Tensor, aten.split_with_sizes.default], pieces_along_dim),
    **dict.fromkeys([aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.squeeze.dim,
                     aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default, aten.clone.default,
                     aten.contiguous.default, aten.alias.default, aten.lift_fresh_copy.default], same_elements),
    **dict.fromkeys([aten.linear.default, aten.layer_norm.default], over_last_dims),
    **dict.fromkeys([aten._softmax.default, aten._log_softmax.default, aten.softmax.int, aten.log_softmax.int,
                     aten.slice.Tensor, aten.select.int,
                     aten.cumsum.default], along_dim),
    **dict.fromkeys([aten.sum.dim_IntList, aten.mean.dim, aten.amax.default, aten.amin.default], reduction),
}  # fmt: skip


def lowering_for(target) -> Rule | None:
    if target in RULES:
        return RULES[target]
    if isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags:
        return pointwise
    return None
