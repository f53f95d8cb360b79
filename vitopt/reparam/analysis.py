"""Build the affine expression of every node of a traced level (see ``expr.py``).

Walking the graph in order, each node either extends the expression of its input (a BatchNorm
after a conv, a conv after a BatchNorm, the sum of two branches of the same input) or starts a new
source. An expression is only extended through a node with a single user: a conv whose output is
also read elsewhere cannot absorb the BatchNorm that follows it. Where a fold is blocked, a note
says why, so the report can explain every BatchNorm and branch left behind.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from vitopt.reparam import axes
from vitopt.reparam.algebra import Diag
from vitopt.reparam.arith import ArithRules
from vitopt.reparam.expr import Expr, Ident, Layer, Reshape, Scale, Sum, bn_scale
from vitopt.reparam.kinds import pre_kind, scale_kind
from vitopt.reparam.ops import (
    arith_kind,
    batch_norm_call,
    conv_padding,
    is_flatten_module,
    is_pass_through,
    is_permute,
    is_reshape,
    layer_space,
    module_of,
)
from vitopt.reparam.trace import data_users, shape_of


@dataclass
class LevelContext:
    """What the analysis of one level may consult besides its graph."""

    gm: fx.GraphModule
    kinds: frozenset[str]
    calls: Callable[[str], int]  # how often the module at a level-relative path ran in the probe
    tied: Callable[[nn.Module], bool]  # whether a module's parameters are shared with another module


@dataclass
class Build:
    exprs: dict[fx.Node, Expr] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # level-relative BatchNorm path -> why it stays
    refusals: list[tuple[fx.Node, str]] = field(default_factory=list)  # branch sums that cannot merge
    frozen: dict[fx.Node, str] = field(default_factory=dict)  # layer calls that must not change, and why


class Builder(ArithRules):
    def __init__(self, ctx: LevelContext) -> None:
        self.ctx, self.gm, self.out = ctx, ctx.gm, Build()

    def run(self) -> Build:
        for node in self.gm.graph.nodes:
            self.out.exprs[node] = self.expr_for(node)
        return self.out

    def operand(self, node: fx.Node) -> Expr:
        """The expression a user may extend: a node read by several users is a source of its own."""
        expr = self.out.exprs[node]
        return expr if isinstance(expr, Ident) or len(data_users(node)) == 1 else Ident(node, None)

    def note(self, expr: Expr | None, reason: str) -> None:
        for scale in expr.scales() if expr is not None else ():
            if scale.batch_norm is not None:
                self.out.notes.setdefault(scale.batch_norm.path, reason)

    def expr_for(self, node: fx.Node) -> Expr:
        if shape_of(node) is None or node.op in ("placeholder", "get_attr"):
            return Ident(node, None)
        call = batch_norm_call(self.gm, node)
        if call is not None:
            return self.batch_norm(node, call)
        space = layer_space(self.gm, node)
        if space is not None:
            return self.layer(node, space)
        if is_pass_through(self.gm, node):
            return self.reshape(node, pass_through=True)
        if is_reshape(node) or is_permute(node) or is_flatten_module(self.gm, node):
            return self.reshape(node, pass_through=False)
        kind = arith_kind(node)
        return self.arith(node, kind) if kind else Ident(node, None)

    # -- BatchNorm and other per-channel scales ------------------------------------------------
    def batch_norm(self, node: fx.Node, call) -> Expr:
        data = node.args[0] if node.args else None
        if not isinstance(data, fx.Node):
            return Ident(node, None)
        inner = self.operand(data)
        self._explain_input(call, data, inner)
        blocked = self._bn_blocker(call, inner)
        if blocked is not None:
            self.out.notes.setdefault(call.path, blocked)
            return Ident(node, None)
        return Scale(node, 1, inner=inner, input=data, diag=bn_scale(call), batch_norm=call)

    def _bn_blocker(self, call, inner: Expr) -> str | None:
        """Why this BatchNorm cannot take part in any fold, or None."""
        blocked = call.problem or self._shared(call.path, what="BatchNorm")
        if blocked is None and inner.axis not in (None, 1):
            blocked = f"it normalises axis 1, but its input's channels are on axis {inner.axis}"
        kind = scale_kind(inner, batch_norm=True)
        if blocked is None and kind is not None and kind not in self.ctx.kinds:
            blocked = f"fold kind {kind!r} is not in include_kinds"
        return blocked

    def _explain_input(self, call, data: fx.Node, inner: Expr) -> None:
        """Notes for the report, kept only if this BatchNorm ends up folded nowhere."""
        if data in self.out.frozen:
            self.out.notes.setdefault(call.path, self.out.frozen[data])
        if self.out.exprs[data].layers() and isinstance(inner, Ident):
            others = f"its input ({self.describe(data)}) is also read by {len(data_users(data)) - 1} other op(s)"
            self.out.notes.setdefault(call.path, others)

    def scale(self, node: fx.Node, data: fx.Node, diag: Callable[[int], Diag], axis: int | None) -> Expr:
        inner = self.operand(data)
        if node.op == "call_method" and node.target.endswith("_") and len(data.users) > 1:
            return Ident(node, None)  # an in-place op on a tensor others read: not a pure function
        if shape_of(data) != shape_of(node):
            return Ident(node, None)  # the constant broadcasts the tensor to a new shape
        if axis is not None and inner.axis not in (None, axis):
            return Ident(node, None)
        kind = scale_kind(inner, batch_norm=False)
        if kind is not None and kind not in self.ctx.kinds:
            return Ident(node, None)
        return Scale(node, inner.axis if inner.axis is not None else axis, inner=inner, input=data, diag=diag)

    # -- layers ------------------------------------------------------------------------------------
    def layer(self, node: fx.Node, space: str) -> Expr:
        module = module_of(self.gm, node)
        blocked = self._shared(node.target, what=space) or ("its parameters are tied to another module"
                                                             if self.ctx.tied(module) else None)  # fmt: skip
        data = node.args[0]
        if blocked is not None:
            self.note(self.out.exprs.get(data), f"the {space} it feeds ({node.target}) cannot change: {blocked}")
            self.out.frozen[node] = f"the {space} before it ({node.target}) cannot change: {blocked}"
            return Ident(node, None)
        pre = self.operand(data)
        if not isinstance(pre, Ident) and not self._pre_ok(pre, module, space, data):
            pre = Ident(data, None)
        axis = 1 if space == "conv" else len(shape_of(node)) - 1
        return Layer(node, axis, module=module, path=node.target, pre=pre, space=space)

    def _pre_ok(self, pre: Expr, module: nn.Module, space: str, data: fx.Node) -> bool:
        """Whether the per-channel ops before a layer fold into it (and a note when they do not)."""
        want = 1 if space == "conv" else len(shape_of(data)) - 1
        reason = None
        if pre.layers() or pre.has(Sum):
            reason = "it is part of a larger expression"
        elif pre.axis not in (None, want):
            reason = f"the channels it scales (axis {pre.axis}) are not the ones the {space} mixes (axis {want})"
        elif space == "conv" and pre.moves_axes():
            reason = "a reshape sits between it and the conv"
        elif space == "conv" and _shifts(pre) and any(conv_padding(module)):
            reason = "the conv after it zero-pads its input, and padding would not see the BatchNorm's shift"
        elif (kind := pre_kind(pre, space)) is not None and kind not in self.ctx.kinds:
            reason = f"fold kind {kind!r} is not in include_kinds"
        if reason is not None:
            self.note(pre, reason)
        return reason is None

    # -- reshapes, pass-through ops --------------------------------------------------------------------
    def reshape(self, node: fx.Node, *, pass_through: bool) -> Expr:
        data = node.args[0]
        inner = self.operand(data) if isinstance(data, fx.Node) else None
        if inner is not None and pass_through:
            return Reshape(node, inner.axis, inner=inner, pass_through=True)
        if inner is None or isinstance(inner, Ident):
            return Ident(node, None)
        axis = axes.follow(self.gm, node, data, inner.axis) if inner.axis is not None else None
        if axis is None or inner.has(Sum):
            self.note(inner, f"{self.describe(node)} splits or merges its channel axis")
            return Ident(node, None)
        return Reshape(node, axis, inner=inner)

    def describe(self, node: fx.Node) -> str:
        return describe(self.gm, node)

    def _shared(self, path: str, *, what: str) -> str | None:
        calls = self.ctx.calls(path)
        return f"the {what} module {path!r} runs {calls} times (shared)" if calls > 1 else None


def _shifts(expr: Expr) -> bool:
    """Whether the per-channel ops add a shift (a BatchNorm, ``x + beta``), which zero padding would not see."""
    return any(s.batch_norm is not None or getattr(s.diag, "shift", True) for s in expr.scales())


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """A short human name for what a node computes."""
    if node.op == "call_module":
        return f"{node.target} ({type(module_of(gm, node)).__name__})"
    if node.op == "placeholder":
        return "the module input"
    if node.target is operator.getitem:
        index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        strided = any(isinstance(i, slice) and i.step not in (None, 1) for i in index)
        return f"{'a strided slice' if strided else 'an index'} ({node.name})"
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{name} ({node.name})"
