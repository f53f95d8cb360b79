"""Where a number was measured: CPU, ISA, threads, OS and package versions.

A latency is meaningless without its machine: AVX-512 VNNI or AMX can make int8 several
times faster, and thread count changes everything. Every benchmark result carries
:func:`describe_environment` so numbers from different machines are never compared blind.

This module must stay cheap and side-effect free: package versions come from
``importlib.metadata`` so onnxruntime, openvino, coremltools, tensorrt and timm are never
imported just to be described. Only torch is imported (for its thread count and GPU check).
Without ``/proc/cpuinfo`` (macOS, Windows) CPU details degrade to None/False.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

_CPUINFO = Path("/proc/cpuinfo")

# Key in the report -> flag name in /proc/cpuinfo.
_ISA_FLAGS = {
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "amx": "amx_tile",
    "avx512_bf16": "avx512_bf16",
    "amx_bf16": "amx_bf16",
    "f16c": "f16c",
    "fma": "fma",
    "sse4_2": "sse4_2",
}

# Key in the report -> distribution name on PyPI: vitopt's own dependencies and what its passes use;
# the backends' packages come from the format table (see _packages).
_CORE_PACKAGES = {
    "vitopt": "vitopt",
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "numpy": "numpy",
    "nncf": "nncf",
    "torch_pruning": "torch-pruning",
}


def describe_environment(*, threads: int | None = None) -> dict[str, Any]:
    """A JSON-ready description of this machine; ``threads`` defaults to torch's setting."""
    processors = _read_cpuinfo()
    return {
        "cpu_model": _cpu_model(processors),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": _physical_cores(processors),
        "isa": _isa_flags(processors),
        "threads": threads if threads is not None else _torch_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "gpu": _gpu(),
        "load_average": _load_average(),
    }


def runtime_packages() -> tuple[str, ...]:
    """Packages whose versions decide a latency: torch and every runtime in the format table."""
    from vitopt.formats import RUNTIMES

    return ("torch", *(RUNTIMES.get(name).package for name in RUNTIMES.names()))


def summary_line(env: dict[str, Any], *, load: bool = False) -> str:
    """One line for a report or a benchmark's header: CPU, threads, ISA, runtime versions (and the load
    average, which a benchmark prints because a busy machine inflates what it measures)."""
    isa = ", ".join(k for k, v in env.get("isa", {}).items() if v) or "unknown"
    load = f"; load {env['load_average']}" if load and env.get("load_average") else ""
    versions = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v and k in runtime_packages())
    return f"{env.get('cpu_model')} ({env.get('threads')} threads; ISA: {isa}{load}); {versions}."


def isa_summary() -> str:
    """The instruction sets that decide whether int8 pays off on this CPU, e.g. "avx2, avx512_vnni"."""
    processors = _read_cpuinfo()
    isa = _isa_flags(processors)
    flags = [k for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx", "avx512_bf16") if isa.get(k)]
    return f"{_cpu_model(processors) or 'this CPU'} ({', '.join(flags) or 'no AVX2'})"


def default_threads() -> int:
    """Physical core count: the default thread count for CPU latency benchmarks.

    Hyper-threads share one core's execution units, so running more threads than physical
    cores usually adds contention and noise rather than speed for dense GEMM-heavy models.
    """
    return _physical_cores(_read_cpuinfo()) or 1


def package_versions() -> dict[str, str | None]:
    """Installed version of each relevant package, None when absent; imports none of them."""
    return {key: _installed_version(dist) for key, dist in _packages().items()}


def _packages() -> dict[str, str]:
    from vitopt.formats import FORMATS, RUNTIMES

    backends = [p for name in FORMATS.names() for p in FORMATS.get(name).packages]
    backends += [RUNTIMES.get(name).package for name in RUNTIMES.names()]
    return _CORE_PACKAGES | {package: package for package in dict.fromkeys(backends)}


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        if dist == "vitopt":
            # A source checkout run without `pip install` has no metadata; vitopt itself is
            # already imported (we are in it), so its __version__ costs nothing.
            from vitopt import __version__

            return __version__
        return None


def _read_cpuinfo() -> list[dict[str, str]]:
    """One dict per processor block of /proc/cpuinfo; empty where there is none."""
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    processors = []
    for block in text.split("\n\n"):
        fields = dict(_split_field(line) for line in block.splitlines() if ":" in line)
        if fields:
            processors.append(fields)
    return processors


def _split_field(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip(), value.strip()


def _cpu_model(processors: list[dict[str, str]]) -> str | None:
    for fields in processors:
        if fields.get("model name"):
            return fields["model name"]
    # platform.processor() is often '' (Linux) or just 'arm'/'i386' (macOS); '' becomes None.
    return platform.processor() or None


def _physical_cores(processors: list[dict[str, str]]) -> int | None:
    cores = {
        (fields["physical id"], fields["core id"])
        for fields in processors
        if "physical id" in fields and "core id" in fields
    }
    # VMs and ARM kernels often omit topology fields: fall back to the logical count.
    return len(cores) or os.cpu_count()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16).

    Without it PyTorch emulates bf16 autocast: measured here (AMD EPYC, AVX2 only) training the
    CIFAR ViT ran at ~4 img/s in bf16 against ~57 img/s in fp32.
    """
    isa = _isa_flags(_read_cpuinfo())
    return isa["avx512_bf16"] or isa["amx_bf16"]


def _isa_flags(processors: list[dict[str, str]]) -> dict[str, bool]:
    # All cores of one machine report the same flags, so the first block suffices.
    flags = set(processors[0].get("flags", "").split()) if processors else set()
    return {key: flag in flags for key, flag in _ISA_FLAGS.items()}


def _load_average() -> list[float] | None:
    # A busy machine (load above the core count) distorts latencies; record it to judge them.
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except (AttributeError, OSError):  # Windows has no getloadavg
        return None


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def _gpu() -> dict[str, Any]:
    """CUDA availability and device name; a cheap check that never initialises other backends.

    ``torch_cuda_build`` is the CUDA version torch was built for (None for CPU-only builds):
    package metadata drops the ``+cu130`` tag, and a CUDA build on a GPU-less box is common.
    """
    try:
        import torch
    except ImportError:
        return {
            "cuda_available": False,
            "device_name": None,
            "device_count": 0,
            "torch_cuda_build": None,
        }
    available = torch.cuda.is_available()
    return {
        "cuda_available": available,
        "device_name": torch.cuda.get_device_name(0) if available else None,
        "device_count": torch.cuda.device_count() if available else 0,
        "torch_cuda_build": torch.version.cuda,
    }
