"""The kinds of fold the pass counts and ``include_kinds`` selects, and whether two branches can merge.

conv_bn    Conv then BatchNorm (any groups, with or without conv bias)
linear_bn  Linear then BatchNorm (also through a reshape that keeps the features whole, as LeViT does)
bn_linear  BatchNorm then Linear (also through flatten/transpose, as FastViT's attention does)
bn_conv    BatchNorm then a conv without zero padding
scale      a per-channel scale (layer scale, a constant) folded into the conv/linear next to it
branches   parallel conv branches of one input summed: RepVGG, MobileOne, RepMixer, RepCPE
heads      parallel linear branches of one input: the distilled two-head classifier
"""

from __future__ import annotations

from typing import Literal

import torch

from vitopt.reparam.algebra import ConvTerm, FoldRefused
from vitopt.reparam.expr import Expr, Ident, Layer, Reshape, Scale, Sum
from vitopt.reparam.merge import plan_conv, plan_linear
from vitopt.reparam.ops import conv_padding

FoldKind = Literal["conv_bn", "linear_bn", "bn_linear", "bn_conv", "scale", "branches", "heads"]
ALL_KINDS: tuple[str, ...] = ("conv_bn", "linear_bn", "bn_linear", "bn_conv", "scale", "branches", "heads")


def sum_kind(expr: Expr) -> str | None:
    layers = expr.layers()
    if not layers:
        return None
    return "branches" if layers[0].space == "conv" else "heads"


def scale_kind(inner: Expr, *, batch_norm: bool) -> str | None:
    """The kind a per-channel op after ``inner`` needs; None when it folds into nothing (yet)."""
    layers = inner.layers()
    if not layers:
        return None
    if inner.has(Sum):
        return sum_kind(inner)
    return f"{layers[0].space}_bn" if batch_norm else "scale"


def pre_kind(pre: Expr, space: str) -> str | None:
    """The kind per-channel ops before a ``space`` layer need (None: there are none)."""
    scales = pre.scales()
    if not scales:
        return None
    return f"bn_{space}" if any(s.batch_norm is not None for s in scales) else "scale"


def identities(expr: Expr) -> int:
    """How many branches reach the source without a layer (the identity of RepVGG, RepMixer's x)."""
    if isinstance(expr, Ident):
        return 1
    if isinstance(expr, Sum):
        return sum(identities(term) for _, term in expr.terms)
    if isinstance(expr, (Scale, Reshape)):
        return identities(expr.inner)
    return 0


def has_identity(expr: Expr) -> bool:
    return identities(expr) > 0


def _geometry(layer: Layer) -> ConvTerm:
    m = layer.module
    weight = torch.empty(m.weight.shape, device="meta")
    return ConvTerm(weight, weight[:, 0, 0], tuple(m.stride), conv_padding(m), tuple(m.dilation), m.groups)


def _unify(a: int | None, b: int | None) -> tuple[bool, int | None]:
    return (a is None or b is None or a == b), (a if a is not None else b)


def check_sum(ea: Expr, eb: Expr, *, kinds: frozenset[str]) -> tuple[str | None, int | None]:
    """(why two branches of one source cannot be summed into one layer, or None; the channel axis)."""
    if ea.moves_axes() or eb.moves_axes():
        return "a branch reshapes its tensor", None
    ok, axis = _unify(ea.axis, eb.axis)
    if not ok:
        return "the branches scale different axes", None
    layers = ea.layers() + eb.layers()
    if not layers:
        return None, axis
    if len({layer.space for layer in layers}) > 1:
        return "conv and linear branches cannot merge", None
    kind = "branches" if layers[0].space == "conv" else "heads"
    if kind not in kinds:
        return f"fold kind {kind!r} is not in include_kinds", None
    return _geometry_problem(layers, identity=has_identity(ea) or has_identity(eb)), axis


def _geometry_problem(layers: list[Layer], *, identity: bool) -> str | None:
    try:
        if layers[0].space == "conv":
            plan_conv([_geometry(layer) for layer in layers], identity=identity)
        else:
            plan_linear([tuple(layer.module.weight.shape) for layer in layers], identity=identity)
    except FoldRefused as err:
        return str(err)
    return None
