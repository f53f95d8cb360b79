"""What goes into an app bundle: the model for the platform, its labels, the preprocessing an app must
apply to a camera frame, and a manifest with every file's hash and the measured latency and accuracy."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from platform import machine
from typing import Any

from vitopt import __version__
from vitopt.backends.metadata import INPUT_NAME, OUTPUT_NAME
from vitopt.bundle.archive import files_under
from vitopt.errors import InputError, RunError

MANIFEST, SCHEMA = "manifest.json", "vitopt.bundle/1"
PLATFORM_TARGET = {"ios": ("coreml", "model.mlpackage"), "android": ("onnx", "model.onnx")}


def bundle_members(out_dir: Path, *, platform: str, report: dict) -> dict[str, bytes]:
    """Archive members (name -> bytes); the model keeps a fixed name (its precision is in the manifest)."""
    target, artifact = PLATFORM_TARGET[platform]
    source = _shipped(out_dir, report=report, target=target, platform=platform)
    model_files = _android_model(source) if platform == "android" else \
        {k: p.read_bytes() for k, p in files_under(source, prefix=artifact).items()}  # fmt: skip
    members = {**model_files, "labels.txt": _labels(report), "preprocessing.json": _preprocessing(report)}
    members[MANIFEST] = _manifest(members, platform=platform, report=report, target=target)  # hashes the others
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


def _android_model(onnx_path: Path) -> dict[str, bytes]:
    """ONNX Runtime's own converter: ``model.ort`` plus the operator config for a reduced mobile build."""
    with tempfile.TemporaryDirectory(prefix="vitopt-ort-") as tmp:
        work = Path(tmp)
        (work / "model.onnx").write_bytes(files_under(onnx_path, prefix="model.onnx")["model.onnx"].read_bytes())
        done = _convert(work)
        ort, configs = list((work / "ort").glob("*.ort")), list((work / "ort").glob("*.config"))
        if done.returncode != 0 or len(ort) != 1:
            raise RunError(f"ONNX Runtime could not convert model.onnx to .ort: {done.stderr.strip()[-300:]}")
        files = {"model.ort": ort[0].read_bytes()}
        for config in configs[:1]:  # its comment names the temporary path: replaced, for reproducible bundles
            files["required_operators.config"] = config.read_text().replace(str(work / "ort") + "/", "").encode()
        return files


def _convert(work: Path) -> subprocess.CompletedProcess:
    """The converter, with address-space randomisation off where ``setarch`` allows: ORT writes the
    kernel-type table of a .ort file in an order that follows pointer addresses, so two conversions of
    one model differed in ~1,200 bytes here; without randomisation they are byte-identical."""
    cmd = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(work / "model.onnx"),
           "--output_dir", str(work / "ort"), "--optimization_style", "Fixed"]  # fmt: skip
    setarch = shutil.which("setarch")
    if setarch:
        done = subprocess.run([setarch, machine(), "-R", *cmd], capture_output=True, text=True)
        if done.returncode == 0:
            return done
    return subprocess.run(cmd, capture_output=True, text=True)


def _labels(report: dict) -> bytes:
    spec = report["model"].get("spec") or {}
    labels = spec.get("labels") or [str(i) for i in range(report["model"]["num_classes"])]
    return ("\n".join(labels) + "\n").encode()


def _preprocessing(report: dict) -> bytes:
    m = report["model"]
    spec = m.get("spec") or {}
    _, channels, height, width = m["input_shape"]
    crop = float(spec.get("crop_pct", 1.0))
    data = {
        "input": {"name": INPUT_NAME, "shape": [1, channels, height, width], "layout": "NCHW", "dtype": "float32",
                  "colour_order": "RGB"},
        "resize": {"short_side": round(min(height, width) / crop), "center_crop": [height, width],
                   "interpolation": spec.get("interpolation", "bilinear")},
        "normalise": {"scale": 1 / 255, "mean": m["mean"], "std": m["std"], "formula": "(pixel / 255 - mean) / std"},
        "output": {"name": OUTPUT_NAME, "kind": "logits", "classes": m["num_classes"], "labels": "labels.txt"},
    }  # fmt: skip
    return (json.dumps(data, indent=2) + "\n").encode()


def _manifest(members: dict[str, bytes], *, platform: str, report: dict, target: str) -> bytes:
    row = _row(report, target) or {}
    files = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in members.items()}
    manifest: dict[str, Any] = {
        "schema": SCHEMA, "platform": platform, "model": report["model"]["name"], "source": report["model"]["source"],
        "vitopt_version": __version__, "recipe": (report.get("recipe") or {}).get("name"),
        "report_created": report.get("created"), "files": dict(sorted(files.items())),
        "measured": {"target": target, "precision": row.get("precision"), "status": row.get("status"),
                     "latency_ms": row.get("latency_ms"), "speedup": row.get("speedup"),
                     "accuracy": row.get("accuracy"), "environment": _environment(report)},
    }  # fmt: skip
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def _environment(report: dict) -> str:
    from vitopt.environment import summary_line

    env = report.get("environment")
    return summary_line(env) if env else ""
