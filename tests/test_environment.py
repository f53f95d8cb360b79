"""Tests for vitopt.environment: report shape, real versions, and no heavy imports."""

from __future__ import annotations

import json

import torch

from vitopt.environment import default_threads, describe_environment

EXPECTED_KEYS = {
    "cpu_model",
    "cpu_count_logical",
    "cpu_count_physical",
    "isa",
    "threads",
    "os",
    "python",
    "packages",
    "gpu",
    "load_average",
}
EXPECTED_PACKAGES = {
    "vitopt",
    "torch",
    "torchvision",
    "timm",
    "onnx",
    "onnxruntime",
    "onnxslim",
    "openvino",
    "nncf",
    "coremltools",
    "torch_pruning",
    "tensorrt",
    "numpy",
}


def test_report_has_every_key_and_is_json_ready():
    env = describe_environment()
    assert set(env) == EXPECTED_KEYS
    assert set(env["packages"]) == EXPECTED_PACKAGES
    assert set(env["gpu"]) >= {"cuda_available", "device_name"}
    json.dumps(env)


def test_isa_values_are_bools():
    isa = describe_environment()["isa"]
    assert set(isa) == {
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "amx",
        "avx512_bf16",
        "amx_bf16",
        "f16c",
        "fma",
        "sse4_2",
    }
    assert all(isinstance(v, bool) for v in isa.values())


def test_packages_report_torch_real_version():
    # Wheel metadata drops the local build tag that torch.__version__ carries ("+cu130").
    reported = describe_environment()["packages"]["torch"]
    assert reported == torch.__version__.split("+")[0]


def test_gpu_reports_torch_build_and_matches_torch():
    gpu = describe_environment()["gpu"]
    assert gpu["cuda_available"] == torch.cuda.is_available()
    assert gpu["torch_cuda_build"] == torch.version.cuda


def test_threads_default_to_torch_and_respect_argument():
    assert describe_environment()["threads"] == torch.get_num_threads()
    assert describe_environment(threads=3)["threads"] == 3


def test_core_counts_are_consistent():
    env = describe_environment()
    assert 1 <= env["cpu_count_physical"] <= env["cpu_count_logical"]
    assert default_threads() == env["cpu_count_physical"]


def test_missing_cpuinfo_degrades_without_error(tmp_path, monkeypatch):
    from vitopt import environment

    monkeypatch.setattr(environment, "_CPUINFO", tmp_path / "absent")
    env = environment.describe_environment()
    assert env["isa"] and not any(env["isa"].values())
    assert env["cpu_count_physical"] == env["cpu_count_logical"]
    assert default_threads() >= 1
