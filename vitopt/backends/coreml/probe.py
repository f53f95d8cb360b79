"""What Core ML will reject, read from the one traced graph, and what vitopt rewrites.

The rewrites are those the exporter applies (``rewrites``), run here on a copy of
the graph, so the check reports exactly what export will do; ops outside coremltools' own
converter table and tensors still above rank 5 afterwards are blockers.
"""

from __future__ import annotations

from collections import defaultdict

from vitopt.backends.coreml.rank_lowering import MAX_RANK
from vitopt.backends.coreml.resize import RESIZE_NAMES
from vitopt.backends.coreml.rewrites import rewrite_graph
from vitopt.convertibility import Finding, aten_nodes, summarise
from vitopt.formats import require
from vitopt.spec import ModelSpec

REWRITES = {
    "aliases_dropped": ("aten.alias", "coremltools has no converter for it", "dropped: an alias is its input"),
    "rolls_as_slices": ("aten.roll", "converted by coremltools as a gather over computed indices",
                        "expressed as slice + concat with static sizes"),
    "unfolds_as_slices": ("aten.unfold", "coremltools has no converter for it",
                          "the static windows as slices, stacked (exact)"),
    "folds_as_pads": ("aten.col2im (F.fold)", "coremltools converts it only for stride >= kernel size",
                      "each kernel offset's columns padded into place and added (exact)"),
    "ranks_lowered": (f"tensor rank > {MAX_RANK}", f"Core ML rejects tensors above rank {MAX_RANK} (on the device, "
                      "not at conversion)", f"rewritten at rank <= {MAX_RANK}: dims merged where they move or "
                      "broadcast together, a chain of transpositions where a permutation scatters them"),
    "resizes_as_matmuls": ("bicubic / antialiased resize", "coremltools has no converter for it",
                           "two matmuls with constant interpolation matrices (exact for a fixed-size input)"),
}  # fmt: skip
REWRITTEN = ("aten.alias", "aten.roll", "aten.unfold", *RESIZE_NAMES)


def probe(program, *, spec: ModelSpec) -> list[Finding]:
    require("coremltools", extra="coreml", feature="the Core ML convertibility check")
    from coremltools.converters.mil.frontend.torch.torch_op_registry import is_torch_fx_node_supported

    unsupported: dict[str, list] = defaultdict(list)
    for node, name in aten_nodes(program):
        if name not in REWRITTEN and not is_torch_fx_node_supported(node):
            unsupported[name].append(node)
    found = [Finding(target="coreml", op=name, detail=f"coremltools has no converter: {summarise(nodes)}")
             for name, nodes in sorted(unsupported.items())]  # fmt: skip
    log = rewrite_graph(program.module())  # program.module() is a fresh copy: the program is untouched
    for key, count in log.counts().items():
        if count:
            op, why, rewrite = REWRITES[key]
            which = f" ({', '.join(f'{o} x{n}' for o, n in log.rank_ops.items())})" if key == "ranks_lowered" else ""
            found.append(Finding(target="coreml", op=op, detail=f"{count} call(s){which}; {why}", rewrite=rewrite))
    if log.above_rank_5:
        found.append(Finding(target="coreml", op=f"tensor rank > {MAX_RANK}", detail=", ".join(log.above_rank_5[:5])
                             + f": no rule rewrites these ops at rank <= {MAX_RANK} (rank_ops.RULES lists the "
                             "ops that have one: elementwise, permute, reshape, softmax, reductions, slices, cat, "
                             "...)"))  # fmt: skip
    return found
