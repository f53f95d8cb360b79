"""Operator forms for phone accelerators: written-out LayerNormalization and Gelu compute what the fused
operators compute (ONNX Runtime runs both), and the form NNAPI takes best is the one chosen."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.bundle.android import choose_form
from vitopt.bundle.variants import decompose, present
from vitopt.formats import FORMATS

pytestmark = pytest.mark.onnx


def _single_node(tmp_path, op: str, **attrs) -> tuple:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 8])
    inits, inputs = [], ["input"]
    if op == "LayerNormalization":
        rng = np.random.default_rng(0)
        inits = [onnx.numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), n) for n in ("s", "b")]
        inputs += ["s", "b"]
    node = helper.make_node(op, inputs, ["logits"], **attrs)
    graph = helper.make_graph([node], "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    path = tmp_path / "fused.onnx"
    onnx.save(model, str(path))
    return path, tmp_path / "written_out.onnx"


def _run(path, x):
    return OnnxRuntimeRunner(path, threads=1).run(x)


@pytest.mark.parametrize(("op", "attrs"), [("Gelu", {}), ("Gelu", {"approximate": "tanh"}),
                                           ("LayerNormalization", {"epsilon": 1e-6}),
                                           ("LayerNormalization", {"axis": 2})])  # fmt: skip
def test_written_out_operators_compute_the_fused_ones(tmp_path, op, attrs):
    fused, written = _single_node(tmp_path, op, **attrs)
    assert decompose(fused, written, ops=(op,)) == 1 and op not in present(written)
    x = np.linspace(-12, 12, 32, dtype=np.float32).reshape(1, 4, 8)  # tails and the region around 0
    assert np.abs(_run(fused, x) - _run(written, x)).max() < 1e-6


def test_the_form_nnapi_takes_best_is_chosen(tmp_path, tiny_vit):
    fmt = FORMATS.get("onnx")
    exporter = fmt.exporter_class()(fmt=fmt, precision="fp32", options={"dynamic_batch": False})
    model = exporter.export(tiny_vit.module, spec=tiny_vit.spec, staging=tmp_path, calibration=None).main
    images = np.random.default_rng(0).standard_normal((4, *tiny_vit.spec.input_size)).astype(np.float32)
    chosen, forms = choose_form(model, work=tmp_path, images=images)
    assert forms[0]["decomposed"] == [] and len(forms) == 4  # the graph holds both operators
    assert all(f["parity"]["max_abs_diff"] < 1e-5 for f in forms[1:])
    best = min(f["checker"]["NNAPI"]["partitions"] for f in forms)
    assert chosen["checker"]["NNAPI"]["partitions"] == best or chosen["decomposed"] == []
    assert sum(f["chosen"] for f in forms) == 1
