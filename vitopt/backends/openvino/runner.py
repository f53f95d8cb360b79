"""OpenVINO on its CPU plugin, in f32, on a fixed number of threads."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from vitopt.backends.metadata import SPEC_KEY, key_path, spec_from_metadata
from vitopt.backends.runner import Runner
from vitopt.errors import InputError, one_line
from vitopt.formats import require


@functools.cache
def shared_core():
    """One ``ov.Core`` per process: several live Cores in one process have crashed (SIGSEGV)
    when their compiled models were used side by side, as an interleaved A/B benchmark does."""
    ov = require("openvino", extra="openvino", feature="running OpenVINO models")
    return ov.Core()


class OpenVinoRunner(Runner):
    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        core = shared_core()
        try:
            self.model = core.read_model(str(path))
        except Exception as err:  # openvino raises RuntimeError subclasses with long messages
            raise InputError(f"OpenVINO cannot read {str(path)!r}: {one_line(err)}") from err
        self.compiled = core.compile_model(self.model, "CPU", _cpu_config(threads))
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(batch, np.float32)})
        return self.request.get_output_tensor(0).data.copy()

    def input_shape(self) -> list:
        return [d.get_length() if d.is_static else None for d in self.model.inputs[0].get_partial_shape()]

    def spec(self):
        path = key_path(SPEC_KEY)
        stored = {SPEC_KEY: self.model.get_rt_info(path).astype(str)} if self.model.has_rt_info(path) else {}
        return spec_from_metadata(stored)


def _cpu_config(threads: int | None) -> dict:
    # On CPUs with AMX or AVX512-BF16 OpenVINO's default inference precision is bf16: an fp32
    # model would silently run in bf16 and fail parity. Pin f32; fp16 IR only compresses storage.
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config
