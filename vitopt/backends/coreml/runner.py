"""A Core ML package through coremltools' own runtime binding, on macOS only.

The package takes images, so a batch of normalised tensors (what every vitopt runner is
given) is turned back into 8-bit RGB pixels first; that rounding is part of what an app
feeding camera frames gets too. A classifier package returns probabilities: this runner
returns their logarithm (``outputs_log_probabilities``), which parity compares with the
log-softmax of PyTorch's logits.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Literal

import numpy as np

from vitopt.backends.metadata import (
    COREML_INPUT,
    COREML_PROBABILITIES,
    OUTPUT_NAME,
    SPEC_KEY,
    class_labels,
    spec_from_metadata,
)
from vitopt.backends.runner import Runner
from vitopt.errors import InputError, one_line
from vitopt.formats import require

ComputeUnits = Literal["ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"]


class CoreMLRunner(Runner):
    @classmethod
    def unavailable_reason(cls) -> str | None:
        if sys.platform != "darwin":
            return f"Core ML runs only on macOS and iOS (this machine runs {sys.platform})"
        if importlib.util.find_spec("coremltools") is None:
            return "coremltools is not installed: pip install 'vitopt[coreml]'"
        return None

    def __init__(self, path: Path, *, threads: int | None = None, compute_units: ComputeUnits = "ALL") -> None:
        super().__init__(path, threads=threads)  # Core ML schedules its own threads
        ct = require("coremltools", extra="coreml", feature="running Core ML packages")
        try:
            self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit[compute_units])
        except Exception as err:  # coremltools raises plain Exceptions from the Core ML framework
            raise InputError(f"Core ML cannot load {str(path)!r}: {one_line(err)}") from err
        self.compute_units = compute_units
        self._spec = self.spec()
        if self._spec is None:
            raise InputError(f"{str(path)!r} was not exported by vitopt (no {SPEC_KEY} metadata)",
                             hint="vitopt runs packages it exported; it needs their input normalisation")  # fmt: skip
        self.outputs_log_probabilities = bool(self.model.get_spec().description.predictedFeatureName)

    def run(self, batch: np.ndarray) -> np.ndarray:
        results = self.model.predict([{COREML_INPUT: image} for image in self._images(batch)])
        if not self.outputs_log_probabilities:
            return np.concatenate([np.asarray(r[OUTPUT_NAME], np.float32) for r in results])
        labels = class_labels(self._spec)
        probabilities = np.array([[r[COREML_PROBABILITIES][label] for label in labels] for r in results])
        return np.log(np.maximum(probabilities, 1e-30)).astype(np.float32)

    def _images(self, batch: np.ndarray) -> list:
        from PIL import Image

        mean, std = (np.asarray(v, np.float32).reshape(1, -1, 1, 1) for v in (self._spec.mean, self._spec.std))
        pixels = np.clip(np.rint((batch * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        mode = "RGB" if pixels.shape[-1] == 3 else "L"
        return [Image.fromarray(p if mode == "RGB" else p[..., 0], mode=mode) for p in pixels]

    def input_shape(self) -> list:
        return [None, *self._spec.input_size]  # one image per prediction, but predict() takes a list

    def spec(self):
        return spec_from_metadata(self.model.user_defined_metadata)
