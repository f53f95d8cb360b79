"""From the expressions of a level to the folds to apply and the BatchNorms to explain.

A *maximal* expression is one no user extends. With a layer and per-channel ops around it, it is a
sequential fold (Conv+BN, BN+Linear, a layer scale); with a sum of branches, a merge; with no layer
at all, its BatchNorms stay, and the report says why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch.fx as fx

from vitopt.reparam.analysis import Build, describe
from vitopt.reparam.expr import Expr, Ident, Reshape, Sum
from vitopt.reparam.kinds import sum_kind
from vitopt.reparam.trace import data_users, shape_of


@dataclass
class Candidate:
    expr: Expr
    merge: bool
    kinds: Counter = field(default_factory=Counter)
    batch_norms: list[str] = field(default_factory=list)  # level-relative paths of the BatchNorms it absorbs


@dataclass
class Findings:
    candidates: list[Candidate]
    left: dict[str, str]  # level-relative BatchNorm path -> why it stays
    refusals: list[tuple[fx.Node, str]]  # sums of branches that could not merge


def _consumed(build: Build, node: fx.Node) -> bool:
    users = data_users(node)
    if len(users) != 1:
        return False
    return any(child is build.exprs[node] for child in build.exprs[users[0]].children())


def _metadata_only(node: fx.Node) -> bool:
    """Whether ``node`` and everything it feeds only look at metadata (shapes, asserts)."""
    return shape_of(node) is None and node.op != "output" and all(_metadata_only(u) for u in node.users)


def _self_contained(expr: Expr) -> bool:
    """Whether nothing outside a merge reads its inner nodes (other than shape asserts)."""
    inner = set(expr.absorbed()) - {expr.node}
    return all(u in inner or u is expr.node or _metadata_only(u) for n in inner for u in n.users)


def _batch_norms(expr: Expr) -> list[str]:
    return list(dict.fromkeys(s.batch_norm.path for s in expr.scales() if s.batch_norm is not None))


def sequential_kinds(expr: Expr) -> Counter:
    """One count per per-channel op folded into the single layer of ``expr``."""
    layer = expr.layers()[0]
    before = {id(s) for s in layer.pre.scales()}
    kinds = Counter()
    for scale in expr.scales():
        if scale.batch_norm is None:
            kinds["scale"] += 1
        elif id(scale) in before:
            kinds[f"bn_{layer.space}"] += 1
        else:
            kinds[f"{layer.space}_bn"] += 1
    return kinds


def _left_reason(gm: fx.GraphModule, build: Build, expr: Expr, path: str) -> str:
    if path in build.notes:
        return build.notes[path]
    scale = next(s for s in expr.scales() if s.batch_norm is not None and s.batch_norm.path == path)
    users = ", ".join(describe(gm, u) for u in expr.node.users) or "the output"
    return (
        f"no conv or linear layer to fold into: its input comes from {describe(gm, scale.input)}, "
        f"its output goes to {users}"
    )


def find(gm: fx.GraphModule, build: Build) -> Findings:
    """The folds of one level, the BatchNorms it leaves (with reasons) and the refused branch sums."""
    candidates, left = [], {}
    for node, expr in build.exprs.items():
        if isinstance(expr, Ident) or _consumed(build, node):
            continue
        while isinstance(expr, Reshape) and expr.pass_through:
            expr = expr.inner  # an Identity or Dropout after a fold stays where it is
        layers, batch_norms = expr.layers(), _batch_norms(expr)
        if not layers:
            left.update({p: _left_reason(gm, build, expr, p) for p in batch_norms})
        elif expr.has(Sum) and _self_contained(expr):
            candidates.append(Candidate(expr, True, Counter({sum_kind(expr): 1}), batch_norms))
        elif expr.scales():
            candidates.append(Candidate(expr, False, sequential_kinds(expr), batch_norms))
    for path, reason in build.notes.items():
        left.setdefault(path, reason)
    folded = {p for c in candidates for p in c.batch_norms}
    return Findings(candidates, {p: r for p, r in left.items() if p not in folded}, build.refusals)
