"""What goes into an app bundle: the model for the platform, its labels, the preprocessing an app must
apply to a camera frame, and a manifest with every file's hash and the measured latency and accuracy."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vitopt import __version__
from vitopt.backends.metadata import COREML_INPUT, COREML_LABEL, COREML_PROBABILITIES, INPUT_NAME, OUTPUT_NAME
from vitopt.bundle.archive import files_under
from vitopt.errors import InputError

MANIFEST, SCHEMA = "manifest.json", "vitopt.bundle/1"
PLATFORM_TARGET = {"ios": ("coreml", "model.mlpackage"), "android": ("onnx", "model.onnx")}


def bundle_members(out_dir: Path, *, platform: str, report: dict, dynamic_shapes: bool = False) -> dict[str, bytes]:
    """Archive members (name -> bytes); the model keeps a fixed name (its precision is in the manifest)."""
    target, artifact = PLATFORM_TARGET[platform]
    source = _shipped(out_dir, report=report, target=target, platform=platform)
    if platform == "android":
        model_files, mobile = _android_model(source, report=report, dynamic_shapes=dynamic_shapes)
    else:
        model_files = {k: p.read_bytes() for k, p in files_under(source, prefix=artifact).items()}
        from vitopt.bundle.mobile import ios_info

        mobile = ios_info(source, input_shape=report["model"]["input_shape"])
    members = {**model_files, "labels.txt": _labels(report), "preprocessing.json": _preprocessing(report, platform)}
    members[MANIFEST] = _manifest(members, platform=platform, report=report, target=target, mobile=mobile)
    return members


def _shipped(out_dir: Path, *, report: dict, target: str, platform: str) -> Path:
    from vitopt.gate.gate import artifact_path

    row = _row(report, target)
    if row is None or not row.get("path"):
        raise InputError(f"{str(out_dir)!r} has no verified {target} artifact for {platform}",
                         hint=f"compress with --target {target} first")  # fmt: skip
    if not (out_dir / Path(row["path"]).name).exists():  # only what the folder holds goes into its bundle
        raise InputError(f"{str(out_dir)!r} has no {Path(row['path']).name} for {platform}",
                         hint=f"compress with --target {target} into this folder first")  # fmt: skip
    return artifact_path(row, report, beside_only=True)


def _row(report: dict, target: str) -> dict | None:
    return next((r for r in report["artifacts"] if r["target"] == target and r.get("chosen", True)
                 and r["status"] in ("ok", "not_benchmarked")), None)  # fmt: skip


def _android_model(onnx_path: Path, *, report: dict, dynamic_shapes: bool) -> tuple[dict[str, bytes], dict]:
    """The shipped ONNX model made ready for a phone (``vitopt.bundle.android``), each step verified on
    real images."""
    from vitopt.bundle.android import android_model

    with tempfile.TemporaryDirectory(prefix="vitopt-ort-") as tmp:
        model = Path(tmp) / "model.onnx"
        model.write_bytes(files_under(onnx_path, prefix="model.onnx")["model.onnx"].read_bytes())
        return android_model(model, work=Path(tmp), input_shape=report["model"]["input_shape"],
                             images=_images(report), dynamic_shapes=dynamic_shapes)  # fmt: skip


def _images(report: dict) -> np.ndarray:
    """Real images (vitopt's shipped calibration set) preprocessed by the model's spec, for parity."""
    from vitopt.data import load_batch

    return load_batch(spec=spec_of(report), path=None, n=8).numpy()


def spec_of(report: dict):
    """The model's input contract as the report recorded it (reports before 0747600 lack ``spec``)."""
    from vitopt.spec import ModelSpec

    m = report["model"]
    if m.get("spec"):
        return ModelSpec.from_json(json.dumps(m["spec"]))
    return ModelSpec(name=m["name"], input_size=tuple(m["input_shape"][1:]), mean=tuple(m["mean"]),
                     std=tuple(m["std"]), num_classes=m["num_classes"])  # fmt: skip


def _labels(report: dict) -> bytes:
    spec = report["model"].get("spec") or {}
    labels = spec.get("labels") or [str(i) for i in range(report["model"]["num_classes"])]
    return ("\n".join(labels) + "\n").encode()


def _preprocessing(report: dict, platform: str) -> bytes:
    """How an app turns a camera frame into the model's input. Core ML packages take the image itself
    (pixels 0-255, normalised inside the model); the ONNX Runtime model takes a normalised tensor."""
    m = report["model"]
    spec = m.get("spec") or {}
    _, channels, height, width = m["input_shape"]
    resize = {"short_side": round(min(height, width) / float(spec.get("crop_pct", 1.0))),
              "center_crop": [height, width], "interpolation": spec.get("interpolation", "bilinear")}  # fmt: skip
    if platform == "ios":
        data = {"input": {"name": COREML_INPUT, "kind": "image", "size": [height, width], "colour_order": "RGB"},
                "resize": resize, "normalise": "inside the model (give it the pixels, 0-255)",
                "output": {"label": COREML_LABEL, "probabilities": COREML_PROBABILITIES,
                           "labels": "labels.txt"}}  # fmt: skip
    else:
        data = {"input": {"name": INPUT_NAME, "shape": [1, channels, height, width], "layout": "NCHW",
                          "dtype": "float32", "colour_order": "RGB"}, "resize": resize,
                "normalise": {"scale": 1 / 255, "mean": m["mean"], "std": m["std"],
                              "formula": "(pixel / 255 - mean) / std"},
                "output": {"name": OUTPUT_NAME, "kind": "logits", "classes": m["num_classes"],
                           "labels": "labels.txt"}}  # fmt: skip
    return (json.dumps(data, indent=2) + "\n").encode()


def _manifest(members: dict[str, bytes], *, platform: str, report: dict, target: str, mobile: dict) -> bytes:
    row = _row(report, target) or {}
    files = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in members.items()}
    manifest: dict[str, Any] = {
        "schema": SCHEMA, "platform": platform, "model": report["model"]["name"], "source": report["model"]["source"],
        "vitopt_version": __version__, "recipe": (report.get("recipe") or {}).get("name"),
        "report_created": report.get("created"), "files": dict(sorted(files.items())),
        "measured": {"target": target, "precision": row.get("precision"), "status": row.get("status"),
                     "latency_ms": row.get("latency_ms"), "speedup": row.get("speedup"),
                     "accuracy": row.get("accuracy"), "environment": _environment(report)},
        "mobile": mobile,
    }  # fmt: skip
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def _environment(report: dict) -> str:
    from vitopt.environment import summary_line

    env = report.get("environment")
    return summary_line(env) if env else ""
