"""The one table of output formats (and the runtimes that execute them), shared by export,
verify, bench and report.

Each row names (as import paths into ``vitopt/backends/<format>/``, so nothing heavy loads
until used) the exporter that writes the artifact, the runtime whose runner executes it,
the probe and validator where the format has them, and the extra that installs them.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from vitopt.errors import MissingBackendError, UnsupportedOptionError, one_line
from vitopt.registry import Registry


@dataclass(frozen=True)
class Runtime:
    """What executes artifacts: its runner class and the distribution whose version reports record."""

    name: str
    runner: str  # "module:Class" of a vitopt.backends.runner.Runner
    package: str

    def runner_class(self):
        return _import_attr(self.runner)


RUNTIMES: Registry[Runtime] = Registry("runtime")
RUNTIMES.add("onnxruntime", Runtime("onnxruntime", "vitopt.backends.onnx.runner:OnnxRuntimeRunner", "onnxruntime"))
RUNTIMES.add("openvino", Runtime("openvino", "vitopt.backends.openvino.runner:OpenVinoRunner", "openvino"))
RUNTIMES.add("coreml", Runtime("coreml", "vitopt.backends.coreml.runner:CoreMLRunner", "coremltools"))
RUNTIMES.add("tensorrt", Runtime("tensorrt", "vitopt.backends.tensorrt.runner:TensorRTRunner", "tensorrt"))


@dataclass(frozen=True)
class Format:
    name: str
    exporter: str  # "module:Class" of a vitopt.backends.exporter.Exporter
    runtime: str  # a RUNTIMES name: what executes the artifact
    extra: str  # pip extra that installs the backend
    precisions: tuple[str, ...]
    file_name: str  # main artifact file inside the output directory
    packages: tuple[str, ...] = ()  # import names the exporter and runner need
    # Where the native runtime is absent here: a runtime that still checks the artifact's numbers
    # (TensorRT's prepared ONNX on ONNX Runtime), and/or a static validator of the file itself
    # ("module:function(path, *, spec, precision) -> dict", raising VerificationError).
    proxy_runtime: str | None = None
    validator: str | None = None
    probe: str | None = None  # "module:function(program, *, spec) -> list[Finding]" for `vitopt check`
    # "module:Class" of a vitopt.backends.quantizer.Quantizer: the precisions the exporter does not write itself
    quantizer: str | None = None
    # Parity tolerance (max abs logit diff) per precision; the recipe's verify.max_abs_diff applies to fp32.
    tolerances: tuple[tuple[str, float], ...] = (("fp16", 5e-2),)
    default_precision: str = "fp32"

    def check_installed(self) -> None:
        """Fail before any work when a backend package is missing."""
        for package in self.packages:
            require(package, extra=self.extra, feature=f"target {self.name!r}")

    def open_runner(self, path: Path, *, threads: int | None):
        """This format's runner on ``path``, or one line saying why it cannot run here."""
        self.check_installed()
        runner_cls = self.runner_class()
        reason = runner_cls.unavailable_reason()
        if reason:
            hint = f"run it on a machine where {self.runtime} runs, or export another target"
            raise UnsupportedOptionError(f"{str(path)!r} ({self.name}) cannot run on this machine: {reason}", hint=hint)
        return runner_cls(path, threads=threads)

    def exporter_class(self):
        return _import_attr(self.exporter)

    def runner_class(self):
        return RUNTIMES.get(self.runtime).runner_class()

    def proxy_runner_class(self):
        return None if self.proxy_runtime is None else RUNTIMES.get(self.proxy_runtime).runner_class()

    def validator_function(self):
        return None if self.validator is None else _import_attr(self.validator)

    def probe_function(self):
        return None if self.probe is None else _import_attr(self.probe)

    def quantizer_class(self):
        return None if self.quantizer is None else _import_attr(self.quantizer)

    def quantizer_for(self, precision: str, *, settings):
        """The quantiser that produces ``precision`` (None when the exporter writes it itself)."""
        cls = self.quantizer_class()
        return cls(settings=settings) if cls is not None and precision in cls.schemes else None

    def tolerance(self, precision: str, *, fp32: float) -> float:
        """Max abs logit difference allowed. Quantised precisions are gated on top-1 agreement instead
        (their logits move by design); their difference is still measured and reported."""
        return dict(self.tolerances).get(precision, fp32 if precision in ("fp32", "fp16") else float("inf"))

    def artifact_name(self, precision: str) -> str:
        """The file name of this format's artifact in ``precision``: model.xml (fp32), model.int8.xml."""
        stem, dot, suffix = self.file_name.partition(".")
        return self.file_name if precision == "fp32" else f"{stem}.{precision}{dot}{suffix}"

    def matches(self, path: Path) -> bool:
        return path.name.endswith(self.suffix)

    @property
    def suffix(self) -> str:
        """Everything after the file name's stem: ".trt.onnx" for TensorRT, ".onnx" for ONNX."""
        return self.file_name[self.file_name.index(".") :]


