"""Graph rewrites that make vision transformers convertible to Core ML, on the torch.export graph.

Core ML rejects tensors above rank 5 at load time, on the device, long after conversion
"succeeded" on Linux; Swin's window partition/reverse builds rank-6 views. A permute whose
input dims move in adjacent runs only needs one dim per run, so ``view(B, nH, wh, nW, ww, C)
-> permute(0, 1, 3, 2, 4, 5)`` becomes ``reshape(B*nH, wh, nW, ww*C) -> permute(0, 2, 1, 3)``:
the same elements in the same order, at rank 4. ``torch.roll`` (shifted windows) becomes
slice + concat with static sizes instead of coremltools' gather over computed indices, and
``aten.alias`` (which coremltools 9 has no converter for) is dropped, and a bicubic resize (no
converter either) becomes two matmuls with constant interpolation matrices (``resize``).

The rewrites edit an unlifted graph in place; :func:`prepare_program` then exports it again,
so every node has fresh shape metadata and the result is checked end to end by the exporter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from vitopt.backends.coreml.resize import RESIZES, resize_as_matmuls
from vitopt.backends.coreml.transpositions import permute_by_swaps
from vitopt.convertibility import export_aten

aten = torch.ops.aten
MAX_RANK = 5  # Core ML's limit on tensor rank
RESHAPES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
COPIES = {aten.clone.default, aten.contiguous.default}


@dataclass
class RewriteLog:
    aliases_dropped: int = 0
    rolls_as_slices: int = 0
    permutes_lowered: int = 0
    resizes_as_matmuls: int = 0
    above_rank_5: list[str] = field(default_factory=list)  # nodes still above rank 5 afterwards

    @property
    def changed(self) -> bool:
        return bool(self.aliases_dropped or self.rolls_as_slices or self.permutes_lowered or self.resizes_as_matmuls)

    def counts(self) -> dict[str, int]:
        return {"aliases_dropped": self.aliases_dropped, "rolls_as_slices": self.rolls_as_slices,
                "permutes_lowered": self.permutes_lowered, "resizes_as_matmuls": self.resizes_as_matmuls}  # fmt: skip


def prepare_program(module: nn.Module, *, example: torch.Tensor) -> tuple[torch.export.ExportedProgram, RewriteLog]:
    """The module exported for coremltools (ATen dialect), with the rewrites applied.

    ``module`` must be in eval mode (an exported graph module cannot be switched).
    """
    program = export_aten(module.eval(), example=example)
    graph_module = program.module()
    log = rewrite_graph(graph_module)
    if log.changed:
        graph_module.recompile()
        program = export_aten(graph_module, example=example)
    return program, log


def rewrite_graph(graph_module: fx.GraphModule) -> RewriteLog:
    """Apply every rewrite in place; the log says what changed and what is still too high a rank."""
    graph, log = graph_module.graph, RewriteLog()
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target == aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            log.aliases_dropped += 1
        elif node.target == aten.roll.default:
            log.rolls_as_slices += _roll_as_slices(graph, node)
        elif node.target == aten.permute.default:
            log.permutes_lowered += _lower_permute(graph, node)
        elif node.target in RESIZES:
            log.resizes_as_matmuls += resize_as_matmuls(graph_module, node)
    graph.eliminate_dead_code()
    log.above_rank_5 = [node.name for node in graph.nodes if _rank(node) > MAX_RANK and not node.meta.get("lowered")]
    return log


def _roll_as_slices(graph: fx.Graph, node: fx.Node) -> bool:
    """roll(x, s, d) == cat([x[n-s:], x[:n-s]], d), one pair of static slices per rolled dim."""
    source, shifts = node.args[0], list(node.args[1])
    dims = list(node.args[2] if len(node.args) > 2 else node.kwargs.get("dims", []))
    if not dims or _shape(source) is None:  # a flattened roll keeps coremltools' own converter
        return False
    out, shape = source, _shape(source)
    with graph.inserting_before(node):
        for shift, dim in zip(shifts, dims, strict=True):
            size = shape[dim]
            shift %= size
            if shift:
                tail = graph.call_function(aten.slice.Tensor, (out, dim, size - shift, size))
                head = graph.call_function(aten.slice.Tensor, (out, dim, 0, size - shift))
                out = graph.call_function(aten.cat.default, ([tail, head], dim))
    node.replace_all_uses_with(out)
    graph.erase_node(node)
    return True


def _lower_permute(graph: fx.Graph, permute: fx.Node) -> bool:
    """Merge the dims of a rank > 5 reshape -> permute that move together (see module doc).

    Only when everything reading the permute (through copies) reshapes it again, so the
    lower-rank intermediate never escapes.
    """
    source, shape = permute.args[0], _shape(permute.args[0])
    if source.target not in RESHAPES or shape is None or len(shape) <= MAX_RANK:
        return False
    perm = [d % len(shape) for d in permute.args[1]]
    runs = _adjacent_runs(perm)
    copies = _copies_until_reshape(permute)
    if copies is None:
        return False
    if len(runs) > MAX_RANK:
        return _permute_by_swaps(graph, permute, source, shape, runs, copies)
    by_input = sorted(runs, key=lambda run: run[0])
    with graph.inserting_after(source):
        merged = [math.prod(shape[d] for d in run) for run in by_input]
        lowered = graph.call_function(aten.reshape.default, (source.args[0], merged))
    permute.args = (lowered, [by_input.index(run) for run in runs])
    for node in [permute, *copies]:
        node.meta["lowered"] = True  # its recorded rank-6 shape is stale until re-export
    return True


def _permute_by_swaps(graph: fx.Graph, permute: fx.Node, source: fx.Node, shape: list[int], runs: list[list[int]],
                      copies: list[fx.Node]) -> bool:  # fmt: skip
    """More than five runs: the permutation of the merged runs as a chain of rank <= 5 transpositions."""
    by_input = sorted(runs, key=lambda run: run[0])
    merged = [math.prod(shape[d] for d in run) for run in by_input]
    with graph.inserting_before(permute):
        flat = permute_by_swaps(graph, source.args[0], merged, [by_input.index(run) for run in runs])
    permute.replace_all_uses_with(flat)
    graph.erase_node(permute)
    for node in copies:
        node.meta["lowered"] = True
    return True


def _adjacent_runs(perm: list[int]) -> list[list[int]]:
    """Split a permutation into maximal runs of consecutive input dims, in output order."""
    runs = [[perm[0]]]
    for dim in perm[1:]:
        if dim == runs[-1][-1] + 1:
            runs[-1].append(dim)
        else:
            runs.append([dim])
    return runs


def _copies_until_reshape(node: fx.Node) -> list[fx.Node] | None:
    """The copy nodes between ``node`` and the reshapes that read it; None if any reader is not one."""
    copies = []
    for user in node.users:
        if user.op == "call_function" and user.target in COPIES:
            further = _copies_until_reshape(user)
            if further is None:
                return None
            copies += [user, *further]
        elif not (user.op == "call_function" and user.target in RESHAPES and user.args[0] is node):
            return None
    return copies


def _shape(node) -> list[int] | None:
    value = node.meta.get("val") if isinstance(node, fx.Node) else None
    if not isinstance(value, torch.Tensor) or not all(isinstance(s, int) for s in value.shape):
        return None
    return list(value.shape)


def _rank(node: fx.Node) -> int:
    value = node.meta.get("val")
    return value.dim() if isinstance(value, torch.Tensor) else 0
