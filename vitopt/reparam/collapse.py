"""Apply folds by editing the module tree, keeping every untouched module (and its class) in place.

After a fold, a module whose forward has become a simple chain of its own children is replaced by
``nn.Sequential`` of those children: a BatchNorm that folded away becomes ``nn.Identity``, timm's
``BatchNormAct2d`` becomes ``Sequential(drop, act)``, a MobileOne block becomes
``Sequential(reparam_conv, se, act)`` and a RepVGG block a single conv. When the remaining forward
is anything else, :func:`plan` returns None and the level is rewritten as a GraphModule instead.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch.fx as fx
from torch import nn

from vitopt.reparam.trace import module_keys, shape_of


@dataclass
class Step:
    input: fx.Node
    output: fx.Node
    name: str
    module: nn.Module


@dataclass
class Replacement:
    path: str  # relative to the level; "" replaces the level module itself
    module: nn.Module


def unit_key(nodes: list[fx.Node]) -> str | None:
    """The call key of the innermost module whose forward emitted all of ``nodes`` (None: the level)."""
    prefix: list[str] | None = None
    for node in nodes:
        keys = module_keys(node)
        if prefix is None:
            prefix = keys
            continue
        common = 0
        while common < min(len(prefix), len(keys)) and prefix[common] == keys[common]:
            common += 1
        prefix = prefix[:common]
    return prefix[-1] if prefix else None


def _in_unit(node: fx.Node, key: str | None) -> bool:
    if node.op in ("placeholder", "output"):
        return False
    return key is None or key in module_keys(node)


def _child_key(node: fx.Node, key: str | None) -> str | None:
    keys = module_keys(node)
    index = keys.index(key) + 1 if key is not None else 0
    return keys[index] if index < len(keys) else None


def _is_compute(node: fx.Node) -> bool:
    return node.op in ("call_module", "call_function", "call_method") and shape_of(node) is not None


def _boundary(group: set[fx.Node]) -> tuple[set[fx.Node], set[fx.Node]]:
    inputs = {a for n in group for a in n.all_input_nodes if a not in group and a.op != "get_attr"}
    outputs = {n for n in group if any(u not in group for u in n.users)}
    return inputs, outputs


class _Planner:
    def __init__(self, gm: fx.GraphModule, level: nn.Module, bypass: dict[fx.Node, fx.Node]) -> None:
        self.gm, self.level, self.bypass = gm, level, bypass

    def resolve(self, node: fx.Node) -> fx.Node:
        while node in self.bypass:
            node = self.bypass[node]
        return node

    def steps(self, key: str | None, absorbed: set[fx.Node], merge: Step | None) -> list[Step] | None:
        nodes = [n for n in self.gm.graph.nodes if _in_unit(n, key)]
        by_child: dict[str, set[fx.Node]] = {}
        for node in nodes:
            child = _child_key(node, key)
            if child is None and _is_compute(node) and node not in absorbed:
                return None  # the unit's own forward still computes something: not a chain of children
            if child is not None:
                by_child.setdefault(child, set()).add(node)
        steps = [] if merge is None else [merge]
        for child, group in by_child.items():
            step = self._child_step(child, group, absorbed)
            if step is False:
                return None
            if step is not None:
                steps.append(step)
        order = {n: i for i, n in enumerate(self.gm.graph.nodes)}
        return sorted(steps, key=lambda s: order[s.output])

    def _child_step(self, child: str, group: set[fx.Node], absorbed: set[fx.Node]):
        computed = {n for n in group if _is_compute(n)}
        if computed and computed <= absorbed:
            return None  # folded away entirely
        if computed & absorbed or "@" in child:
            return False  # partly folded, or a module called twice: not a plain step
        inputs, outputs = _boundary(group)
        if len(inputs) != 1 or len(outputs) != 1:
            return False
        path = next(n for n in group).meta["nn_module_stack"][child][0]
        return Step(inputs.pop(), outputs.pop(), path.rpartition(".")[2], self.level.get_submodule(path))

    def chain(self, key: str | None, steps: list[Step]) -> bool:
        group = {n for n in self.gm.graph.nodes if _in_unit(n, key)}
        if key is None:
            inputs = {n for n in self.gm.graph.nodes if n.op == "placeholder" and any(map(_is_compute, n.users))}
            outputs = set(next(n for n in self.gm.graph.nodes if n.op == "output").all_input_nodes)
        else:
            inputs, outputs = _boundary(group)
        if len(inputs) != 1 or len(outputs) != 1:
            return False
        current = inputs.pop()
        for step in steps:
            if self.resolve(step.input) is not current:
                return False
            current = step.output
        return self.resolve(outputs.pop()) is current


def _build(steps: list[Step], merge: Step | None) -> nn.Module:
    if not steps:
        return nn.Identity()
    if len(steps) == 1 and steps[0] is merge:
        return merge.module
    return nn.Sequential(OrderedDict((s.name, s.module) for s in steps))


def unit_path(key: str | None, nodes) -> str:
    """The level-relative path of the module a unit key names ("" for the level itself)."""
    return "" if key is None else next(iter(nodes)).meta["nn_module_stack"][key][0]


class Collapser:
    """Plans one replacement per unit (module) given everything the level's folds remove."""

    def __init__(self, gm: fx.GraphModule, level: nn.Module, bypass: dict, absorbed: set[fx.Node]) -> None:
        self.planner, self.absorbed = _Planner(gm, level, bypass), absorbed

    def plan(self, key: str | None, nodes: set[fx.Node], merge: Step | None) -> Replacement | None:
        """The module replacing unit ``key``, or None when its remaining forward is not a chain."""
        if key is not None and "@" in key:
            return None
        steps = self.planner.steps(key, self.absorbed, merge)
        if steps is None or not self.planner.chain(key, steps):
            return None
        return Replacement(unit_path(key, nodes), _build(steps, merge))


def commit(level: nn.Module, replacements: list[Replacement]) -> nn.Module:
    """Install the replacements (deepest first); returns the level module or what replaced it."""
    for r in sorted(replacements, key=lambda r: -r.path.count(".") - bool(r.path)):
        if not r.path:
            return r.module.train(level.training)
        parent_path, _, name = r.path.rpartition(".")
        parent = level.get_submodule(parent_path)
        setattr(parent, name, r.module.train(getattr(parent, name).training))
    return level
