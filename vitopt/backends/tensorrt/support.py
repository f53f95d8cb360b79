"""What TensorRT's ONNX parser accepts, and where TensorRT can run.

TensorRT cannot be installed on machines without NVIDIA's libraries, so which operators
its parser rejects is kept here as data (onnx-tensorrt's docs/operators.md, the rows
marked unsupported that TensorRT 10 still lacks); the prepared ONNX is checked against it.
"""

from __future__ import annotations

import importlib.util
from collections import Counter

import torch

from vitopt.errors import ExportError

UNSUPPORTED_OPS = frozenset({
    "Bernoulli", "BitShift", "BlackmanWindow", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
    "DynamicQuantizeLinear", "HammingWindow", "HannWindow", "Hardmax", "MatMulInteger", "MaxRoiPool", "MaxUnpool",
    "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement",
    "OptionalHasElement", "QLinearConv", "QLinearMatMul", "STFT", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
    "SequenceErase", "SequenceInsert", "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence",
    "StringNormalizer", "TfIdfVectorizer", "Unique",
})  # fmt: skip


def check_operators(model) -> dict[str, int]:
    """Operator counts of the prepared graph; raises on operators TensorRT's parser rejects."""
    counts = Counter(node.op_type for node in model.graph.node)
    rejected = sorted(op for op in counts if op in UNSUPPORTED_OPS)
    foreign = sorted({n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if rejected or foreign:
        raise ExportError(
            f"the ONNX graph uses operators TensorRT's parser does not support: {', '.join(rejected + foreign)}",
            hint="run `vitopt check MODEL --target tensorrt` to see which layers produce them",
        )
    return dict(sorted(counts.items()))


def unavailable_reason() -> str | None:
    """Why no TensorRT engine can be built or run on this machine (None: it can)."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (its libraries need an NVIDIA driver: pip install 'vitopt[tensorrt]')"
    if not torch.cuda.is_available():
        return "no NVIDIA GPU on this machine"
    return None
