"""Affine expressions over one source tensor, built from a traced graph, and their folded weights.

Each graph node gets an expression saying how its value depends *affinely* on one source node X:
``Ident`` (X itself), ``Layer`` (a conv/linear on X, possibly after per-channel scales), ``Scale``
(a per-channel affine op: BatchNorm, layer scale, constant), ``Reshape`` (a view or permutation
that keeps the channel axis whole; pass-through ops are reshapes that move nothing) and ``Sum``
(parallel branches of the same X added). A node whose value is not such an expression starts a new
source. ``materialize`` turns an expression into one ``Diag``, ``ConvTerm`` or ``LinearTerm``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch.fx as fx
from torch import nn

from vitopt.reparam.algebra import (
    ConvTerm,
    Diag,
    LinearTerm,
    bn_diag,
    conv_term,
    linear_term,
    scale_input,
    scale_output,
)
from vitopt.reparam.merge import merge_conv, merge_linear
from vitopt.reparam.ops import BatchNormCall, conv_padding
from vitopt.reparam.trace import shape_of

Folded = Diag | ConvTerm | LinearTerm


@dataclass(frozen=True, eq=False)
class Expr:
    node: fx.Node
    axis: int | None  # channel axis of the node's value; None while undetermined (an identity)

    def children(self) -> tuple[Expr, ...]:
        return ()

    def walk(self) -> Iterator[Expr]:
        yield self
        for child in self.children():
            yield from child.walk()

    @property
    def source(self) -> fx.Node:
        return self.children()[0].source

    def absorbed(self) -> list[fx.Node]:
        """Every node this expression replaces (all but the source), without duplicates."""
        return list(dict.fromkeys(e.node for e in self.walk() if not isinstance(e, Ident)))

    def layers(self) -> list[Layer]:
        return [e for e in self.walk() if isinstance(e, Layer)]

    def scales(self) -> list[Scale]:
        return [e for e in self.walk() if isinstance(e, Scale)]

    def has(self, kind: type) -> bool:
        return any(isinstance(e, kind) for e in self.walk())

    def moves_axes(self) -> bool:
        return any(isinstance(e, Reshape) and not e.pass_through for e in self.walk())


@dataclass(frozen=True, eq=False)
class Ident(Expr):
    @property
    def source(self) -> fx.Node:
        return self.node


@dataclass(frozen=True, eq=False)
class Layer(Expr):
    module: nn.Module
    path: str
    pre: Expr
    space: str  # "conv" or "linear"

    def children(self) -> tuple[Expr, ...]:
        return (self.pre,)


@dataclass(frozen=True, eq=False)
class Scale(Expr):
    inner: Expr
    input: fx.Node  # the data operand, what the node is bypassed to when its scale is folded away
    diag: Callable[[int], Diag]  # the per-channel map for a given channel count
    batch_norm: BatchNormCall | None = None

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)


@dataclass(frozen=True, eq=False)
class Reshape(Expr):
    inner: Expr
    pass_through: bool = False

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)


@dataclass(frozen=True, eq=False)
class Sum(Expr):
    terms: tuple[tuple[float, Expr], ...]

    def children(self) -> tuple[Expr, ...]:
        return tuple(term for _, term in self.terms)


def bn_scale(call: BatchNormCall) -> Callable[[int], Diag]:
    return lambda _channels: bn_diag(call.stats, eps=call.eps)


def channels(node: fx.Node, axis: int) -> int:
    return shape_of(node)[axis]


def materialize(expr: Expr, axis: int | None = None) -> Folded:
    """The weights ``expr`` folds into; ``axis`` is the channel axis when ``expr`` leaves it open."""
    axis = expr.axis if expr.axis is not None else axis
    if isinstance(expr, Ident):
        return Diag.identity(channels(expr.node, axis))
    if isinstance(expr, Reshape):
        # a pass-through moves nothing: scalars under it (StarReLU's scale and bias) take the caller's axis
        return materialize(expr.inner, axis if expr.pass_through else expr.inner.axis)
    if isinstance(expr, Layer):
        return _layer(expr)
    if isinstance(expr, Scale):
        inner, diag = materialize(expr.inner, axis), expr.diag(channels(expr.node, axis))
        return inner.then(diag) if isinstance(inner, Diag) else scale_output(inner, diag)
    return _sum(expr, axis)


def _layer(expr: Layer) -> ConvTerm | LinearTerm:
    if expr.space == "linear":
        term = linear_term(expr.module)
        pre_axis = len(shape_of(expr.pre.node)) - 1
    else:
        term = conv_term(expr.module, padding=conv_padding(expr.module))
        pre_axis = 1
    if not expr.pre.scales():
        return term
    return scale_input(term, materialize(expr.pre, pre_axis))


def _sum(expr: Sum, axis: int) -> Folded:
    branches = [(sign, materialize(term, axis)) for sign, term in expr.terms]
    if any(isinstance(b, ConvTerm) for _, b in branches):
        return merge_conv(branches)
    if any(isinstance(b, LinearTerm) for _, b in branches):
        return merge_linear(branches)
    result = Diag.identity(channels(expr.node, axis))
    result = Diag(result.s * 0, result.t * 0)
    for sign, branch in branches:
        result = result.plus(branch, sign)
    return result
