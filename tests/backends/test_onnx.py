"""ONNX export on real timm models, verified on real ONNX Runtime with real images."""

from __future__ import annotations

import onnx
import pytest
import torch

from vitopt.backends.exporter import ExportedArtifact
from vitopt.backends.onnx.exporter import OnnxExporter
from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.data import load_batch
from vitopt.errors import ExportError
from vitopt.formats import FORMATS
from vitopt.models import load_model
from vitopt.publish import publish, staging_dir
from vitopt.verify import check_parity, torch_logits

pytestmark = pytest.mark.onnx
FIXTURES = "tests/fixtures/user_models.py"


def _export(model, tmp_path, **options) -> ExportedArtifact:
    exporter = OnnxExporter(fmt=FORMATS.get("onnx"), precision="fp32", options=options)
    images = load_batch(spec=model.spec, n=8)
    return exporter.export(model.module, spec=model.spec, staging=tmp_path, calibration=images)


@pytest.mark.parametrize("name", ["vitopt/tiny-vit", "vitopt/tiny-deit", "test_vit"])
@pytest.mark.parametrize("kind", ["dynamo", "torchscript"])
def test_export_matches_pytorch_on_real_images(name, kind, tmp_path):
    model = load_model(name=name)
    artifact = _export(model, tmp_path, exporter=kind)
    images = load_batch(spec=model.spec, n=32)
    parity = check_parity(
        reference=torch_logits(model.module, images), runner=OnnxRuntimeRunner(artifact.main, threads=1),
        images=images, max_abs_diff=1e-4, min_top1_agreement=1.0,
    )  # fmt: skip
    assert parity.passed, parity
    assert parity.n_images == 32
    assert artifact.details["exporter"] == kind


def test_export_is_simplified_with_opset_and_dynamic_batch(tmp_path):
    artifact = _export(load_model(name="vitopt/tiny-vit"), tmp_path, exporter="torchscript")
    proto = onnx.load(str(artifact.main))
    assert artifact.details["nodes"] < artifact.details["nodes_before_simplify"]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    runner = OnnxRuntimeRunner(artifact.main, threads=1)
    assert runner.run(torch.zeros(3, 3, 64, 64).numpy()).shape == (3, 1000)


def test_export_failure_names_each_exporter_tried(tmp_path):
    model = load_model(name=f"{FIXTURES}:refuses_export", spec_overrides={"input_size": (3, 8, 8)})
    with pytest.raises(ExportError, match=r"dynamo: .*torchscript: .*refuses to be exported"):
        _export(model, tmp_path)


def test_publish_replaces_atomically_and_staging_is_cleaned(tmp_path):
    out = tmp_path / "out"
    with staging_dir(out) as staging:
        (staging / "model.onnx").write_bytes(b"new")
        publish(ExportedArtifact(files=[staging / "model.onnx"], main=staging / "model.onnx"), out_dir=out)
    assert (out / "model.onnx").read_bytes() == b"new"
    assert [p.name for p in out.iterdir()] == ["model.onnx"]


def test_unknown_exporter_option_is_rejected():
    with pytest.raises(ValueError, match="opset"):
        OnnxExporter(fmt=FORMATS.get("onnx"), precision="fp32", options={"opset": 11})
