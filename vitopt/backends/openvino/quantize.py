"""OpenVINO int8 with NNCF: post-training quantisation for transformers, or int8 weights only.

``int8`` runs ``nncf.quantize`` with ``ModelType.TRANSFORMER`` (symmetric weights, SmoothQuant,
no quantisers on the attention output) on the pipeline's real calibration images; the op groups
the recipe keeps in float become an ignored scope by op type (LayerNorm is OpenVINO's MVN), and
module globs one by node name (OpenVINO's PyTorch frontend names nodes ``__module.<path>/...``).
``int8-weights`` compresses weights only (``nncf.compress_weights``, INT8_ASYM): no calibration.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vitopt.backends.exporter import ExportedArtifact
from vitopt.backends.quantizer import Labelled, Quantizer
from vitopt.errors import ExportError, one_line
from vitopt.formats import require

if TYPE_CHECKING:
    from vitopt.recipe import QuantizeSettings

OP_TYPES = {"layer_norm": "MVN", "softmax": "Softmax", "gelu": "Gelu", "residual_add": "Add"}


class OpenVinoQuantizer(Quantizer):
    schemes = ("int8", "int8-weights")
    uses_labels = True

    def __init__(self, *, settings: QuantizeSettings, only: str | None = None) -> None:
        super().__init__(settings=settings)
        self.only = only  # a regex over module paths: quantise only those modules (vitopt quant-sensitivity)

    def quantize(self, artifact: ExportedArtifact, *, scheme: str, calibration: torch.Tensor, dest: Path,
                 labelled: Labelled | None = None) -> ExportedArtifact:  # fmt: skip
        ov = require("openvino", extra="openvino", feature="OpenVINO quantisation")
        nncf = require("nncf", extra="openvino", feature="OpenVINO quantisation (NNCF)")
        model = ov.Core().read_model(str(artifact.main))
        controlled = scheme == "int8" and labelled is not None and self.settings.accuracy_control
        try:
            if scheme == "int8-weights":
                quantized = _weights_only(nncf, model)
            else:
                quantized = self._int8(nncf, model, calibration, labelled=labelled if controlled else None)
        except Exception as err:  # NNCF raises its own and backend errors alike
            raise ExportError(f"NNCF {scheme} quantisation failed: {one_line(err)}") from err
        ov.save_model(quantized, str(dest), compress_to_fp16=False)
        info = self.describe(scheme, quantized)
        if controlled:
            info["accuracy_control"] = {"max_drop": self.settings.max_accuracy_drop, "source": "--data (labelled)",
                                        "validation_images": len(labelled[1])}  # fmt: skip
        return ExportedArtifact(files=[dest.with_suffix(".bin"), dest], main=dest,
                                details={**artifact.details, "quantization": info})  # fmt: skip

    def _int8(self, nncf, model, calibration: torch.Tensor, *, labelled: Labelled | None):
        images = [image[None].numpy() for image in calibration]  # the IR takes one image per call here
        common = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(images),
                  "ignored_scope": self.ignored_scope(nncf)}  # fmt: skip
        if labelled is None:
            return nncf.quantize(model, nncf.Dataset(images), **common)
        items = [(x[None].numpy(), y[None].numpy()) for x, y in zip(*labelled, strict=True)]
        return nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(images), nncf.Dataset(items), _top1, max_drop=self.settings.max_accuracy_drop,
            drop_type=nncf.DropType.ABSOLUTE, **common,
        )  # fmt: skip

    def ignored_scope(self, nncf):
        """Unmatched rules are skipped (validate=False): which ops exist depends on the model and the
        frontend (timm's fused attention becomes one ScaledDotProductAttention op, with no Softmax)."""
        types = [OP_TYPES[group] for group in self.settings.keep_float]
        patterns = [_node_pattern(glob) for glob in self.settings.keep_float_modules]
        if self.only is not None:
            patterns.append(rf"(?!__module\.{self.only}[./]).*")  # every node outside those modules
        return nncf.IgnoredScope(types=types, patterns=patterns, validate=False)

    def describe(self, scheme: str, model) -> dict:
        ops = [op.get_type_name() for op in model.get_ordered_ops()]
        return {"scheme": scheme, "tool": "nncf", "fake_quantize_ops": ops.count("FakeQuantize"),
                "keep_float": list(self.settings.keep_float),
                "keep_float_modules": list(self.settings.keep_float_modules)}  # fmt: skip


def _top1(compiled, items) -> float:
    """NNCF's validation function: top-1 of a compiled model on (image, label) pairs."""
    output = compiled.outputs[0]
    hits = [int(np.argmax(compiled(image)[output], axis=1)[0] == label[0]) for image, label in items]
    return sum(hits) / max(len(hits), 1)


def _weights_only(nncf, model):
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def _node_pattern(glob: str) -> str:
    """A regex (NNCF matches it against node names) for the nodes of the modules under ``glob``."""
    inner = fnmatch.translate(glob).removeprefix("(?s:").removesuffix(")\\Z")
    return rf"__module\.{inner}(?:[./].*)?"
