"""The model inside an Android bundle: shapes fixed, the operator form ONNX Runtime's mobile checker rates
best for NNAPI, converted to ``.ort`` with the optimisation style ONNX Runtime recommends for it.

Each operator form (``vitopt.bundle.variants``) is parity-verified against the fixed model and judged by
the checker; the one NNAPI takes best ships (verdict, then fewer partitions, then coverage). When no form
rates above NO, the app will run on the CPU, where the fused operators are fastest: the graph as exported
ships. The manifest records every form's verdict and why one was chosen.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from platform import machine
from typing import Any

import numpy as np

from vitopt.bundle import mobile
from vitopt.bundle.variants import decompose, present
from vitopt.errors import RunError, VerificationError

PARITY = 1e-3  # max |logit difference| between the compressed model and what the bundle ships
FORMS = ((), ("LayerNormalization",), ("Gelu",), ("LayerNormalization", "Gelu"))  # operators written out
_RANK = {"YES": 2, "MAYBE": 1, "NO": 0}


def android_model(model: Path, *, work: Path, input_shape: list[int], images: np.ndarray,
                  dynamic_shapes: bool) -> tuple[dict[str, bytes], dict[str, Any]]:  # fmt: skip
    """(bundle members, what the manifest says of them) for the ONNX model at ``model``."""
    info: dict[str, Any] = {"input_shape": input_shape}
    if mobile.dynamic_dims(model) and not dynamic_shapes:
        fixed = work / "fixed" / "model.onnx"
        fixed.parent.mkdir()
        info["shape_ops_left"] = mobile.fix_shapes(model, fixed, input_shape=input_shape)
        info["fixed_parity"] = mobile.parity(model, fixed, images=images, tolerance=PARITY)
        model = fixed
    info["static_shapes"] = not mobile.dynamic_dims(model)
    chosen, info["variants"] = choose_form(model, work=work, images=images)
    info["checker"] = chosen["checker"]
    style = "Runtime" if chosen["checker"].get("recommended_android") == "NNAPI" else "Fixed"
    files = ort_files(chosen["path"], work=work, style=style)
    (work / "model.ort").write_bytes(files["model.ort"])
    info["ort_optimization_style"] = style
    info["ort_parity"] = mobile.parity(model, work / "model.ort", images=images, tolerance=PARITY)
    return files, info


def choose_form(model: Path, *, work: Path, images: np.ndarray) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every operator form of ``model`` that verifies, judged by the checker; (the chosen one, all)."""
    forms = [_judge(model, ops, work=work, images=images) for ops in _forms_of(model)]
    forms = [f for f in forms if f is not None]
    best = max(forms, key=_score)
    if _score(best)[0] == 0:  # NNAPI takes none of them: the CPU runs the app, fused ops are its fastest
        best = forms[0]
    for form in forms:
        form["chosen"] = form is best
    return best, [{k: v for k, v in f.items() if k != "path"} for f in forms]


def _forms_of(model: Path) -> list[tuple[str, ...]]:
    """The forms worth judging: those that write out an operator the graph holds."""
    held = present(model)
    return [ops for ops in FORMS if all(op in held for op in ops)]


def _judge(model: Path, ops: tuple[str, ...], *, work: Path, images: np.ndarray) -> dict[str, Any] | None:
    path = model
    form: dict[str, Any] = {"decomposed": list(ops)}
    if ops:
        path = work / "forms" / ("-".join(ops) + ".onnx")
        path.parent.mkdir(exist_ok=True)
        form["nodes_rewritten"] = decompose(model, path, ops=ops)
        try:
            form["parity"] = mobile.parity(model, path, images=images, tolerance=PARITY)
        except VerificationError:  # a form that changes the outputs is never shipped
            return None
    return {**form, "checker": mobile.usability(path), "path": path}


def _score(form: dict[str, Any]) -> tuple[int, int, float]:
    nnapi = form["checker"].get("NNAPI") or {}
    return _RANK.get(nnapi.get("verdict"), 0), -nnapi.get("partitions", 10**6), nnapi.get("coverage", 0.0)


def ort_files(model: Path, *, work: Path, style: str) -> dict[str, bytes]:
    out = work / "ort"
    shutil.rmtree(out, ignore_errors=True)
    done = _convert(model, out=out, style=style)
    ort, configs = list(out.glob("*.ort")), list(out.glob("*.config"))
    if done.returncode != 0 or len(ort) != 1:
        raise RunError(f"ONNX Runtime could not convert model.onnx to .ort: {done.stderr.strip()[-300:]}")
    files = {"model.ort": ort[0].read_bytes()}
    for config in configs[:1]:  # its comments name temporary paths: replaced, for reproducible bundles
        ops = [line for line in config.read_text().splitlines() if line and not line.startswith("#")]
        files["required_operators.config"] = "\n".join([_CONFIG_HEADER, *ops, ""]).encode()
    return files


_CONFIG_HEADER = "# Operators model.ort needs (ONNX Runtime's converter): for a reduced build, --include_ops_by_config"


def _convert(model: Path, *, out: Path, style: str) -> subprocess.CompletedProcess:
    """The converter, with address-space randomisation off where ``setarch`` allows: ORT writes the
    kernel-type table of a .ort file in an order that follows pointer addresses, so two conversions of
    one model differed in ~1,200 bytes here; without randomisation they are byte-identical. ``Runtime``
    style (ONNX Runtime's advice for NNAPI) keeps the graph as the checker judged it."""
    cmd = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(model),
           "--output_dir", str(out), "--optimization_style", style]  # fmt: skip
    setarch = shutil.which("setarch")
    if setarch:
        done = subprocess.run([setarch, machine(), "-R", *cmd], capture_output=True, text=True)
        if done.returncode == 0:
            return done
    return subprocess.run(cmd, capture_output=True, text=True)
