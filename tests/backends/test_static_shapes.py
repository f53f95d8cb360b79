"""Static-shape artifacts for phones and fixed-shape runtimes, per target, on a tiny ViT and the Swin
reference: every input dimension fixed from the spec and (ONNX) no shape arithmetic left."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import fast_recipe_dict
from vitopt.models import load_model
from vitopt.pipeline import compress
from vitopt.recipe import parse_recipe

MODELS = ["vitopt/tiny-vit", "vitopt/swin-cifar10"]
STATIC = {"onnx": {"dynamic_batch": False}, "openvino": {"dynamic_batch": False}, "coreml": {},
          "tensorrt": {"batch": 1}}  # fmt: skip


def build(name: str, fmt: str, out: Path) -> dict:
    torch.manual_seed(0)
    targets = [{"format": fmt, "options": STATIC[fmt], **({"precision": "fp32"} if fmt == "coreml" else {})}]
    report = compress(model=load_model(name=name), recipe=parse_recipe(fast_recipe_dict(targets=targets)), out_dir=out)
    row = report["artifacts"][0]
    assert row["status"] in ("ok", "not_benchmarked"), row
    return row


def onnx_inputs_and_ops(path: Path):
    import onnx

    model = onnx.load(str(path))
    dims = [d for i in model.graph.input for d in i.type.tensor_type.shape.dim]
    return dims, collections.Counter(n.op_type for n in model.graph.node)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("fmt", ["onnx", "tensorrt"])
def test_static_onnx_graphs_have_fixed_inputs_and_no_shape_arithmetic(name, fmt, tmp_path):
    row = build(name, fmt, tmp_path / "out")
    dims, ops = onnx_inputs_and_ops(Path(row["path"]))
    assert all(d.HasField("dim_value") for d in dims) and dims[0].dim_value == 1
    assert ops["Shape"] == 0 and ops["Expand"] == 0, dict(ops)


@pytest.mark.slow
@pytest.mark.openvino
@pytest.mark.parametrize("name", MODELS)
def test_a_static_openvino_ir_runs_in_benchmark_app_without_a_shape(name, tmp_path):
    import openvino as ov

    row = build(name, "openvino", tmp_path / "out")
    assert ov.Core().read_model(row["path"]).inputs[0].get_partial_shape().is_static
    app = Path(sys.executable).with_name("benchmark_app")
    done = subprocess.run([str(app), "-m", row["path"], "-d", "CPU", "-t", "1", "-hint", "latency"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.coreml
@pytest.mark.parametrize("name", MODELS)
def test_core_ml_packages_have_a_fixed_image_input(name, tmp_path):
    import coremltools as ct

    row = build(name, "coreml", tmp_path / "out")
    spec = ct.utils.load_spec(row["path"])
    image = spec.description.input[0].type.imageType
    assert (image.height, image.width) == (load_model(name=name).spec.input_size[1:])
