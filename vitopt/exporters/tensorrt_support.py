"""What TensorRT's ONNX parser accepts, and the symmetric QDQ int8 it needs.

TensorRT cannot be installed on machines without NVIDIA's libraries, so which operators
its parser rejects is kept here as data (onnx-tensorrt's docs/operators.md, the rows
marked unsupported that TensorRT 10 still lacks); the prepared ONNX is checked against it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from vitopt.errors import ExportError
from vitopt.formats import require

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


def quantize_qdq(path: Path, *, calibration: torch.Tensor, batch: int = 1) -> None:
    """Insert QuantizeLinear/DequantizeLinear pairs in place, calibrated on real images.

    Symmetric int8 for activations and weights (TensorRT requires zero points of 0),
    per-channel weights, min/max calibration; ONNX Runtime's quantiser writes the QDQ graph.
    """
    quantization = require("onnxruntime.quantization", extra="onnx", feature="int8 QDQ for TensorRT")
    reader = _CalibrationReader(calibration.numpy(), batch=batch)
    quantization.quantize_static(
        str(path), str(path), reader, quant_format=quantization.QuantFormat.QDQ, per_channel=True,
        activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )  # fmt: skip


class _CalibrationReader:
    """ONNX Runtime's calibration-data protocol: ``get_next()`` until None, in the graph's batch size."""

    def __init__(self, images: np.ndarray, *, batch: int) -> None:
        if len(images) < batch:
            raise ExportError(f"int8 calibration needs at least {batch} images, got {len(images)}")
        starts = range(0, len(images) - batch + 1, batch)
        self._batches = iter([{"input": images[i : i + batch].astype(np.float32)} for i in starts])

    def get_next(self):
        return next(self._batches, None)
