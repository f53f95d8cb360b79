"""`import vitopt` (and the modules the CLI starts from) load no heavy backend."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("onnxruntime", "openvino", "coremltools", "tensorrt", "nncf", "onnx", "torch_pruning", "matplotlib")


CASES = {
    "vitopt": ("import vitopt", HEAVY),
    "pipeline": ("import vitopt.pipeline", HEAVY),
    "quant-sensitivity": ("import vitopt.sensitivity, vitopt.select", HEAVY),
    "cli": ("import vitopt.cli", HEAVY),
    "recipe": ("import vitopt.recipe", HEAVY),
    # every registered pass (prune and distill included) and the pruning package load no backend
    "passes": ("from vitopt.passes import pass_registry; pass_registry()\n"
               "import vitopt.pruning.run, vitopt.pruning.latency_measure, vitopt.pruning.report", HEAVY),
    # every row of the format table resolves its exporter, runner and quantiser classes (recipes validate
    # options against them, the pipeline asks quantisers what they need) and asks whether its runtime
    # exists here, without loading a backend
    "formats": ("from vitopt.formats import FORMATS\n"
                "for n in FORMATS.names():\n"
                "    f = FORMATS.get(n); f.exporter_class(); r = f.runner_class(); r.unavailable_reason()\n"
                "    f.proxy_runner_class(); f.validator_function(); f.probe_function(); f.quantizer_class()", HEAVY),
    "check": ("import vitopt.convertibility, vitopt.cli.check_cmds", HEAVY),
    # bench.py is numpy-only so that timing code can be reused without torch
    "bench": ("import vitopt.bench", (*HEAVY, "timm", "torch")),
    "environment": ("import vitopt.environment; vitopt.environment.describe_environment()", (*HEAVY, "timm")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_import_loads_no_backend(case):
    statement, forbidden = CASES[case]
    code = f"import sys\n{statement}\nprint(','.join(m for m in {forbidden!r} if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{statement} loaded: {result.stdout.strip()}"


def test_lazy_public_api_resolves():
    import vitopt

    assert callable(vitopt.load_model) and callable(vitopt.compress)
    with pytest.raises(AttributeError):
        vitopt.not_a_thing  # noqa: B018
