"""Arithmetic rules of the expression builder: sums of branches, constant scales and shifts.

``x + y`` of two expressions of the same source is a ``Sum`` (parallel branches); ``x * gamma``,
``x / 2``, ``x + beta`` and ``-x`` with a number or a per-channel parameter are ``Scale``s.
Anything else (a product of two activations, a constant that is not per-channel) starts a source.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx as fx

from vitopt.reparam import axes
from vitopt.reparam.algebra import Diag
from vitopt.reparam.expr import Expr, Ident, Sum
from vitopt.reparam.kinds import check_sum, sum_kind
from vitopt.reparam.ops import get_attr_value
from vitopt.reparam.trace import shape_of


def const_diag(value, *, shift: bool, sign: float = 1.0) -> Callable[[int], Diag]:
    """A per-channel map from a scalar or per-channel constant: ``value * x`` or (``shift``) ``sign*x + value``."""

    def diag(channels: int) -> Diag:
        v = torch.as_tensor(value).detach().to(torch.float64).reshape(-1).expand(channels).clone()
        return Diag(torch.full_like(v, sign), v) if shift else Diag(v, torch.zeros_like(v))

    diag.shift = shift
    return diag


class ArithRules:
    """Mixed into the builder; relies on its ``gm``, ``ctx``, ``out``, ``operand``, ``scale``."""

    def arith(self, node: fx.Node, kind: str) -> Expr:
        args = list(node.args)
        if node.kwargs or not all(isinstance(a, (fx.Node, int, float)) for a in args):
            return Ident(node, None)
        if kind == "neg":
            return self.scale(node, args[0], const_diag(-1.0, shift=False), None) if len(args) == 1 \
                else Ident(node, None)  # fmt: skip
        if len(args) != 2:
            return Ident(node, None)
        consts = [self.constant(a, node) for a in args]
        if consts[0] is None and consts[1] is None:
            if kind in ("add", "sub"):
                return self.sum(node, args[0], args[1], -1.0 if kind == "sub" else 1.0)
            return Ident(node, None)
        if consts[0] is not None and consts[1] is not None:
            return Ident(node, None)
        return self.affine_const(node, kind, args, consts)

    def affine_const(self, node: fx.Node, kind: str, args: list, consts: list) -> Expr:
        data_first = consts[1] is not None
        data, (value, axis) = (args[0], consts[1]) if data_first else (args[1], consts[0])
        if kind == "mul":
            diag = const_diag(value, shift=False)
        elif kind == "div" and data_first:
            diag = const_diag(1.0 / value, shift=False)
        elif kind == "add":
            diag = const_diag(value, shift=True)
        elif kind == "sub":  # x - c, or c - x
            diag = const_diag(-value if data_first else value, shift=True, sign=1.0 if data_first else -1.0)
        else:
            return Ident(node, None)
        return self.scale(node, data, diag, axis)

    def constant(self, arg, node: fx.Node):
        """(value, channel axis or None) for a number or a parameter/buffer operand, else None."""
        if isinstance(arg, bool):
            return None
        if isinstance(arg, (int, float)):
            return float(arg), None
        if arg.op != "get_attr":
            return None
        value = get_attr_value(self.gm, arg.target)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            return None
        axis = axes.constant_axis(value, shape_of(node))
        return None if axis == axes.BAD else (value, axis)

    def sum(self, node: fx.Node, a: fx.Node, b: fx.Node, sign: float) -> Expr:
        if not shape_of(a) == shape_of(b) == shape_of(node):
            return Ident(node, None)  # a broadcasting sum is not a sum of branches
        ea, eb = self.operand(a), self.operand(b)
        if ea.source is not eb.source:
            self.report_branches(node, ea, eb)
            return Ident(node, None)
        reason, axis = check_sum(ea, eb, kinds=self.ctx.kinds)
        if reason is not None:
            self.out.refusals.append((node, reason))
            return Ident(node, None)
        return Sum(node, axis, terms=((1.0, ea), (sign, eb)))

    def report_branches(self, node: fx.Node, ea: Expr, eb: Expr) -> None:
        """Two branches of one input meet here, but one went through a non-linear op: say why."""
        for linear, other in ((ea, eb), (eb, ea)):
            if linear.layers() and sum_kind(linear) in self.ctx.kinds and ancestor(linear.source, other.source):
                why = self.describe(other.source)
                self.out.refusals.append((node, f"a branch goes through {why}, which is not linear"))
                return


def ancestor(candidate: fx.Node, node: fx.Node) -> bool:
    """Whether ``candidate`` is ``node`` or feeds it."""
    seen, todo = set(), [node]
    while todo:
        current = todo.pop()
        if current is candidate:
            return True
        if current not in seen:
            seen.add(current)
            todo.extend(current.all_input_nodes)
    return False
