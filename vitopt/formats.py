"""The one table of output formats, shared by export, verify, bench and report.

Each row names (as import paths, so nothing heavy loads until used) the exporter that
writes the artifact, the runner that executes it, and the extra that installs both.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from vitopt.errors import MissingBackendError
from vitopt.registry import Registry


@dataclass(frozen=True)
class Format:
    name: str
    exporter: str  # "module:Class" of an exporters.base.Exporter
    runtime: str  # what executes the artifact, as named in reports
    runner: str | None  # "module:Class" of a runtimes.base.Runner, None where none exists here
    extra: str  # pip extra that installs the backend
    precisions: tuple[str, ...]
    file_name: str  # main artifact file inside the output directory
    packages: tuple[str, ...] = ()  # import names the exporter and runner need

    def check_installed(self) -> None:
        """Fail before any work when a backend package is missing."""
        for package in self.packages:
            require(package, extra=self.extra, feature=f"target {self.name!r}")

    def exporter_class(self):
        return _import_attr(self.exporter)

    def runner_class(self):
        return None if self.runner is None else _import_attr(self.runner)


FORMATS: Registry[Format] = Registry("target")
FORMATS.add("onnx", Format(
    name="onnx", exporter="vitopt.exporters.onnx:OnnxExporter", runtime="onnxruntime",
    runner="vitopt.runtimes.onnxruntime:OnnxRuntimeRunner", extra="onnx",
    precisions=("fp32",), file_name="model.onnx", packages=("onnx", "onnxruntime", "onnxslim"),
))  # fmt: skip


def format_for_path(path: Path) -> Format | None:
    """The format whose artifact file ends like ``path`` (model.onnx -> onnx)."""
    for name in FORMATS.names():
        fmt = FORMATS.get(name)
        if path.suffix == Path(fmt.file_name).suffix:
            return fmt
    return None


def _import_attr(path: str):
    module_name, attr = path.split(":")
    return getattr(importlib.import_module(module_name), attr)


def require(package: str, *, extra: str, feature: str):
    """Import an optional backend package or fail with the extra to install."""
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise MissingBackendError(
            f"{feature} needs the Python package {package!r}, which is not installed or broken",
            hint=f"pip install 'vitopt[{extra}]'",
        ) from err
