"""Core ML weight compression with coremltools' optimize API: int8 weights and k-means palettes.

A Core ML package computes in fp16 on the Neural Engine whatever its weights are stored as, so
these schemes shrink the package (and the memory traffic of loading weights), not the arithmetic:
``int8-weights`` is per-channel symmetric linear quantisation, ``palette8/6/4`` are per-tensor
k-means look-up tables of 2**n values (per-grouped-channel palettes need iOS18 packages).
Tensors of at most 2048 elements (biases, norms) stay fp16, coremltools' default.

Off macOS a package cannot run, so ``simulate`` applies the same scheme to the PyTorch model
with coremltools' torch-side post-training compressors and the report measures that model's
accuracy instead, saying so.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import torch
from torch import nn

from vitopt.backends.exporter import ExportedArtifact
from vitopt.backends.quantizer import Quantizer, quiet_logger
from vitopt.errors import ExportError, UnsupportedOptionError, one_line
from vitopt.formats import require

PALETTE_BITS = {"palette8": 8, "palette6": 6, "palette4": 4}


class CoreMLQuantizer(Quantizer):
    schemes = ("int8-weights", *PALETTE_BITS)
    base_precision = "fp16"

    def quantize(self, artifact: ExportedArtifact, *, scheme: str, calibration: torch.Tensor, dest: Path,
                 labelled=None) -> ExportedArtifact:  # fmt: skip
        ct = require("coremltools", extra="coreml", feature="Core ML weight compression")
        if self.settings.keep_float_modules:
            hint = "Core ML compresses weights only; remove the option for coreml"
            raise UnsupportedOptionError("quantize.keep_float_modules is not supported for Core ML", hint=hint)
        model = ct.models.MLModel(str(artifact.main), skip_model_load=True)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # progress bars, as in the exporter
                compressed = _compress(ct, model, scheme)
        except Exception as err:  # coremltools raises plain exceptions
            raise ExportError(f"Core ML {scheme} compression failed: {one_line(err)}") from err
        compressed.save(str(dest))
        info = {"scheme": scheme, "tool": "coremltools.optimize.coreml", "compute": "fp16"}
        return ExportedArtifact(files=[dest], main=dest, details={**artifact.details, "quantization": info})

    def simulate(self, module: nn.Module, *, scheme: str) -> nn.Module:
        require("coremltools", extra="coreml", feature="simulating Core ML weight compression")
        if scheme == "int8-weights":
            from coremltools.optimize.torch.quantization import PostTrainingQuantizer, PostTrainingQuantizerConfig

            config = PostTrainingQuantizerConfig.from_dict(
                {"global_config": {"weight_dtype": "int8", "granularity": "per_channel"}})  # fmt: skip
            compressor = PostTrainingQuantizer(copy.deepcopy(module), config)
        else:
            from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig

            config = PostTrainingPalettizerConfig.from_dict(
                {"global_config": {"n_bits": PALETTE_BITS[scheme], "granularity": "per_tensor"}})  # fmt: skip
            compressor = PostTrainingPalettizer(copy.deepcopy(module), config)
        with contextlib.redirect_stderr(io.StringIO()), quiet_logger("coremltools"):  # a line per tensor
            return compressor.compress().eval()


def _compress(ct, model, scheme: str):
    optimize = ct.optimize.coreml
    if scheme == "int8-weights":
        op = optimize.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        return optimize.linear_quantize_weights(model, config=optimize.OptimizationConfig(global_config=op))
    op = optimize.OpPalettizerConfig(mode="kmeans", nbits=PALETTE_BITS[scheme], granularity="per_tensor")
    return optimize.palettize_weights(model, config=optimize.OptimizationConfig(global_config=op))
