"""ONNX Runtime precisions: static QDQ int8, dynamic int8 MatMuls, and fp16.

``int8`` is ONNX Runtime's static quantiser (QDQ format, uint8 activations and int8 per-channel
weights, as ONNX Runtime recommends for x86 with VNNI) calibrated on real images; every node of
an op group the recipe keeps in float (LayerNormalization, Softmax, Gelu, Add) is excluded, and
so is every node reading a weight named after a module glob (the exporter keeps the names of
untransposed weights: the patch embedding's conv and the head's Gemm). ``int8-dynamic`` quantises
MatMul weights and computes activation scales at run time. ``fp16`` converts weights and compute
to float16 with float32 inputs and outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vitopt.backends.exporter import ExportedArtifact
from vitopt.backends.metadata import INPUT_NAME
from vitopt.backends.quantizer import Quantizer, matches_module, quiet_logger
from vitopt.errors import ExportError, one_line
from vitopt.formats import require

OP_TYPES = {"layer_norm": "LayerNormalization", "softmax": "Softmax", "gelu": "Gelu", "residual_add": "Add"}


class OnnxQuantizer(Quantizer):
    schemes = ("int8", "int8-dynamic", "fp16")

    def quantize(self, artifact: ExportedArtifact, *, scheme: str, calibration: torch.Tensor, dest: Path,
                 labelled=None) -> ExportedArtifact:  # fmt: skip
        onnx = require("onnx", extra="onnx", feature="ONNX quantisation")
        source = onnx.load(str(artifact.main))
        excluded = self.excluded_nodes(source)
        try:
            with quiet_logger():  # it logs a pre-processing suggestion on the root logger per call
                _SCHEMES[scheme](artifact.main, dest, calibration=calibration, excluded=excluded)
        except Exception as err:  # onnxruntime's quantiser raises plain exceptions
            raise ExportError(f"ONNX Runtime {scheme} quantisation failed: {one_line(err)}") from err
        _copy_metadata(source, dest, onnx)
        info = {"scheme": scheme, "tool": "onnxruntime.quantization", "nodes_kept_float": len(excluded),
                "keep_float": list(self.settings.keep_float), "keep_float_modules": self.settings.keep_float_modules}
        return ExportedArtifact(files=[dest], main=dest, details={**artifact.details, "quantization": info})

    def excluded_nodes(self, model) -> list[str]:
        types = {OP_TYPES[group] for group in self.settings.keep_float}
        weights = {i.name for i in model.graph.initializer}
        globs = self.settings.keep_float_modules
        return [node.name for node in model.graph.node
                if node.op_type in types or any(matches_module(i, globs) for i in node.input if i in weights)]


def _static_int8(source: Path, dest: Path, *, calibration: torch.Tensor, excluded: list[str]) -> None:
    q = require("onnxruntime.quantization", extra="onnx", feature="ONNX int8 quantisation")
    q.quantize_static(
        str(source), str(dest), _Reader(calibration.numpy()), quant_format=q.QuantFormat.QDQ, per_channel=True,
        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, nodes_to_exclude=excluded,
    )  # fmt: skip


def _dynamic_int8(source: Path, dest: Path, *, calibration: torch.Tensor, excluded: list[str]) -> None:
    q = require("onnxruntime.quantization", extra="onnx", feature="ONNX int8 quantisation")
    q.quantize_dynamic(str(source), str(dest), op_types_to_quantize=["MatMul"], weight_type=q.QuantType.QInt8,
                       nodes_to_exclude=excluded)  # fmt: skip


def _fp16(source: Path, dest: Path, *, calibration: torch.Tensor, excluded: list[str]) -> None:
    onnx = require("onnx", extra="onnx", feature="ONNX fp16 conversion")
    float16 = require("onnxruntime.transformers.float16", extra="onnx", feature="ONNX fp16 conversion")
    onnx.save(float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(dest))


_SCHEMES = {"int8": _static_int8, "int8-dynamic": _dynamic_int8, "fp16": _fp16}


def _copy_metadata(source, dest: Path, onnx) -> None:
    """The quantisers drop metadata_props; the artifact must still carry its spec and provenance."""
    model = onnx.load(str(dest))
    del model.metadata_props[:]
    model.metadata_props.extend(source.metadata_props)
    onnx.save(model, str(dest))


class _Reader:
    """ONNX Runtime's calibration-data protocol: one real image per ``get_next()``, then None."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches = iter([{INPUT_NAME: images[i : i + 1].astype(np.float32)} for i in range(len(images))])

    def get_next(self):
        return next(self._batches, None)
