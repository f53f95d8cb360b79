"""What an Android bundle's model goes through: shapes fixed from the spec (ONNX Runtime's own
``make_dynamic_shape_fixed``, then onnxslim folds the shape arithmetic away), parity against the model
it came from, ONNX Runtime's mobile usability checker (its real output, parsed), and parity of the
``.ort`` file the app will load."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vitopt.backends.metadata import INPUT_NAME
from vitopt.backends.onnx.mobile_check import usability
from vitopt.errors import InputError, VerificationError

SHAPE_OPS = ("Shape", "Expand", "ConstantOfShape")


def dynamic_dims(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = [d for i in model.graph.input for d in i.type.tensor_type.shape.dim]
    return [d.dim_param or "?" for d in dims if not d.HasField("dim_value")]


def fix_shapes(source: Path, dest: Path, *, input_shape: list[int]) -> dict[str, int]:
    """A copy of ``source`` with its input fixed to ``input_shape`` and shape arithmetic folded away;
    returns how many shape operators are left."""
    import onnx

    from vitopt.backends.onnx.exporter import simplify_onnx

    cmd = [sys.executable, "-m", "onnxruntime.tools.make_dynamic_shape_fixed", "--input_name", INPUT_NAME,
           "--input_shape", ",".join(map(str, input_shape)), str(source), str(dest)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise InputError(f"cannot fix the ONNX model's input to {input_shape}: {done.stderr.strip()[-200:]}",
                         hint="bundle --dynamic-shapes keeps the dynamic model")  # fmt: skip
    simplify_onnx(dest)
    ops = collections.Counter(n.op_type for n in onnx.load(str(dest)).graph.node)
    return {op: ops[op] for op in SHAPE_OPS}


def parity(reference: Path, candidate: Path, *, images: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Both models on ONNX Runtime (it loads .onnx and .ort alike), one image at a time."""
    from vitopt.backends.onnx.runner import OnnxRuntimeRunner

    a, b = OnnxRuntimeRunner(reference, threads=1), OnnxRuntimeRunner(candidate, threads=1)
    ref = np.concatenate([a.run(images[i : i + 1]) for i in range(len(images))])
    out = np.concatenate([b.run(images[i : i + 1]) for i in range(len(images))])
    agreement = float((ref.argmax(1) == out.argmax(1)).mean())
    result = {"max_abs_diff": float(np.abs(ref - out).max()), "top1_agreement": agreement, "n_images": len(images),
              "file": candidate.name}  # fmt: skip
    if result["max_abs_diff"] > tolerance:
        raise VerificationError(f"{candidate.name} differs from the compressed model by {result['max_abs_diff']:.2e} "
                                f"(tolerance {tolerance:g})")  # fmt: skip
    return result


def check_module(module, *, spec) -> dict[str, Any]:
    """``vitopt check --mobile``: the model exported as a static ONNX graph (what an Android bundle ships),
    then ONNX Runtime's mobile checker on it, before any compression."""
    import tempfile

    from vitopt.formats import FORMATS

    fmt = FORMATS.get("onnx")
    with tempfile.TemporaryDirectory(prefix="vitopt-mobile-") as tmp:
        exporter = fmt.exporter_class()(fmt=fmt, precision="fp32", options={"dynamic_batch": False})
        artifact = exporter.export(module.eval(), spec=spec, staging=Path(tmp), calibration=None)
        return usability(artifact.main)


def ios_info(package: Path, *, input_shape: list[int]) -> dict[str, Any]:
    """What Linux can know of a Core ML package: its static input shape and the ML-program operators in it.
    Which of them run on the Neural Engine only a Mac's compute plan (Xcode's performance report) tells:
    Apple documents no per-operator list, so none is guessed here."""
    info: dict[str, Any] = {"static_shapes": True, "input_shape": input_shape,
                            "neural_engine": "not checkable off macOS: see Xcode's performance report"}
    try:
        import coremltools as ct

        spec = ct.utils.load_spec(str(package))
    except Exception as err:  # coremltools missing or the package unreadable: say so, ship the rest
        info["ops"] = f"not read: {err}"
        return info
    blocks = [b for f in spec.mlProgram.functions.values() for b in f.block_specializations.values()]
    ops = collections.Counter(op.type for b in blocks for op in b.operations if op.type != "const")
    info["ops"] = dict(sorted(ops.items()))
    return info
