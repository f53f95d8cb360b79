"""TensorRT: an ONNX prepared for TensorRT, a build manifest, and an engine where TensorRT runs.

The prepared ONNX has the shapes TensorRT needs (a static batch, or a min/opt/max profile),
opset 17, only operators TensorRT's ONNX parser accepts, and for int8 symmetric QDQ pairs
(TensorRT's explicit quantization needs zero points of 0). The manifest records the exact
``trtexec`` command and Python call that build the engine, so a GPU machine can rebuild it.
The engine itself is built here only where TensorRT and an NVIDIA GPU are present.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from vitopt.backends.exporter import ExportedArtifact, Exporter
from vitopt.backends.metadata import INPUT_NAME
from vitopt.backends.onnx.exporter import OnnxOptions, embed_metadata, export_onnx, simplify_onnx
from vitopt.backends.tensorrt.quantize import quantize_qdq
from vitopt.backends.tensorrt.support import check_operators, unavailable_reason
from vitopt.errors import ExportError, one_line
from vitopt.formats import require
from vitopt.spec import ModelSpec


class TensorRTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: int = Field(1, ge=1)  # the static batch, or the profile's opt batch
    max_batch: int | None = Field(None, ge=1)  # set: dynamic batch with profile 1 / batch / max_batch
    opset: int = Field(18, ge=17)  # torch's exporter writes 18; TensorRT 10's parser reads it
    workspace_mib: int = Field(1024, ge=64)
    build_engine: Literal["auto", "never"] = "auto"  # auto: where TensorRT and a GPU are present
    timing_cache: str = "timing.cache"  # reused across builds (relative to the output directory)

    @model_validator(mode="after")
    def _profile_is_ordered(self) -> TensorRTOptions:
        if self.max_batch is not None and self.max_batch < self.batch:
            raise ValueError(f"max_batch ({self.max_batch}) must be >= batch ({self.batch})")
        return self


class TensorRTExporter(Exporter):
    Options = TensorRTOptions

    def export(
        self, module: nn.Module, *, spec: ModelSpec, staging: Path, calibration: torch.Tensor
    ) -> ExportedArtifact:
        onnx = require("onnx", extra="onnx", feature="the TensorRT-prepared ONNX")
        path = staging / self.artifact_name()
        self._prepare_onnx(module, spec=spec, path=path)
        if self.precision == "int8":
            quantize_qdq(path, calibration=calibration, batch=1 if self.options.max_batch else self.options.batch)
        ops = check_operators(onnx.load(str(path)))
        embed_metadata(path, spec=spec, provenance=self.provenance)
        manifest = build_manifest(onnx_path=path, spec=spec, options=self.options, precision=self.precision)
        manifest_path = path.with_name(path.name.removesuffix(".onnx") + ".manifest.json")
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        files, engine = [path, manifest_path], self._maybe_build(path, manifest=manifest)
        details = {"opset": self.options.opset, "shapes": manifest["shapes"], "ops": ops, "engine": engine["status"]}
        return ExportedArtifact(files=files + engine["files"], main=path, details=details)

    def _prepare_onnx(self, module: nn.Module, *, spec: ModelSpec, path: Path) -> None:
        dynamic = self.options.max_batch is not None
        options = OnnxOptions(opset=self.options.opset, dynamic_batch=dynamic, simplify=True)
        batch = self.options.batch if not dynamic else 2
        export_onnx(module, spec=spec, path=path, options=options, batch=batch)
        simplify_onnx(path)  # folds the shape arithmetic TensorRT would otherwise evaluate per build

    def _maybe_build(self, path: Path, *, manifest: dict) -> dict:
        reason = unavailable_reason()
        if self.options.build_engine == "never" or reason:
            return {"status": f"not built: {reason or 'build_engine is never'}", "files": []}
        from vitopt.backends.tensorrt.build import build_engine

        engine = path.with_name(manifest["engine"])
        try:
            build_engine(**manifest["python_call"]["kwargs"] | {"onnx_path": str(path), "engine_path": str(engine)})
        except Exception as err:  # TensorRT reports parse/build failures through many paths
            raise ExportError(f"TensorRT engine build failed: {one_line(err, limit=400)}") from err
        return {"status": "built", "files": [engine]}


def shapes(spec: ModelSpec, options: TensorRTOptions) -> dict[str, list[int]]:
    image = list(spec.input_size)
    if options.max_batch is None:
        return {"min": [options.batch, *image], "opt": [options.batch, *image], "max": [options.batch, *image]}
    return {"min": [1, *image], "opt": [options.batch, *image], "max": [options.max_batch, *image]}


def build_manifest(*, onnx_path: Path, spec: ModelSpec, options: TensorRTOptions, precision: str) -> dict:
    """How to build the engine elsewhere: a trtexec line and the equivalent vitopt Python call."""
    engine = onnx_path.name.removesuffix(".onnx") + ".plan"
    profile = shapes(spec, options)
    dims = {k: "x".join(map(str, v)) for k, v in profile.items()}
    command = ["trtexec", f"--onnx={onnx_path.name}", f"--saveEngine={engine}",
               f"--timingCacheFile={options.timing_cache}", f"--memPoolSize=workspace:{options.workspace_mib}M",
               f"--minShapes={INPUT_NAME}:{dims['min']}", f"--optShapes={INPUT_NAME}:{dims['opt']}",
               f"--maxShapes={INPUT_NAME}:{dims['max']}", *PRECISION_FLAGS[precision]]  # fmt: skip
    kwargs = {"onnx_path": onnx_path.name, "engine_path": engine, "precision": precision, "shapes": profile,
              "workspace_bytes": options.workspace_mib * 2**20, "timing_cache": options.timing_cache}  # fmt: skip
    return {
        "schema": "vitopt.tensorrt-manifest/1", "onnx": onnx_path.name, "engine": engine, "precision": precision,
        "input": INPUT_NAME, "shapes": profile, "trtexec": shlex.join(command),
        "python_call": {"function": "vitopt.backends.tensorrt.build.build_engine", "kwargs": kwargs},
    }  # fmt: skip


# trtexec's flags; an int8 ONNX carries QDQ pairs, and TensorRT 10 still wants --int8 to honour them.
PRECISION_FLAGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}
