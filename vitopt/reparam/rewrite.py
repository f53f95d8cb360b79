"""Apply the folds found in one level: new weights first, then the module tree or the graph.

Weights are computed for every fold before anything changes. A sequential fold writes into its
conv/linear in place and bypasses the folded BatchNorms and scales; a merge builds one new
conv/linear for the whole sum. The module tree is edited where the result is a chain of existing
children (:mod:`collapse`); otherwise the level becomes an ``fx.GraphModule`` of its traced
forward with the folded nodes removed (parameter names of everything kept stay the same).
Either way the caller of what is replaced is not rewritten: a replacement must take every call the
module took, or the folds that need it are refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from vitopt.errors import one_line
from vitopt.reparam import collapse
from vitopt.reparam.algebra import ConvTerm, FoldRefused
from vitopt.reparam.candidates import Candidate
from vitopt.reparam.expr import materialize
from vitopt.reparam.merge import conv_module, linear_module, write_term
from vitopt.reparam.trace import is_none_guard, module_keys, reads_data, shape_of

KEEP_ATTRIBUTE_TYPES = (int, float, str, bool, dict, list, tuple, type(None))
PLAIN_DEFAULT_TYPES = (bool, int, float, str, type(None))
# parameter kinds fx turns into positional-or-keyword ones: every call the original accepts still binds the same
LOOSENED_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.KEYWORD_ONLY)


@dataclass
class Applied:
    module: nn.Module  # the level module after the folds (itself, or what replaced it)
    folds: list[Candidate] = field(default_factory=list)
    refused: list[tuple[Candidate, str]] = field(default_factory=list)
    deferred: set[str] = field(default_factory=set)  # modules (level-relative) whose folds need a local rewrite
    graph_rewrite: bool = False


@dataclass(eq=False)
class _Edit:
    candidate: Candidate
    folded: object
    new: nn.Module | None = None  # a merge's new layer
    step: collapse.Step | None = None


@dataclass
class _Unit:
    nodes: set = field(default_factory=set)
    merge: collapse.Step | None = None
    edits: list[_Edit] = field(default_factory=list)
    shared_merge: bool = False  # two merges would both replace this module


def _prepare(level: nn.Module, candidates: list[Candidate], out: Applied) -> list[_Edit]:
    edits = []
    for candidate in candidates:
        try:
            folded = materialize(candidate.expr)
        except FoldRefused as err:
            out.refused.append((candidate, str(err)))
            continue
        edit = _Edit(candidate, folded)
        if candidate.merge:
            edit.new = _new_layer(level, candidate, folded)
            edit.step = collapse.Step(candidate.expr.source, candidate.expr.node, _base_name(edit.new), edit.new)
        edits.append(edit)
    return edits


def _new_layer(level: nn.Module, candidate: Candidate, folded) -> nn.Module:
    like = level.get_submodule(candidate.expr.layers()[0].path)
    return conv_module(folded, like=like) if isinstance(folded, ConvTerm) else linear_module(folded, like=like)


def _base_name(new: nn.Module) -> str:
    """What a merged layer is called in its new parent (timm's deploy-mode blocks use the same name)."""
    return "reparam_conv" if isinstance(new, nn.modules.conv._ConvNd) else "reparam_linear"


def _merge_name(level: nn.Module, new: nn.Module, taken: set[str]) -> str:
    base = _base_name(new)
    name, i = base, 0
    while name in taken or hasattr(level, name):
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _removed(edits: list[_Edit]) -> tuple[dict, set]:
    """(bypassed node -> its data input, every node the edits remove)."""
    bypass = {s.node: s.input for e in edits if not e.candidate.merge for s in e.candidate.expr.scales()}
    merged = {n for e in edits if e.candidate.merge for n in e.candidate.expr.absorbed()}
    return bypass, set(bypass) | merged


def _placements(edit: _Edit) -> list[tuple[str | None, set]]:
    """(unit key, nodes removed there): a merge lives in the common ancestor of what it replaces,
    a bypassed BatchNorm or scale in its innermost module."""
    expr = edit.candidate.expr
    if edit.candidate.merge:
        return [(collapse.unit_key(expr.absorbed()), set(expr.absorbed()))]
    return [(module_keys(s.node)[-1] if module_keys(s.node) else None, {s.node}) for s in expr.scales()]


def _units(edits: list[_Edit]) -> dict[str | None, _Unit]:
    units: dict[str | None, _Unit] = {}
    for edit in edits:
        for key, nodes in _placements(edit):
            unit = units.setdefault(key, _Unit())
            if edit.candidate.merge:
                unit.shared_merge |= unit.merge is not None  # one new layer per module at most
                unit.merge = edit.step
            unit.nodes |= nodes
            if edit not in unit.edits:
                unit.edits.append(edit)
    return units


def _home(edit: _Edit) -> str:
    """The innermost module that holds every node of a fold, its layers too: a local rewrite of it sees the
    whole fold. (MetaFormer's StarReLU scale folds into the conv after the activation module: a rewrite of
    the activation alone, where that scale sits, would see no layer and drop the fold.)"""
    nodes = edit.candidate.expr.absorbed()
    return collapse.unit_path(collapse.unit_key(nodes), nodes)


def _select(gm: fx.GraphModule, level: nn.Module, edits: list[_Edit], one_input: Callable[[str], bool]):
    """The edits whose modules all collapse, their replacements, and the modules that did not.

    A replacement (``nn.Sequential``, a merged conv) takes one positional input: a module its caller
    passes anything more (BEiT: ``blk(x, shared_rel_pos_bias=None)``) does not collapse.
    """
    deferred: set[str] = set()
    while True:
        bypass, absorbed = _removed(edits)
        collapser, plans, failed = collapse.Collapser(gm, level, bypass, absorbed), [], set()
        for key, unit in _units(edits).items():
            plan = None if unit.shared_merge else collapser.plan(key, unit.nodes, unit.merge)
            if plan is None or not one_input(plan.path):
                failed.update(unit.edits)
                deferred.update(_home(e) for e in unit.edits)
            else:
                plans.append(plan)
        if not failed:
            return edits, plans, deferred
        edits = [e for e in edits if e not in failed]


def apply(level: nn.Module, gm: fx.GraphModule, candidates: list[Candidate], *, local: bool,
          one_input: Callable[[str], bool]) -> Applied:  # fmt: skip
    """Fold ``candidates`` (found on ``gm``, the trace of ``level``) into ``level``.

    Folds go in as module-tree edits where possible. The rest are ``deferred`` (their modules are
    named) unless ``local``, in which case the whole level becomes a rewritten GraphModule.
    ``one_input(path)``: whether the module at ``path`` (level-relative) is called with one positional
    argument and nothing else.
    """
    out = Applied(level)
    edits = _prepare(level, candidates, out)
    accepted, plans, deferred = _select(gm, level, edits, one_input)
    if local and deferred:
        changed_call = _call_change(level, gm)
        if changed_call is None:
            accepted, plans = edits, None
        else:  # keep what collapses into the module tree; the rest would need the graph
            out.refused += [(e.candidate, changed_call) for e in edits if e not in accepted]
            deferred = set()
    for edit in accepted:
        if not edit.candidate.merge:
            write_term(level.get_submodule(edit.candidate.expr.layers()[0].path), edit.folded)
    out.folds = [e.candidate for e in accepted]
    if plans is not None:
        out.module, out.deferred = collapse.commit(level, plans), deferred
    elif accepted:
        bypass, absorbed = _removed(accepted)
        out.module, out.graph_rewrite = _graph_rewrite(level, gm, accepted, bypass, absorbed), True
    return out


def _graph_rewrite(level: nn.Module, gm: fx.GraphModule, edits: list[_Edit], bypass: dict, absorbed: set):
    graph, taken, new_modules = gm.graph, set(), {}
    for edit in (e for e in edits if e.candidate.merge):
        expr, name = edit.candidate.expr, _merge_name(level, edit.new, taken)
        gm.add_submodule(name, edit.new)
        new_modules[name] = edit.new
        with graph.inserting_before(expr.node):
            expr.node.replace_all_uses_with(graph.call_module(name, (expr.source,)))
    for node, data in bypass.items():
        node.replace_all_uses_with(data)
    for node in reversed(list(graph.nodes)):
        if node in absorbed:
            _erase_with_metadata_users(graph, node)
    graph.eliminate_dead_code(is_impure_node=lambda n: n.is_impure() or is_none_guard(n))
    return _graph_module(level, graph, {**_traced_constants(gm), **new_modules})


def _call_change(level: nn.Module, gm: fx.GraphModule) -> str | None:
    """Why ``gm``, the trace of ``level``, cannot take its place (None: it accepts every call ``level`` accepts).

    The level's caller is not rewritten: it keeps calling with the level's own positional and keyword
    parameters. fx keeps their names and defaults, but makes keyword-only ones positional-or-keyword (harmless)
    and moves them before ``*args`` (not harmless).
    """
    try:
        before = list(inspect.signature(level.forward).parameters.values())
        after = list(inspect.signature(gm.forward).parameters.values())
    except (TypeError, ValueError) as err:
        return f"the signature of {type(level).__name__}.forward cannot be read ({one_line(err)})"
    if len(before) == len(after) and all(map(_same_parameter, before, after)):
        return None
    return (f"a traced rewrite of {type(level).__name__} would change how it is called "
            f"(forward{_signature(before)} would become forward{_signature(after)})")  # fmt: skip


def _same_parameter(before: inspect.Parameter, after: inspect.Parameter) -> bool:
    loosened = before.kind in LOOSENED_KINDS and after.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    return before.name == after.name and (before.kind == after.kind or loosened) and _same_default(before, after)


def _same_default(before: inspect.Parameter, after: inspect.Parameter) -> bool:
    a, b = before.default, after.default  # fx writes a default into the generated code as its repr
    return a is b or (type(a) is type(b) and isinstance(a, PLAIN_DEFAULT_TYPES) and a == b)


def _signature(parameters: list[inspect.Parameter]) -> str:
    return str(inspect.Signature([p.replace(annotation=p.empty) for p in parameters]))


def _traced_constants(gm: fx.GraphModule) -> dict:
    """Tensors fx made attributes of the trace (``_tensor_constant0``: a plain tensor attribute such as a
    block's cache); they exist on the trace only, not on the level it traced."""
    return {n.target: _lookup(gm, n.target) for n in gm.graph.nodes
            if n.op == "get_attr" and n.target.startswith("_tensor_constant")}  # fmt: skip


def _erase_with_metadata_users(graph: fx.Graph, node: fx.Node) -> None:
    """Erase a folded node and the shape asserts that read it (they checked a tensor that is gone)."""
    for user in list(node.users):
        if not reads_data(user, node) and user.op != "output" and shape_of(user) is None:
            _erase_with_metadata_users(graph, user)
    if not node.users:
        graph.erase_node(node)


def _graph_module(level: nn.Module, graph: fx.Graph, new_attrs: dict) -> fx.GraphModule:
    """The rewritten level: ``new_attrs`` (merged layers, traced constants) first, the rest from ``level``."""
    root = {}
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            root[node.target] = new_attrs[node.target] if node.target in new_attrs else _lookup(level, node.target)
    rewritten = fx.GraphModule(root, graph, class_name=f"{type(level).__name__}Reparam")
    for name, value in vars(level).items():
        if not name.startswith("_") and name != "training" and isinstance(value, KEEP_ATTRIBUTE_TYPES):
            setattr(rewritten, name, value)
    return rewritten.train(level.training)


def _lookup(module: nn.Module, target: str):
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value
