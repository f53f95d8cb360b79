"""Check a Core ML package as far as a machine without Core ML allows.

Off macOS nothing can execute an ``.mlpackage``, so its numbers cannot be compared with
PyTorch here. What can be read is checked: the spec loads as an ML program, the input is an
image of the model's size and colour layout, the outputs are what an app expects
(label + probabilities for a classifier, else logits), every op exists in the opset of the
deployment target and no tensor exceeds rank 5 (which Core ML rejects only on the device),
the compute precision is the one asked for, and the weights are finite and all there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vitopt.backends.coreml.rewrites import MAX_RANK
from vitopt.backends.metadata import PARAMETERS_KEY
from vitopt.errors import VerificationError, one_line
from vitopt.formats import require
from vitopt.spec import ModelSpec

MIN_WEIGHT_FRACTION = 0.8  # folding BN into convs drops ~1%; far fewer weights means some were lost


def validate_mlpackage(path: Path, *, spec: ModelSpec, precision: str) -> dict[str, Any]:
    package = _load(Path(path))
    checks = [_kind, _image_input, _outputs, _opset_and_rank, _precision, _weights]
    checked = [check(package, spec=spec, precision=precision) for check in checks]
    return {"checked": checked, "ops": len(package.operations), "opset": package.opset_name}


class _Package:
    """The three views of one package the checks need: proto spec, MLModel, MIL program."""

    def __init__(self, ct, path: Path) -> None:
        from coremltools.converters.mil.frontend.milproto.load import load as proto_to_mil

        self.proto = ct.utils.load_spec(str(path))
        self.model = ct.models.MLModel(str(path), skip_model_load=True)
        main = proto_to_mil(self.proto, self.proto.specificationVersion, self.model.weights_dir).functions["main"]
        self.opset, self.opset_name = main.opset_version, getattr(main.opset_version, "name", str(main.opset_version))
        self.operations = list(main.operations)

    def compressed(self) -> list:
        """Weights stored compressed (int8, a palette or sparse), expanded by a constexpr op at load time."""
        return [op for op in self.operations if op.op_type.startswith("constexpr_")]

    def lossy(self) -> list:
        """Compressed weights whose values changed (int8, palettes); sparse storage of zeros is exact."""
        return [op for op in self.compressed() if op.op_type != "constexpr_sparse_to_dense"]

    def weights(self) -> list[np.ndarray]:
        return [v for v in (op.outputs[0].val for op in self.operations if op.op_type == "const")
                if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 1]  # fmt: skip


def _load(path: Path) -> _Package:
    ct = require("coremltools", extra="coreml", feature="Core ML package validation")
    try:
        return _Package(ct, path)
    except Exception as err:  # a broken package fails in protobuf, blob storage or MIL parsing
        raise VerificationError(f"Core ML package {str(path)!r} does not load: {one_line(err)}") from err


def _kind(package: _Package, **_) -> str:
    if package.proto.WhichOneof("Type") != "mlProgram":
        raise VerificationError(f"expected an ML program, found {package.proto.WhichOneof('Type')!r}")
    return f"ML program, spec version {package.proto.specificationVersion}"


def _image_input(package: _Package, *, spec: ModelSpec, **_) -> str:
    inputs = package.proto.description.input
    if len(inputs) != 1:
        raise VerificationError(f"expected one input, found {len(inputs)}")
    channels, height, width = spec.input_size
    if channels not in (1, 3):
        return "tensor input (no Core ML colour layout for this channel count)"
    image = inputs[0].type.imageType
    layout = "RGB" if channels == 3 else "GRAYSCALE"
    found = (inputs[0].type.WhichOneof("Type"), image.width, image.height, image.ColorSpace.Name(image.colorSpace))
    if found != ("imageType", width, height, layout):
        raise VerificationError(f"input is {found}, expected an {width}x{height} {layout} image")
    return f"image input {width}x{height} {layout}"


def _outputs(package: _Package, *, spec: ModelSpec, **_) -> str:
    description = package.proto.description
    if description.predictedFeatureName:
        classes = next(op for op in package.operations if op.op_type == "classify").classes.val
        if len(classes) != spec.num_classes:
            raise VerificationError(f"classifier has {len(classes)} labels for {spec.num_classes} classes")
        return f"classifier outputs {description.predictedFeatureName!r} + probabilities over {len(classes)} labels"
    shapes = [list(o.type.multiArrayType.shape) for o in description.output]
    if shapes != [[1, spec.num_classes]]:
        raise VerificationError(f"outputs have shapes {shapes}, expected [[1, {spec.num_classes}]] logits")
    return f"logits output [1, {spec.num_classes}]"


def _opset_and_rank(package: _Package, **_) -> str:
    from coremltools.converters.mil.mil import types
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    known = {name for name, versions in SSAOpRegistry.core_ops.items() if any(v <= package.opset for v in versions)}
    unknown = sorted({op.op_type for op in package.operations} - known)
    if unknown:
        raise VerificationError(f"ops outside the {package.opset_name} opset: {', '.join(unknown)}")
    ranks = [v.rank for op in package.operations for v in op.outputs if types.is_tensor(v.sym_type)]
    if max(ranks, default=0) > MAX_RANK:
        raise VerificationError(f"a tensor of rank {max(ranks)}: Core ML rejects rank > {MAX_RANK} on the device")
    return f"{len(package.operations)} ops in the {package.opset_name} opset, max rank {max(ranks, default=0)}"


def _precision(package: _Package, *, precision: str, **_) -> str:
    """Weights stored and tensors computed in the precision asked for (fp16: Core ML's default)."""
    from coremltools.converters.mil.mil import types

    weight_types = {str(w.dtype) for w in package.weights()}
    computed = [op for op in package.operations if not op.op_type.startswith(("const", "constexpr_"))
                and any(types.is_tensor(v.sym_type) and v.dtype == types.fp16 for v in op.outputs)]  # fmt: skip
    compressed, lossy = package.compressed(), package.lossy()
    compute = "fp32" if precision == "fp32" else "fp16"  # weight-compressed packages compute in fp16
    if weight_types - {{"fp16": "float16", "fp32": "float32"}[compute]}:
        raise VerificationError(f"{precision} package holds {sorted(weight_types)} weights")
    if (compute == "fp16") != bool(computed):
        raise VerificationError(f"{precision} package computes {len(computed)} ops in fp16")
    if (precision not in ("fp16", "fp32")) != bool(lossy):
        raise VerificationError(f"{precision} package holds {len(lossy)} compressed weight tensors")
    stored = f", {len(compressed)} compressed weight tensors" if compressed else ""
    return f"{precision} weights{stored}" + (f", {len(computed)} ops in fp16" if computed else ", fp32 compute")


def _weights(package: _Package, **_) -> str:
    weights = package.weights()
    if not all(np.isfinite(w).all() for w in weights):
        raise VerificationError("weights hold NaN or infinity")
    stored = sum(w.size for w in weights) + sum(int(np.prod(op.outputs[0].shape)) for op in package.compressed())
    expected = int(package.model.user_defined_metadata.get(PARAMETERS_KEY, "0"))
    # coremltools' compression also stores identical constants once: in a freshly initialised RepViT
    # every MLP's last conv folds with a zero-initialised BatchNorm into all-zero weights, and the int8
    # package keeps one of those 16 tensors (5.45M weights in fp16 -> 3.70M stored). So a compressed
    # package is held to finite weights only.
    if expected and stored < MIN_WEIGHT_FRACTION * expected and not package.compressed():
        raise VerificationError(f"{stored:,} weights stored for a model of {expected:,} parameters")
    share = f" ({stored / expected:.2f}x the model's parameters)" if expected else ""
    return f"{stored:,} finite weights{share}"
