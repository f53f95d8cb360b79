"""ONNX Runtime on the CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitopt.backends.metadata import spec_from_metadata
from vitopt.backends.runner import Runner
from vitopt.errors import InputError, one_line
from vitopt.formats import require


class OnnxRuntimeRunner(Runner):
    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        ort = require("onnxruntime", extra="onnx", feature="running ONNX models")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Idle worker threads otherwise spin for a while after each run, stealing the cores from
        # whatever runs next: in an interleaved A/B measurement that slows the other side
        # (measured: a 32x32 ViT in PyTorch went from ~9 ms to ~450 ms next to a spinning session).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise InputError(f"onnxruntime cannot load {str(path)!r}: {one_line(err)}") from err
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def spec(self):
        return spec_from_metadata(self.session.get_modelmeta().custom_metadata_map)

    def input_shape(self) -> list:
        return list(self.session.get_inputs()[0].shape)