B = "vitopt.backends"
FORMATS: Registry[Format] = Registry("target")
FORMATS.add("onnx", Format(
    name="onnx", exporter=f"{B}.onnx.exporter:OnnxExporter", runtime="onnxruntime", extra="onnx",
    precisions=("fp32", "fp16", "int8", "int8-dynamic"), file_name="model.onnx",
    packages=("onnx", "onnxruntime", "onnxslim"), quantizer=f"{B}.onnx.quantize:OnnxQuantizer",
    validator=f"{B}.onnx.validate:validate_onnx",
))  # fmt: skip
FORMATS.add("openvino", Format(
    name="openvino", exporter=f"{B}.openvino.exporter:OpenVinoExporter", runtime="openvino", extra="openvino",
    precisions=("fp32", "fp16", "int8", "int8-weights"), file_name="model.xml", packages=("openvino",),
    probe=f"{B}.openvino.probe:probe", quantizer=f"{B}.openvino.quantize:OpenVinoQuantizer",
))  # fmt: skip
FORMATS.add("tensorrt", Format(
    name="tensorrt", exporter=f"{B}.tensorrt.exporter:TensorRTExporter", runtime="tensorrt",
    extra="onnx", precisions=("fp32", "fp16", "int8"),
    # extra "onnx": what the prepared ONNX needs; tensorrt itself (extra "tensorrt") only builds and runs engines
    file_name="model.trt.onnx", packages=("onnx", "onnxruntime", "onnxslim"),
    proxy_runtime="onnxruntime", probe=f"{B}.tensorrt.probe:probe",
    # fp16/int8 only change the engine's build flags; the prepared ONNX that is checked here stays
    # fp32 (int8: QDQ-quantised), so fp16 is held to the fp32 tolerance, int8 to int8's.
    tolerances=(("int8", 1.0),),
))  # fmt: skip
FORMATS.add("coreml", Format(
    name="coreml", exporter=f"{B}.coreml.exporter:CoreMLExporter", runtime="coreml", extra="coreml",
    precisions=("fp16", "fp32", "int8-weights", "palette8", "palette6", "palette4"), file_name="model.mlpackage",
    packages=("coremltools",), default_precision="fp16", quantizer=f"{B}.coreml.quantize:CoreMLQuantizer",
    validator=f"{B}.coreml.validate:validate_mlpackage", probe=f"{B}.coreml.probe:probe",
))  # fmt: skip


def format_for_path(path: Path) -> Format | None:
    """The format whose artifact file ends like ``path``; the longest ending wins
    (model.trt.onnx -> tensorrt, model.onnx -> onnx, model.fp16.xml -> openvino)."""
    matching = [FORMATS.get(name) for name in FORMATS.names() if FORMATS.get(name).matches(path)]
    return max(matching, key=lambda fmt: len(fmt.suffix), default=None)


def _import_attr(path: str):
    module_name, attr = path.split(":")
    return getattr(importlib.import_module(module_name), attr)


def require(package: str, *, extra: str, feature: str):
    """Import an optional backend package or fail with the extra to install.

    The package's own logger is held at ERROR during the import: coremltools, for one, logs a
    dozen import-time lines off macOS (native proxies it cannot load, untested torch and
    scikit-learn versions) that say nothing about the user's model; the report records versions.
    """
    logger = logging.getLogger(package)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise MissingBackendError(
            f"{feature} needs the Python package {package!r}, which is not installed or broken",
            hint=f"pip install 'vitopt[{extra}]'",
        ) from err
    except Exception as err:  # installed but broken: a shared library fails to load (OSError), a bad build...
        raise MissingBackendError(
            f"{feature} needs {package!r}, which is installed but fails to import ({one_line(err, with_type=True)})",
            hint=f"reinstall it: pip uninstall {package.split('.')[0]} && pip install 'vitopt[{extra}]'",
        ) from err
    finally:
        logger.setLevel(level)
