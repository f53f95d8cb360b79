"""OpenVINO IR export on every family, run on the real OpenVINO CPU plugin."""

from __future__ import annotations

import pytest

from vitopt.backends.openvino.runner import OpenVinoRunner

from .contract import ExporterContract

pytestmark = pytest.mark.openvino


class TestOpenVino(ExporterContract):
    target = "openvino"
    runner = OpenVinoRunner

    def test_ir_is_an_xml_bin_pair_with_dynamic_batch(self, tiny_vit, tmp_path):
        artifact = self.export(tiny_vit, tmp_path)
        assert sorted(f.suffix for f in artifact.files) == [".bin", ".xml"]
        assert artifact.files[-1] == artifact.main  # published last, after its weights
        assert OpenVinoRunner(artifact.main, threads=1).input_shape() == [None, 3, 64, 64]

    def test_fp16_halves_the_weights_and_keeps_parity(self, tiny_vit, tmp_path):
        fp32 = self.export(tiny_vit, tmp_path / "a")
        fp16 = self.export(tiny_vit, tmp_path / "b", precision="fp16")
        fp32_bin, fp16_bin = (next(f for f in a.files if f.suffix == ".bin").stat().st_size for a in (fp32, fp16))
        assert fp16_bin < 0.6 * fp32_bin
        # fp16 weights may flip the top-1 of an image whose two best random-weight logits nearly tie.
        assert self.parity(tiny_vit, fp16, max_abs_diff=5e-2, min_top1=0.9).passed

    def test_onnx_route_gives_the_same_numbers(self, tiny_vit, tmp_path):
        artifact = self.export(tiny_vit, tmp_path, source="onnx")
        assert artifact.details["source"] == "onnx"
        assert self.parity(tiny_vit, artifact).passed
        assert not (tmp_path / "openvino-source.onnx").exists()
