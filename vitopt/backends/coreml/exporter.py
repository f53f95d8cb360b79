"""Core ML ML-program packages (``model.mlpackage``) via coremltools.

The package takes an image, not a tensor: ``ct.ImageType`` scales pixels to [0, 1] and the
model's own mean/std normalisation runs inside the graph (Core ML's image scale is one
number for all channels, so per-channel std cannot live in the input description). An app
hands it a ``CVPixelBuffer`` and gets class labels and probabilities back (a classifier,
labels from the model spec or class indices) or raw logits (``classifier: false``).

The graph comes from ``torch.export`` with the rewrites of ``rewrites`` (rank <= 5,
roll as slices); where export fails, from ``torch.jit.trace`` (``source`` in the details).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from vitopt import __version__
from vitopt.backends.coreml.rewrites import prepare_program
from vitopt.backends.exporter import ExportedArtifact, Exporter
from vitopt.backends.metadata import (
    COREML_INPUT,
    COREML_LABEL,
    COREML_PROBABILITIES,
    OUTPUT_NAME,
    PARAMETERS_KEY,
    artifact_metadata,
    class_labels,
)
from vitopt.errors import ExportError, first_that_works
from vitopt.formats import require
from vitopt.spec import ModelSpec

log = logging.getLogger("vitopt")


class CoreMLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    minimum_deployment_target: Literal["iOS16", "iOS17", "iOS18"] = "iOS16"
    classifier: bool = True  # class labels + probabilities; False: a "logits" multi-array
    source: Literal["auto", "export", "trace"] = "auto"
    author: str = "vitopt"
    license: str | None = None
    # Weights that are mostly zeros (DIMAP unstructured) stored as coremltools' sparse representation (a bit
    # mask plus the non-zero values); "auto": when any weight matrix of the model is at least 30% zeros.
    sparse_weights: Literal["auto", "always", "never"] = "auto"


class PixelsToOutputs(nn.Module):
    """What the package computes: pixels in [0, 1] -> normalise -> model -> (softmax)."""

    def __init__(self, model: nn.Module, *, spec: ModelSpec, softmax: bool) -> None:
        super().__init__()
        self.model, self.softmax = model, softmax
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # "image" names the package's input
        logits = self.model((image - self.mean) / self.std)
        return torch.softmax(logits, dim=1) if self.softmax else logits


class CoreMLExporter(Exporter):
    Options = CoreMLOptions

    def export(
        self, module: nn.Module, *, spec: ModelSpec, staging: Path, calibration: torch.Tensor
    ) -> ExportedArtifact:
        ct = require("coremltools", extra="coreml", feature="Core ML export")
        wrapped = PixelsToOutputs(module.eval(), spec=spec, softmax=self.options.classifier).eval()
        mlmodel, details = self._convert(ct, wrapped, spec=spec)
        self._describe(mlmodel, spec=spec, parameters=sum(p.numel() for p in module.parameters()))
        if self.options.sparse_weights == "always" or (self.options.sparse_weights == "auto" and mostly_zero(module)):
            mlmodel, details["sparse_weights"] = store_sparse(ct, mlmodel)
        path = staging / self.artifact_name()
        mlmodel.save(str(path))
        details |= {"compute_precision": self.precision, "target": self.options.minimum_deployment_target,
                    "classifier": self.options.classifier}  # fmt: skip
        return ExportedArtifact(files=[path], main=path, details=details)

    def _convert(self, ct, wrapped: nn.Module, *, spec: ModelSpec):
        order = ["export", "trace"] if self.options.source == "auto" else [self.options.source]
        attempts = [(s, functools.partial(self._convert_from, ct, s, wrapped, spec=spec)) for s in order]
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return first_that_works(attempts, what="Core ML conversion", error=ExportError)[1]

    def _convert_from(self, ct, source: str, wrapped: nn.Module, *, spec: ModelSpec):
        example = torch.rand(spec.batch_shape(1))  # pixels as ImageType hands them over
        if source == "export":
            program, rewrites = prepare_program(wrapped, example=example)
            if rewrites.above_rank_5:
                raise ExportError(f"tensors above rank 5 remain at {', '.join(rewrites.above_rank_5[:5])}")
            return _quiet_convert(ct, program, **self._convert_kwargs(ct, spec=spec)), {"source": source,
                                                                                        **rewrites.counts()}
        traced = torch.jit.trace(wrapped, example)
        return _quiet_convert(ct, traced, **self._convert_kwargs(ct, spec=spec)), {"source": source}

    def _convert_kwargs(self, ct, *, spec: ModelSpec) -> dict:
        precision = ct.precision.FLOAT16 if self.precision == "fp16" else ct.precision.FLOAT32
        kwargs = {
            "inputs": [_input_type(ct, spec)], "convert_to": "mlprogram", "compute_precision": precision,
            "minimum_deployment_target": getattr(ct.target, self.options.minimum_deployment_target),
            "skip_model_load": True,  # nothing can load it off macOS; the validator reads the spec instead
        }  # fmt: skip
        if self.options.classifier:
            kwargs["classifier_config"] = ct.ClassifierConfig(
                class_labels(spec), predicted_feature_name=COREML_LABEL,
                predicted_probabilities_output=COREML_PROBABILITIES,
            )
        kwargs["outputs"] = [ct.TensorType(name=COREML_PROBABILITIES if self.options.classifier else OUTPUT_NAME)]
        return kwargs

    def _describe(self, mlmodel, *, spec: ModelSpec, parameters: int) -> None:
        _, height, width = spec.input_size
        mlmodel.author, mlmodel.version = self.options.author, __version__
        mlmodel.short_description = f"{spec.name}: {spec.num_classes}-class image classifier, exported by vitopt"
        if self.options.license:
            mlmodel.license = self.options.license
        mlmodel.input_description[COREML_INPUT] = f"{width}x{height} image; normalised inside the model"
        metadata = artifact_metadata(spec, provenance=self.provenance) | {PARAMETERS_KEY: str(parameters)}
        mlmodel.user_defined_metadata.update(metadata)


SPARSE_FROM = 0.3  # a tensor with at least this fraction of zeros is stored sparse


def mostly_zero(module: nn.Module) -> bool:
    weights = [p for p in module.parameters() if p.ndim >= 2 and p.numel() >= 2048]
    return any(float((w == 0).float().mean()) >= SPARSE_FROM for w in weights)


def store_sparse(ct, mlmodel) -> tuple:
    """The zeros already in the weights kept as sparse tensors (coremltools' optimize API; the threshold
    only finds exact zeros, so nothing is pruned here)."""
    from coremltools.optimize import coreml as optimize

    config = optimize.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=SPARSE_FROM,
                                              weight_threshold=2048)  # fmt: skip
    with _quiet():  # it names every tensor it leaves dense
        sparse = optimize.prune_weights(mlmodel, config=optimize.OptimizationConfig(global_config=config))
    return sparse, {"min_zero_fraction": SPARSE_FROM, "representation": "coremltools sparse (bit mask + values)"}


def _quiet_convert(ct, model, **kwargs):
    """``ct.convert`` without its progress bars (four tqdm bars on stderr per conversion, which
    would interleave with vitopt's own progress); what it printed goes to the debug log."""
    with _quiet():
        return ct.convert(model, **kwargs)


@contextlib.contextmanager
def _quiet():
    """coremltools' progress bars (stderr) and per-op notices (its logger) into vitopt's debug log."""
    captured, logger = io.StringIO(), logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        logger.setLevel(level)
        log.debug("coremltools: %s", captured.getvalue()[-2000:])


def _input_type(ct, spec: ModelSpec):
    """An image input where Core ML has a colour layout for the channel count, else a tensor."""
    layouts = {3: ct.colorlayout.RGB, 1: ct.colorlayout.GRAYSCALE}
    shape = spec.batch_shape(1)
    if spec.input_size[0] not in layouts:
        log.warning("Core ML images have 1 or 3 channels; %d-channel input stays a tensor", spec.input_size[0])
        return ct.TensorType(name=COREML_INPUT, shape=shape)
    return ct.ImageType(name=COREML_INPUT, shape=shape, scale=1 / 255.0, color_layout=layouts[spec.input_size[0]])
