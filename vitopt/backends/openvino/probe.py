"""What OpenVINO's PyTorch frontend cannot take, read from the one traced graph.

The op table is OpenVINO's own (``OperatorSupport`` of its torch.compile backend, which
lists what its FX frontend converts). An op outside it is not a blocker: the exporter
then converts through ONNX, and the finding says so.
"""

from __future__ import annotations

from collections import defaultdict

from vitopt.convertibility import Finding, aten_nodes, core_aten, summarise
from vitopt.formats import require
from vitopt.spec import ModelSpec

FALLBACK = "converted through ONNX instead (the exporter's automatic fallback), then by OpenVINO's ONNX frontend"


def probe(program, *, spec: ModelSpec) -> list[Finding]:
    require("openvino", extra="openvino", feature="the OpenVINO convertibility check")
    from openvino.frontend.pytorch.torchdynamo.op_support import OperatorSupport

    support = OperatorSupport(None)
    unsupported: dict[str, list] = defaultdict(list)
    for node, name in aten_nodes(core_aten(program)):  # the core ATen ops its table lists
        if not support.is_node_supported({}, node):
            unsupported[name].append(node)
    return [
        Finding(target="openvino", op=name, detail=f"{len(nodes)} call(s): {summarise(nodes)}", rewrite=FALLBACK)
        for name, nodes in sorted(unsupported.items())
    ]
