"""What vitopt stores inside every artifact and the tensor names apps address, in one place.

Exporters write these entries (ONNX metadata_props, OpenVINO rt_info, Core ML
user_defined_metadata) and runners read them back; neither side defines a key of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from vitopt.spec import ModelSpec

SPEC_KEY = "vitopt.spec"  # the input contract (ModelSpec as JSON): size, mean/std, labels
VERSION_KEY = "vitopt.version"
PARAMETERS_KEY = "vitopt.parameters"  # the source model's parameter count (Core ML validator)
RECIPE_KEY = "vitopt.recipe"

# Tensor names of ONNX, TensorRT-prepared ONNX and OpenVINO artifacts.
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# A Core ML package takes an image and, as a classifier, returns a label and probabilities.
COREML_INPUT, COREML_LABEL, COREML_PROBABILITIES = "image", "classLabel", "classProbabilities"


def artifact_metadata(spec: ModelSpec, *, provenance: Mapping[str, str] | None = None) -> dict[str, str]:
    """Entries every artifact carries: the spec, vitopt's version and where it came from."""
    from vitopt import __version__

    return {SPEC_KEY: spec.to_json(), VERSION_KEY: __version__, **{k: str(v) for k, v in (provenance or {}).items()}}


def key_path(key: str) -> list[str]:
    """A key as a path, for stores that nest (OpenVINO's rt_info keeps SPEC_KEY at ["vitopt", "spec"])."""
    return key.split(".")


def spec_from_metadata(entries: Mapping[str, str]) -> ModelSpec | None:
    """The stored input contract, or None for an artifact vitopt did not export."""
    text = entries.get(SPEC_KEY)
    return None if text is None else ModelSpec.from_json(text)


def class_labels(spec: ModelSpec) -> list:
    """A classifier's labels: the spec's class names, else the class indices."""
    return list(spec.labels) if spec.labels else list(range(spec.num_classes))
