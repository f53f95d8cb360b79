"""Explicit int8 for TensorRT: symmetric QDQ pairs in the prepared ONNX, calibrated on real images.

TensorRT's explicit quantization needs zero points of 0, so activations and weights are
both symmetric int8; ONNX Runtime's quantiser writes the QDQ graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vitopt.backends.metadata import INPUT_NAME
from vitopt.errors import ExportError
from vitopt.formats import require


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
        self._batches = iter([{INPUT_NAME: images[i : i + batch].astype(np.float32)} for i in starts])

    def get_next(self):
        return next(self._batches, None)
