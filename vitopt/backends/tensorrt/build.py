"""Build a TensorRT engine from the prepared ONNX with the official ``tensorrt`` Python API.

Runs only where TensorRT and an NVIDIA GPU exist (the manifest's ``python_call``); on
these CPU-only machines it is imported by nothing but the exporter's guarded build step.
"""

from __future__ import annotations

from pathlib import Path

from vitopt.errors import ExportError
from vitopt.formats import require


def build_engine(
    *, onnx_path: str, engine_path: str, precision: str, shapes: dict, workspace_bytes: int, timing_cache: str
) -> None:
    trt = require("tensorrt", extra="tensorrt", feature="building TensorRT engines")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, precision))
    _parse(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    _set_precision(trt, config, precision)
    _add_profile(builder, config, network, shapes)
    cache_path = Path(engine_path).parent / timing_cache
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT returned no engine (see its log above for the failing layer)")
    Path(engine_path).write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))


def _network_flags(trt, precision: str) -> int:
    # TensorRT 10 networks are always explicit-batch; where the weakly-typed precision flags
    # are gone (TensorRT 11), the network must be strongly typed and follow the ONNX's types.
    if not hasattr(trt.BuilderFlag, "FP16"):
        if precision == "fp16":
            raise ExportError("this TensorRT builds strongly typed networks only: export an fp16 ONNX or use fp32")
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _parse(trt, network, logger, onnx_path: str) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError("TensorRT's ONNX parser rejected the model: " + "; ".join(errors))


def _set_precision(trt, config, precision: str) -> None:
    if not hasattr(trt.BuilderFlag, "FP16"):
        return  # strongly typed: the QDQ nodes and tensor types decide
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32, where QDQ is absent
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)


def _add_profile(builder, config, network, shapes: dict) -> None:
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(profile)
