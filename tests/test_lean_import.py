"""`import vitopt` (and the modules the CLI starts from) load no heavy backend."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("onnxruntime", "openvino", "coremltools", "tensorrt", "nncf", "onnx", "torch_pruning")


@pytest.mark.parametrize("module", ["vitopt", "vitopt.pipeline", "vitopt.cli", "vitopt.recipe"])
def test_import_loads_no_backend(module):
    code = (
        f"import sys, {module}\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"import {module} loaded: {result.stdout.strip()}"


def test_lazy_public_api_resolves():
    import vitopt

    assert callable(vitopt.load_model) and callable(vitopt.compress)
    with pytest.raises(AttributeError):
        vitopt.not_a_thing  # noqa: B018
