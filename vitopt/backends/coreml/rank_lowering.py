"""Every op on a tensor above rank 5 (Core ML's limit) rewritten as exact steps at rank <= 5.

Each value above rank 5 gets a stand-in holding the same elements in row-major order, flattened to one
dim, and each op reading or making such a value is rewritten to run on the fewest dims its meaning needs
(``rank_ops``): elementwise ops merge the runs of dims that are broadcast alike, so a rank-6 add with a
``[1, 2, 1, 2, 1, 1]`` scale runs at rank 4; a permute merges the dims that move together, and past five
runs becomes a chain of transpositions (``transpositions``); reshapes and copies are free on the flat
form; softmax, reductions, slices, select and cat merge the dims around the ones they act on.

Nothing is erased here: a rewritten node's readers move to the new nodes, and an op with no lowering
keeps reading the original rank > 5 values (then reported). Dead-code elimination drops what nobody
reads, so a partial lowering never changes what the graph computes; the exporter checks the result
numerically against the original on real images.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import fx
from torch.fx.node import map_arg

aten = torch.ops.aten
MAX_RANK = 5  # Core ML's limit on tensor rank


@dataclass
class Lowering:
    graph_module: fx.GraphModule
    flat: dict[fx.Node, fx.Node] = field(default_factory=dict)  # rank > 5 node -> its 1-D stand-in
    lowered: Counter = field(default_factory=Counter)  # op name -> nodes rewritten
    constants: list[str] = field(default_factory=list)  # rank > 5 attributes stored again flattened

    @property
    def graph(self) -> fx.Graph:
        return self.graph_module.graph

    def data(self, arg: fx.Node, shape: list[int]) -> fx.Node:
        """``arg``'s value (row-major) viewed as ``shape``; a reshape only where the layout differs."""
        source = self.flat.get(arg, arg)
        have = [numel(arg)] if arg in self.flat else shape_of(arg)
        if have == list(shape):
            return source
        return call(self.graph, aten.reshape.default, (source, list(shape)))

    def result(self, value: fx.Node, node: fx.Node) -> fx.Node:
        """``value`` (a lowered computation of ``node``) as the flat stand-in, or in ``node``'s own shape
        when that is within the limit."""
        shape = shape_of(node)
        target = [numel(node)] if len(shape) > MAX_RANK else shape
        return call(self.graph, aten.reshape.default, (value, target))


def lower_high_ranks(graph_module: fx.GraphModule) -> Lowering:
    """Rewrite, in place and in graph order, every node that makes or reads a value above rank 5."""
    from vitopt.backends.coreml.rank_ops import lowering_for

    low = Lowering(graph_module)
    for node in list(low.graph.nodes):
        if node.op not in ("call_function", "get_attr") or node in low.flat:
            continue
        high_out = rank_of(node) > MAX_RANK
        if not (high_out or any(arg in low.flat for arg in node.all_input_nodes)):
            continue
        if node.op == "get_attr":
            low.flat[node] = _flat_constant(low, node)
            continue
        rule, name = lowering_for(node.target), op_name(node.target)
        with low.graph.inserting_before(node):
            new = rule(low, node) if rule is not None and _static(node) else None
        if new is None:  # stays as traced; rewrite_graph lists what is still above rank 5 after DCE
            continue
        low.lowered[name] += 1
        if high_out:
            low.flat[node] = new
        else:
            node.replace_all_uses_with(new)
    return low


def call(graph: fx.Graph, target, args: tuple, kwargs: dict | None = None) -> fx.Node:
    """A new call node (at the insertion point) whose ``meta["val"]`` is computed on its inputs' fake values,
    so later rewrites read its shape as they read the traced nodes'."""
    node = graph.call_function(target, args, kwargs or {})
    values = map_arg((args, kwargs or {}), lambda n: n.meta.get("val"))
    if all(isinstance(n.meta.get("val"), (torch.Tensor, list, tuple)) for n in node.all_input_nodes):
        node.meta["val"] = target(*values[0], **values[1])
    return node


def _flat_constant(low: Lowering, node: fx.Node) -> fx.Node:
    """A rank > 5 parameter or buffer, stored again flattened (a rank-6 constant is itself rejected)."""
    value = functools.reduce(getattr, node.target.split("."), low.graph_module)
    name = f"{node.target.replace('.', '_')}_flat"
    low.graph_module.register_buffer(name, value.detach().reshape(-1).clone())
    low.constants.append(node.target)
    with low.graph.inserting_after(node):
        flat = low.graph.get_attr(name)
    flat.meta["val"] = node.meta["val"].reshape(-1)
    return flat


def drop_unread_constants(low: Lowering) -> None:
    """After dead-code elimination: delete the rank > 5 originals nobody reads any more (a re-export lifts
    every parameter of the module, read or not, and Core ML would be handed the rank-6 constant)."""
    read = {node.target for node in low.graph.nodes if node.op == "get_attr"}
    for target in set(low.constants) - read:
        owner, _, name = target.rpartition(".")
        delattr(low.graph_module.get_submodule(owner), name)


def _static(node: fx.Node) -> bool:
    """Every input a tensor of static shape, and the output one too (or a tuple of them: unbind, split)."""
    value = node.meta.get("val")
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    fixed = lambda v: isinstance(v, torch.Tensor) and all(isinstance(s, int) for s in v.shape)  # noqa: E731
    return all(fixed(v) for v in values) and all(fixed(n.meta.get("val")) for n in node.all_input_nodes)


def shape_of(node: fx.Node) -> list[int] | None:
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor) or not all(isinstance(s, int) for s in value.shape):
        return None
    return list(value.shape)


def rank_of(node: fx.Node) -> int:
    value = node.meta.get("val")
    return value.dim() if isinstance(value, torch.Tensor) else 0


def numel(node: fx.Node) -> int:
    return math.prod(shape_of(node))


def op_name(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}"
    return getattr(target, "__name__", str(target))
