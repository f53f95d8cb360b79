"""The generic fold: trace the largest traceable part of a model once, fold, edit the module tree.

Tracing starts at the root. When fx fails inside some block (MobileViT's block computes its
padding from the input size), that block, named by the tracer's module stack at the failure, is
kept opaque and the root is traced again; the opaque block's own children become regions of
their own. Folds found on a region's graph are applied as small module-tree edits in the
innermost module that holds them (:mod:`rewrite`); a module where that is impossible is traced
alone and rewritten as a GraphModule. One forward pass on real images (:func:`trace.probe`)
gives every module's input shapes and call count; a module that runs twice is never edited.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from vitopt.errors import one_line
from vitopt.reparam import candidates, collapse, rewrite
from vitopt.reparam.analysis import Builder, LevelContext
from vitopt.reparam.expr import Expr
from vitopt.reparam.kinds import identities
from vitopt.reparam.trace import (
    TraceFailed,
    innermost_module,
    is_builtin_leaf,
    probe,
    propagate_shapes,
    trace,
)

MAX_ROUNDS = 3  # per module: a fold can expose another


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


@dataclass
class Record:
    """What the generic fold did and did not do, in model-absolute module paths."""

    folds: Counter = field(default_factory=Counter)
    merges: list[dict] = field(default_factory=list)
    folded_batch_norms: set[str] = field(default_factory=set)
    edited: set[str] = field(default_factory=set)  # convs/linears whose weights changed in place
    bypassed: set[str] = field(default_factory=set)  # modules whose output a fold changed (a BatchNorm before a conv)
    left: dict[str, str] = field(default_factory=dict)  # BatchNorm path -> why it stays
    refusals: dict[tuple[str, str], str] = field(default_factory=dict)  # (module, reason) -> kind
    untraceable: dict[str, str] = field(default_factory=dict)
    unshaped: dict[str, str] = field(default_factory=dict)  # traced but not shaped: path -> why
    graph_rewrites: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # parts of the model the analysis failed on


class Engine:
    def __init__(self, model: nn.Module, *, sample: torch.Tensor, kinds: frozenset[str]) -> None:
        self.root, self.kinds, self.record = model, kinds, Record()
        seen = probe(model, sample)
        named = list(model.named_modules(remove_duplicate=False))
        self.calls = {p: seen.calls.get(id(m), 0) for p, m in named}
        self.inputs = {p: seen.inputs.get(id(m)) for p, m in named}
        self.outputs = {p: seen.outputs.get(id(m)) for p, m in named}
        self.owners = Counter(id(p) for _, m in named for p in m.parameters(recurse=False))
        self._regions: list[tuple[str, set[str]]] | None = None

    def untraceable(self) -> list[str]:
        """Modules whose own forward torch.fx cannot trace (found once, by tracing from the root)."""
        if self._regions is None:
            self._regions = self.regions("")
        return list(self.record.untraceable)

    def run(self) -> nn.Module:
        self.untraceable()
        for path, opaque in self._regions:
            self.fold(path, opaque=opaque, local=False)
        return self.root

    def get(self, path: str) -> nn.Module | None:
        try:
            return self.root.get_submodule(path)
        except AttributeError:
            return None  # folded away with an ancestor's replacement

    def put(self, path: str, module: nn.Module) -> None:
        if not path:
            self.root = module
            return
        parent, _, name = path.rpartition(".")
        setattr(self.root.get_submodule(parent), name, module)

    def tied(self, module: nn.Module) -> bool:
        return any(self.owners[id(p)] > 1 for p in module.parameters(recurse=False))

    def traceable(self, path: str) -> nn.Module | None:
        module = self.get(path)
        if module is None or is_builtin_leaf(module) or self.inputs.get(path) is None:
            return None
        return module

    def regions(self, path: str) -> list[tuple[str, set[str]]]:
        """(path, opaque descendants) of the largest traceable modules, covering the whole model."""
        module, opaque = self.traceable(path), set()
        while module is not None:
            try:
                trace(module, opaque=opaque, recorded=self.inputs[path])
                break
            except TraceFailed as err:
                culprit = err.culprit
                self.record.untraceable[join(path, culprit or "") or "(model)"] = str(err)
                if culprit is None or culprit in opaque:
                    return [r for name, _ in module.named_children() for r in self.regions(join(path, name))]
                opaque.add(culprit)
        if module is None:
            return []
        inner = [join(join(path, o), name) for o in opaque for name, _ in self.get(join(path, o)).named_children()]
        return [(path, opaque)] + [r for child in inner for r in self.regions(child)]

    def opaque_below(self, path: str) -> set[str]:
        prefix = f"{path}." if path else ""
        return {p[len(prefix) :] for p in self.record.untraceable if p.startswith(prefix) and p != path}

    def fold(self, path: str, *, opaque: set[str], local: bool) -> None:
        """Rounds of trace, analyse, fold on one module until nothing more folds."""
        for _ in range(MAX_ROUNDS):
            module = self.traceable(path)
            if module is not None and local:
                opaque = opaque | self.untouched(path, module, opaque)
            if module is None or not self.fold_once(path, module, opaque=opaque, local=local):
                return

    def untouched(self, path: str, module: nn.Module, opaque: set[str]) -> set[str]:
        """The largest descendants no fold reaches, to keep as called modules in a local rewrite.

        A level rewritten as a GraphModule would otherwise inline its whole subtree, and with it lose
        what the blocks' own forwards do that a trace cannot keep (LeViT caches its attention-bias
        gather in eval mode: inlined, the gather runs on every call, 16% of LeViT's eager latency).
        """
        analysed = self.analyse(path, module, opaque)
        if analysed is None:
            return set()
        involved = {innermost_module(n) for c in analysed[1].candidates for n in (c.expr.node, *c.expr.absorbed())}
        return set(self._untouched_below(path, "", involved | opaque))

    def _untouched_below(self, path: str, rel: str, involved: set[str]):
        for name, _ in self.get(join(path, rel)).named_children():
            child = join(rel, name)
            if not any(p == child or p.startswith(f"{child}.") for p in involved):
                if self.calls.get(join(path, child)) == 1 and self.outputs.get(join(path, child)) is not None:
                    yield child
            elif child not in involved:
                yield from self._untouched_below(path, child, involved)

    def fold_once(self, path: str, module: nn.Module, *, opaque: set[str], local: bool) -> bool:
        analysed = self.analyse(path, module, opaque)
        if analysed is None or not analysed[1].candidates:
            return False
        gm, found = analysed
        applied = rewrite.apply(module, gm, found.candidates, local=local,
                                one_input=lambda rel: self.called_with_one_input(join(path, rel)))  # fmt: skip
        self.note_applied(path, applied)
        if applied.module is not module:
            self.put(path, applied.module)
        for rel in sorted(applied.deferred, key=len, reverse=True):
            self.fold(join(path, rel), opaque=self.opaque_below(join(path, rel)), local=True)
        return bool(applied.folds or applied.deferred)

    def called_with_one_input(self, path: str) -> bool:
        """Whether the probe saw ``path`` called with one positional argument and nothing else (all that
        ``nn.Sequential`` or a merged conv accepts when it takes the module's place)."""
        recorded = self.inputs.get(path)
        return recorded is not None and len(recorded[0]) == 1 and not recorded[1]

    def analyse(self, path: str, module: nn.Module, opaque: set[str]):
        """(traced graph with shapes, what folds in it), or None when it cannot be traced or shaped."""
        try:
            gm = trace(module, opaque=opaque, recorded=self.inputs[path])
        except TraceFailed as err:
            self.record.untraceable[path or "(model)"] = str(err)
            return None
        known = {rel: self.outputs.get(join(path, rel)) for rel in opaque}
        why_unshaped = propagate_shapes(gm, self.inputs[path], known)
        if why_unshaped is not None:
            self.record.unshaped[path or "(model)"] = why_unshaped
            return None
        ctx = LevelContext(gm, self.kinds, calls=lambda rel: self.calls.get(join(path, rel), 1), tied=self.tied)
        try:
            found = candidates.find(gm, Builder(ctx).run())
        except Exception as err:  # an op pattern the analysis mishandles: skip this part, never the whole model
            self.record.errors[path or "(model)"] = one_line(err, with_type=True)
            return None
        self.note_findings(path, found)
        return gm, found

    def note_findings(self, path: str, found: candidates.Findings) -> None:
        for rel, reason in found.left.items():
            self.record.left[join(path, rel)] = reason
        for node, reason in found.refusals:
            where = join(path, innermost_module(node)) or "(model)"
            self.record.refusals[(where, reason)] = "branches"

    def note_applied(self, path: str, applied: rewrite.Applied) -> None:
        for fold in applied.folds:
            self.record.folds.update(fold.kinds)
            self.record.folded_batch_norms.update(join(path, p) for p in fold.batch_norms)
            if fold.merge:
                self.record.merges.append(_merge_summary(path, fold))
            else:
                self.record.edited.add(join(path, fold.expr.layers()[0].path))
                self.record.bypassed.update(join(path, innermost_module(n)) for n in _inside(fold.expr))
        for fold, reason in applied.refused:
            where = join(path, innermost_module(fold.expr.node)) or "(model)"
            self.record.refusals[(where, reason)] = "branches" if fold.merge else "batchnorm"
        if applied.graph_rewrite:
            self.record.graph_rewrites.append(path or "(model)")


def _inside(expr: Expr) -> list:
    """The nodes a sequential fold absorbs before its last one: what they computed is gone (a BatchNorm before a
    conv now returns its input), so the modules that emitted them no longer compute what they did."""
    return [n for n in expr.absorbed() if n is not expr.node]


def _merge_summary(path: str, fold: candidates.Candidate) -> dict:
    """Where a merge happened and what it merged: kernel sizes of its branches, identities, BatchNorms."""
    layers, absorbed = fold.expr.layers(), fold.expr.absorbed()
    kernels = ["x".join(map(str, layer.module.weight.shape[2:])) or "linear" for layer in layers]
    kernels += ["identity"] * identities(fold.expr)
    where = join(path, collapse.unit_path(collapse.unit_key(absorbed), absorbed)) or "(model)"
    return {"module": where, "kind": next(iter(fold.kinds)), "branches": len(kernels),
            "kernels": sorted(kernels), "batch_norms": len(fold.batch_norms)}  # fmt: skip
