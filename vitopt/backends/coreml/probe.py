"""What Core ML will reject, read from the one traced graph, and what vitopt rewrites.

The rewrites are those the exporter applies (``rewrites``), run here on a copy of
the graph, so the check reports exactly what export will do; ops outside coremltools' own
converter table and tensors still above rank 5 afterwards are blockers.
"""

from __future__ import annotations

from collections import defaultdict

from vitopt.backends.coreml.rewrites import MAX_RANK, rewrite_graph
from vitopt.convertibility import Finding, aten_nodes, summarise
from vitopt.formats import require
from vitopt.spec import ModelSpec

REWRITES = {
    "aliases_dropped": ("aten.alias", "coremltools has no converter for it", "dropped: an alias is its input"),
    "rolls_as_slices": ("aten.roll", "converted by coremltools as a gather over computed indices",
                        "expressed as slice + concat with static sizes"),
    "permutes_lowered": (f"rank > {MAX_RANK} reshape/permute", f"Core ML rejects tensors above rank {MAX_RANK} "
                         "(on the device, not at conversion)", "dims that move together merged: same elements "
                         f"in the same order at rank <= {MAX_RANK}"),
    "resizes_as_matmuls": ("aten.upsample_bicubic2d", "coremltools has no converter for it",
                           "two matmuls with constant interpolation matrices (exact for a fixed-size input)"),
}  # fmt: skip
REWRITTEN = ("aten.alias", "aten.roll", "aten.upsample_bicubic2d")


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
            found.append(Finding(target="coreml", op=op, detail=f"{count} call(s); {why}", rewrite=rewrite))
    if log.above_rank_5:
        found.append(Finding(target="coreml", op=f"tensor rank > {MAX_RANK}", detail=", ".join(log.above_rank_5[:5])
                             + f": no rewrite brings these to rank {MAX_RANK} (permutes of any rank are lowered; "
                             "rank > 5 elementwise and broadcasting ops are not yet)"))  # fmt: skip
    return found
