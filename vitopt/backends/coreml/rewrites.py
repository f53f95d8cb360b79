"""Graph rewrites that make vision transformers convertible to Core ML, on the torch.export graph.

Core ML rejects tensors above rank 5 at load time, on the device, long after conversion
"succeeded" on Linux; Swin's window partition/reverse builds rank-6 views, MaxViT's grid and NesT's
blocks others, and some models broadcast at rank 6. ``rank_lowering`` rewrites every op making or
reading such a value as exact steps at rank <= 5 (merging dims that move or broadcast together, and a
chain of transpositions where a permutation scatters more than five runs). ``torch.roll`` (shifted
windows) becomes slice + concat with static sizes instead of coremltools' gather over computed
indices, ``aten.alias`` (which coremltools 9 has no converter for) is dropped, ``Tensor.unfold``
(sliding windows, no converter either) becomes static slices, an overlapping ``F.fold`` (VOLO;
coremltools takes only stride >= kernel) becomes padded adds (``fold``), and a bicubic or antialiased
resize (no converter either) becomes two matmuls with constant interpolation matrices (``resize``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx, nn

from vitopt.backends.coreml import rank_lowering
from vitopt.backends.coreml.fold import fold_as_pads
from vitopt.backends.coreml.rank_lowering import MAX_RANK, call, op_name, rank_of, shape_of
from vitopt.backends.coreml.resize import RESIZES, resize_as_matmuls
from vitopt.convertibility import export_aten

aten = torch.ops.aten


@dataclass
class RewriteLog:
    aliases_dropped: int = 0
    rolls_as_slices: int = 0
    unfolds_as_slices: int = 0
    folds_as_pads: int = 0
    ranks_lowered: int = 0  # nodes making or reading a rank > 5 value, rewritten at rank <= 5 (rank_lowering)
    resizes_as_matmuls: int = 0
    rank_ops: dict[str, int] = field(default_factory=dict)  # which ops those were
    above_rank_5: list[str] = field(default_factory=list)  # "node (op)" still above rank 5 afterwards

    @property
    def changed(self) -> bool:
        return any(self.counts().values())

    def counts(self) -> dict[str, int]:
        return {"aliases_dropped": self.aliases_dropped, "rolls_as_slices": self.rolls_as_slices,
                "unfolds_as_slices": self.unfolds_as_slices, "folds_as_pads": self.folds_as_pads,
                "ranks_lowered": self.ranks_lowered,
                "resizes_as_matmuls": self.resizes_as_matmuls}  # fmt: skip


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
        elif node.target in RESIZES:
            log.resizes_as_matmuls += resize_as_matmuls(graph_module, node)
        elif node.target == aten.unfold.default:
            log.unfolds_as_slices += _unfold_as_slices(graph, node)
        elif node.target == aten.col2im.default:
            log.folds_as_pads += fold_as_pads(graph, node)
    lowering = rank_lowering.lower_high_ranks(graph_module)
    log.ranks_lowered, log.rank_ops = sum(lowering.lowered.values()), dict(lowering.lowered)
    graph.eliminate_dead_code()
    rank_lowering.drop_unread_constants(lowering)
    log.above_rank_5 = [f"{node.name} ({op_name(node.target)})" for node in graph.nodes
                        if node.op == "call_function" and rank_of(node) > MAX_RANK]  # fmt: skip
    return log


def _unfold_as_slices(graph: fx.Graph, node: fx.Node) -> bool:
    """x.unfold(d, size, step) (sliding windows; coremltools has no converter) == the static windows
    x[.., i*step : i*step+size, ..] stacked at d, the window dim moved last. Runs before the rank lowering,
    which then takes any rank > 5 result (HaloNet unfolds a rank-5 tensor)."""
    source, dim, size, step = node.args
    shape = shape_of(source)
    if shape is None:
        return False
    dim %= len(shape)
    with graph.inserting_before(node):
        cut = lambda start: call(graph, aten.slice.Tensor, (source, dim, start, start + size))  # noqa: E731
        windows = [call(graph, aten.unsqueeze.default, (cut(i), dim)) for i in range(0, shape[dim] - size + 1, step)]
        stacked = call(graph, aten.cat.default, (windows, dim))
        order = [d for d in range(len(shape) + 1) if d != dim + 1] + [dim + 1]
        out = call(graph, aten.permute.default, (stacked, order))
    node.replace_all_uses_with(out)
    graph.erase_node(node)
    return True


def _roll_as_slices(graph: fx.Graph, node: fx.Node) -> bool:
    """roll(x, s, d) == cat([x[n-s:], x[:n-s]], d), one pair of static slices per rolled dim."""
    source, shifts = node.args[0], list(node.args[1])
    dims = list(node.args[2] if len(node.args) > 2 else node.kwargs.get("dims", []))
    shape = shape_of(source)
    if not dims or shape is None or len(shape) > MAX_RANK:  # rank_lowering takes rank > 5
        return False  # a flattened roll keeps coremltools' own converter
    out = source
    with graph.inserting_before(node):
        for shift, dim in zip(shifts, dims, strict=True):
            size = shape[dim]
            shift %= size
            if shift:
                tail = call(graph, aten.slice.Tensor, (out, dim, size - shift, size))
                head = call(graph, aten.slice.Tensor, (out, dim, 0, size - shift))
                out = call(graph, aten.cat.default, ([tail, head], dim))
    node.replace_all_uses_with(out)
    graph.erase_node(node)
    return True
