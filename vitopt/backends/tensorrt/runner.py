"""A TensorRT engine on an NVIDIA GPU, through the official ``tensorrt`` Python API.

Device buffers are torch CUDA tensors (vitopt already depends on torch), so no extra
CUDA binding is needed. Where TensorRT or a GPU is missing, ``unavailable_reason`` says
so and the pipeline checks the prepared ONNX on ONNX Runtime instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vitopt.backends.runner import Runner
from vitopt.backends.tensorrt.support import unavailable_reason
from vitopt.errors import InputError, RunError
from vitopt.formats import require


class TensorRTRunner(Runner):
    @classmethod
    def unavailable_reason(cls) -> str | None:
        return unavailable_reason()

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        super().__init__(path, threads=threads)
        trt = require("tensorrt", extra="tensorrt", feature="running TensorRT engines")
        engine_path = self.path.with_name(self.path.name.removesuffix(".onnx") + ".plan")
        if not engine_path.is_file():
            hint = "build it with the manifest's trtexec line"
            raise InputError(f"no TensorRT engine next to {str(path)!r}", hint=hint)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]

    def run(self, batch: np.ndarray) -> np.ndarray:
        inputs = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).cuda()
        self.context.set_input_shape(self.names[0], tuple(inputs.shape))
        outputs = torch.empty(tuple(self.context.get_tensor_shape(self.names[1])), device="cuda")
        self.context.set_tensor_address(self.names[0], inputs.data_ptr())
        self.context.set_tensor_address(self.names[1], outputs.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RunError(f"TensorRT failed to execute {str(self.path)!r} (execute_async_v3 returned False)")
        stream.synchronize()
        return outputs.cpu().numpy()

    def input_shape(self) -> list:
        return list(self.engine.get_tensor_shape(self.names[0]))
