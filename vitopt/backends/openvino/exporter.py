"""OpenVINO IR (``model.xml`` + ``model.bin``) via ``openvino.convert_model``.

The PyTorch module goes straight to OpenVINO's PyTorch frontend; where that frontend
refuses a model, the ONNX exporter's file is converted instead (``source`` in the details).
fp16 compresses the stored weights; OpenVINO's CPU plugin still computes in f32, because
the runner pins the inference precision (see ``runner.py``).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from vitopt.backends.exporter import ExportedArtifact, Exporter
from vitopt.backends.metadata import INPUT_NAME, OUTPUT_NAME, artifact_metadata, key_path
from vitopt.errors import ExportError, first_that_works
from vitopt.formats import require
from vitopt.spec import ModelSpec


class OpenVinoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: Literal["auto", "pytorch", "onnx"] = "auto"
    dynamic_batch: bool = True


class OpenVinoExporter(Exporter):
    Options = OpenVinoOptions

    def export(
        self, module: nn.Module, *, spec: ModelSpec, staging: Path, calibration: torch.Tensor
    ) -> ExportedArtifact:
        ov = require("openvino", extra="openvino", feature="OpenVINO export")
        model, source = self._convert(module, spec=spec, staging=staging)
        _name_io(model)
        # dynamic: any batch at the spec's size; static: batch 1, every dimension fixed (benchmark_app and
        # fixed-shape devices take it as it is)
        batch = -1 if self.options.dynamic_batch else 1
        model.reshape({model.inputs[0]: ov.PartialShape([batch, *spec.input_size])})
        for key, value in artifact_metadata(spec, provenance=self.provenance).items():
            model.set_rt_info(value, key_path(key))
        xml = staging / self.artifact_name()
        ov.save_model(model, str(xml), compress_to_fp16=self.precision == "fp16")
        details = {"source": source, "weights": self.precision, "ops": len(model.get_ordered_ops())}
        return ExportedArtifact(files=[xml.with_suffix(".bin"), xml], main=xml, details=details)

    def _convert(self, module: nn.Module, *, spec: ModelSpec, staging: Path):
        order = ["pytorch", "onnx"] if self.options.source == "auto" else [self.options.source]
        attempts = [(s, functools.partial(_CONVERTERS[s], module, spec=spec, staging=staging)) for s in order]
        source, model = first_that_works(attempts, what="OpenVINO conversion", error=ExportError)
        return model, source


def _from_pytorch(module: nn.Module, *, spec: ModelSpec, staging: Path):
    ov = require("openvino", extra="openvino", feature="OpenVINO export")
    example = torch.zeros(spec.batch_shape(2))  # batch 2: a size-1 batch could be specialised
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return ov.convert_model(module.eval(), example_input=example)


def _from_onnx(module: nn.Module, *, spec: ModelSpec, staging: Path):
    from vitopt.backends.onnx.exporter import OnnxOptions, export_onnx

    ov = require("openvino", extra="openvino", feature="OpenVINO export")
    path = staging / "openvino-source.onnx"
    export_onnx(module, spec=spec, path=path, options=OnnxOptions())
    try:
        return ov.convert_model(str(path))
    finally:
        path.unlink(missing_ok=True)


_CONVERTERS = {"pytorch": _from_pytorch, "onnx": _from_onnx}


def _name_io(model) -> None:
    """Stable tensor names, so apps and vitopt's runner address them the same way."""
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})

