"""Where a channel axis goes through a reshape or a permutation.

A row-major reshape keeps an axis of size C whole when the output has an axis b with
prod(out[:b]) == prod(in[:a]) and out[b] == C: every element then keeps its channel index.
"""

from __future__ import annotations

import math

import torch
import torch.fx as fx

from vitopt.reparam.ops import is_permute
from vitopt.reparam.trace import shape_of

BAD = -1  # a constant that does not broadcast along a single channel axis


def follow(gm: fx.GraphModule, node: fx.Node, data: fx.Node, axis: int) -> int | None:
    """The channel axis in ``node``'s output, given it is ``axis`` in ``data``; None when it is split or merged."""
    src, dst = shape_of(data), shape_of(node)
    if src is None or dst is None:
        return None
    if is_permute(node):
        return _permuted(node, axis, len(src))
    return _reshaped(src, dst, axis)


def _reshaped(src: tuple[int, ...], dst: tuple[int, ...], axis: int) -> int | None:
    before, size, acc = math.prod(src[:axis]), src[axis], 1
    for i, n in enumerate(dst):
        if acc == before and n == size:
            return i
        acc *= n
    return None


def _permuted(node: fx.Node, axis: int, ndim: int) -> int | None:
    dims = list(node.args[1:])
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    if node.kwargs or not dims or not all(isinstance(d, int) for d in dims):
        return None
    dims = [d % ndim for d in dims]
    if node.target in ("transpose", torch.transpose):
        if len(dims) != 2:
            return None
        swap = {dims[0]: dims[1], dims[1]: dims[0]}
        return swap.get(axis, axis)
    return dims.index(axis) if len(dims) == ndim else None


def constant_axis(value: torch.Tensor, out_shape: tuple[int, ...] | None) -> int | None:
    """The one axis a broadcast constant varies along (None: a scalar), or BAD."""
    if value.numel() == 1:
        return None
    if out_shape is None or value.dim() > len(out_shape):
        return BAD
    aligned = (1,) * (len(out_shape) - value.dim()) + tuple(value.shape)
    varying = [i for i, n in enumerate(aligned) if n != 1]
    if len(varying) == 1 and aligned[varying[0]] == out_shape[varying[0]]:
        return varying[0]
    return BAD
