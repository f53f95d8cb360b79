"""ONNX export (torch.export-based exporter, TorchScript fallback) simplified by onnxslim."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vitopt.backends.exporter import ExportedArtifact, Exporter
from vitopt.backends.metadata import INPUT_NAME, OUTPUT_NAME, artifact_metadata
from vitopt.errors import ExportError, first_that_works
from vitopt.formats import require
from vitopt.spec import ModelSpec


class OnnxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # 20 is the first opset with a Gelu operator: at 18 GELU is exported as Div/Erf/Add/Mul/Mul in an order
    # ONNX Runtime's Gelu fusion does not match; opset 20 runs DeiT-Tiny 1.12x and RepViT-M0.9 1.37x faster
    # on ORT at batch 1 (bench/bench_onnx_opset.py, bench/RESULTS.md "ONNX opset 18 vs 20").
    opset: int = Field(20, ge=17)
    exporter: Literal["auto", "dynamo", "torchscript"] = "auto"
    simplify: bool = True
    dynamic_batch: bool = True


class OnnxExporter(Exporter):
    Options = OnnxOptions

    def export(
        self, module: nn.Module, *, spec: ModelSpec, staging: Path, calibration: torch.Tensor
    ) -> ExportedArtifact:
        onnx = require("onnx", extra="onnx", feature="ONNX export")
        path = staging / self.artifact_name()
        batch = 2 if self.options.dynamic_batch else 1  # a static graph: batch 1, a phone's and a benchmark's
        used = export_onnx(module, spec=spec, path=path, options=self.options, batch=batch)
        details = {"opset": self.options.opset, "exporter": used}
        if self.options.simplify:
            details["nodes_before_simplify"] = len(onnx.load(str(path)).graph.node)
            simplify_onnx(path)
        details["nodes"] = embed_metadata(path, spec=spec, provenance=self.provenance)
        return ExportedArtifact(files=[path], main=path, details=details)


def export_onnx(module: nn.Module, *, spec: ModelSpec, path: Path, options: OnnxOptions, batch: int = 2) -> str:
    """Export with the requested exporter; 'auto' tries torch.export first. Returns which ran.

    ``batch`` is the example's batch size: with a dynamic batch keep it above 1 (a size-1
    dimension would be specialised); with a static batch it is the batch the graph fixes.
    """
    order = ["dynamo", "torchscript"] if options.exporter == "auto" else [options.exporter]
    attempts = [(kind, functools.partial(_export_with, kind, module, spec=spec, path=path, options=options,
                                         batch=batch)) for kind in order]  # fmt: skip
    return first_that_works(attempts, what="ONNX export", error=ExportError)[0]


def _export_with(kind: str, module: nn.Module, *, spec: ModelSpec, path: Path, options, batch: int) -> None:
    example = (torch.zeros(spec.batch_shape(batch)),)
    common = dict(opset_version=options.opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if kind == "dynamo":
            require("onnxscript", extra="onnx", feature="the torch.export-based ONNX exporter")
            shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if options.dynamic_batch else None
            torch.onnx.export(module, example, str(path), dynamo=True, dynamic_shapes=shapes,
                              external_data=False, verbose=False, **common)  # fmt: skip
        else:
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if options.dynamic_batch else None
            torch.onnx.export(module, example, str(path), dynamo=False, dynamic_axes=axes, **common)


def embed_metadata(path: Path, *, spec: ModelSpec, provenance: dict[str, str] | None = None) -> int:
    """Store the input contract and provenance in the model's metadata; returns the node count."""
    onnx = require("onnx", extra="onnx", feature="ONNX export")
    proto = onnx.load(str(path))
    for key, value in artifact_metadata(spec, provenance=provenance).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return len(proto.graph.node)


def simplify_onnx(path: Path) -> None:
    """Constant folding and graph cleanup with onnxslim, in place."""
    onnx = require("onnx", extra="onnx", feature="ONNX export")
    onnxslim = require("onnxslim", extra="onnx", feature="ONNX simplification")
    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))
