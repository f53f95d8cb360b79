"""TensorRT: the prepared ONNX (checked on ONNX Runtime here), its manifest, and an engine on a GPU."""

from __future__ import annotations

import json
import shlex

import onnx
import pytest

from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.backends.tensorrt.runner import TensorRTRunner
from vitopt.backends.tensorrt.support import check_operators
from vitopt.errors import ExportError

from .contract import ExporterContract

pytestmark = pytest.mark.onnx


class TestTensorRTPreparedOnnx(ExporterContract):
    target = "tensorrt"
    runner = OnnxRuntimeRunner  # no TensorRT here: the prepared ONNX is what can be checked

    def test_static_batch_and_manifest_with_the_exact_build_command(self, tiny_vit, tmp_path):
        artifact = self.export(tiny_vit, tmp_path, precision="fp16")
        assert OnnxRuntimeRunner(artifact.main, threads=1).input_shape() == [1, 3, 64, 64]
        manifest = json.loads(next(f for f in artifact.files if f.suffix == ".json").read_text())
        argv = shlex.split(manifest["trtexec"])
        assert argv[:2] == ["trtexec", f"--onnx={artifact.main.name}"] and "--fp16" in argv
        assert "--optShapes=input:1x3x64x64" in argv
        assert manifest["python_call"]["kwargs"]["precision"] == "fp16"

    def test_profile_gives_a_dynamic_batch_within_min_opt_max(self, tiny_vit, tmp_path):
        artifact = self.export(tiny_vit, tmp_path, batch=4, max_batch=8)
        assert artifact.details["shapes"] == {"min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}
        assert OnnxRuntimeRunner(artifact.main, threads=1).input_shape()[0] not in (1, 4, 8)

    def test_int8_inserts_symmetric_qdq_calibrated_on_real_images(self, tiny_vit, tmp_path):
        artifact = self.export(tiny_vit, tmp_path, precision="int8")
        graph = onnx.load(str(artifact.main)).graph
        assert artifact.details["ops"]["QuantizeLinear"] > 0
        zero_points = [i for i in graph.initializer if i.name.endswith("zero_point")]
        assert zero_points and all(not any(onnx.numpy_helper.to_array(z).ravel()) for z in zero_points)
        assert "--int8" in json.loads(artifact.files[1].read_text())["trtexec"]

    def test_operators_the_parser_lacks_are_rejected_by_name(self):
        node = onnx.helper.make_node("Unique", ["x"], ["y"])
        graph = onnx.helper.make_graph([node], "g", [], [])
        with pytest.raises(ExportError, match="Unique"):
            check_operators(onnx.helper.make_model(graph))

    def test_engine_is_not_built_here_and_says_why(self, tiny_vit, tmp_path):
        reason = TensorRTRunner.unavailable_reason()
        assert reason is not None  # these machines have neither TensorRT nor a GPU
        assert self.export(tiny_vit, tmp_path).details["engine"] == f"not built: {reason}"


@pytest.mark.gpu
@pytest.mark.skipif(TensorRTRunner.unavailable_reason() is not None, reason="needs TensorRT and an NVIDIA GPU")
def test_engine_builds_and_matches_pytorch(tiny_vit, tmp_path):
    contract = TestTensorRTPreparedOnnx()
    artifact = contract.export(tiny_vit, tmp_path)
    assert artifact.details["engine"] == "built"
    contract.runner = TensorRTRunner
    assert contract.parity(tiny_vit, artifact).passed
