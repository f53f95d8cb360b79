"""Core ML packages for every family: converted by real coremltools, validated as far as Linux
allows, and run on Core ML itself where it exists (macOS)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys

import pytest
import torch

from vitopt.backends.coreml.runner import CoreMLRunner
from vitopt.backends.coreml.validate import validate_mlpackage
from vitopt.bench import BenchSettings, measure
from vitopt.convertibility import check_targets
from vitopt.data import load_batch
from vitopt.errors import ExportError, VerificationError
from vitopt.formats import FORMATS
from vitopt.verify import check_parity, torch_logits

from .families import FAMILIES, family_params, load_family

pytestmark = pytest.mark.coreml
ct = pytest.importorskip("coremltools")


def export(model, tmp_path, *, precision: str = "fp16", **options):
    fmt = FORMATS.get("coreml")
    exporter = fmt.exporter_class()(fmt=fmt, precision=precision, options=options, provenance={"vitopt.recipe": "r1"})
    return exporter.export(model.module, spec=model.spec, staging=tmp_path, calibration=None)


@family_params
def test_family_converts_and_its_package_loads_with_an_image_input(family, name, kwargs, size, tmp_path):
    model = load_family(name, kwargs, size)
    artifact = export(model, tmp_path)
    image = ct.utils.load_spec(str(artifact.main)).description.input[0].type
    assert (image.WhichOneof("Type"), image.imageType.width, image.imageType.height) == ("imageType", size, size)
    checked = validate_mlpackage(artifact.main, spec=model.spec, precision="fp16")["checked"]
    assert any("max rank" in line for line in checked) and any("fp16 weights" in line for line in checked)


def test_swin_windows_are_rewritten_to_rank_5_and_rolls_to_slices(tmp_path):
    swin = load_family(*next(row for row in FAMILIES if row[0] == "swin")[1:])
    details = export(swin, tmp_path).details
    assert details["source"] == "export"
    assert details["ranks_lowered"] > 0 and details["rolls_as_slices"] > 0 and details["aliases_dropped"] > 0


def test_labels_metadata_and_spec_travel_in_the_package(tiny_vit, tmp_path):
    package = ct.models.MLModel(str(export(tiny_vit, tmp_path).main), skip_model_load=True)
    assert package.author == "vitopt" and package.version
    metadata = package.user_defined_metadata
    assert json.loads(metadata["vitopt.spec"]) == json.loads(tiny_vit.spec.to_json())
    assert metadata["vitopt.recipe"] == "r1"
    description = package.get_spec().description
    assert description.predictedFeatureName == "classLabel"
    validated = validate_mlpackage(package.package_path, spec=tiny_vit.spec, precision="fp16")
    assert f"probabilities over {tiny_vit.spec.num_classes} labels" in " ".join(validated["checked"])


def test_logits_package_without_classifier(tiny_vit, tmp_path):
    artifact = export(tiny_vit, tmp_path, classifier=False)
    (output,) = ct.utils.load_spec(str(artifact.main)).description.output
    assert output.name == "logits" and list(output.type.multiArrayType.shape) == [1, tiny_vit.spec.num_classes]


def test_fp32_package_and_a_newer_deployment_target(tiny_vit, tmp_path):
    artifact = export(tiny_vit, tmp_path, precision="fp32", minimum_deployment_target="iOS17")
    validated = validate_mlpackage(artifact.main, spec=tiny_vit.spec, precision="fp32")
    assert validated["opset"] == "iOS17" and "fp32 weights, fp32 compute" in validated["checked"]
    with pytest.raises(VerificationError, match="fp16 package holds"):
        validate_mlpackage(artifact.main, spec=tiny_vit.spec, precision="fp16")


def test_validator_rejects_a_wrong_input_size_and_a_broken_package(tiny_vit, tmp_path):
    artifact = export(tiny_vit, tmp_path)
    other = tiny_vit.spec.with_overrides(input_size=(3, 32, 32))
    with pytest.raises(VerificationError, match="expected an 32x32 RGB image"):
        validate_mlpackage(artifact.main, spec=other, precision="fp16")
    shutil.rmtree(artifact.main / "Data" / "com.apple.CoreML" / "weights")
    with pytest.raises(VerificationError, match="does not load"):
        validate_mlpackage(artifact.main, spec=tiny_vit.spec, precision="fp16")


class _Rank6Flip(torch.nn.Module):
    """A rank-6 flip: no rule lowers it (elementwise ops, permutes, reductions... are; see rank_ops)."""

    def forward(self, x):
        y = x.reshape(x.shape[0], 2, 2, 2, 2, -1).flip(3)
        return y.reshape(x.shape[0], -1)[:, :10]


def test_a_rank_6_op_no_rule_lowers_is_a_blocker_and_fails_export(tiny_vit, tmp_path):
    model = dataclasses.replace(tiny_vit, module=_Rank6Flip())
    (finding,) = [f for f in check_targets(module=model.module, spec=model.spec, targets=["coreml"])["coreml"]
                  if f.blocking]  # fmt: skip
    assert finding.op == "tensor rank > 5" and "aten.flip" in finding.detail
    with pytest.raises(ExportError, match="above rank 5"):
        export(model, tmp_path, source="export")


class _Rank6Broadcast(torch.nn.Module):
    """A rank-6 elementwise op broadcasting a rank-6 parameter: lowered, then converted."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.rand(1, 2, 1, 2, 1, 1))

    def forward(self, x):
        y = x.reshape(x.shape[0], 2, 2, 2, 2, -1) * self.scale
        return y.reshape(x.shape[0], -1)[:, :1000]  # the tiny ViT spec's 1,000 classes


def test_a_rank_6_broadcast_is_lowered_and_the_package_validates(tiny_vit, tmp_path):
    model = dataclasses.replace(tiny_vit, module=_Rank6Broadcast())
    findings = check_targets(module=model.module, spec=model.spec, targets=["coreml"])["coreml"]
    assert not any(f.blocking for f in findings) and any(f.op == "tensor rank > 5" for f in findings)
    artifact = export(model, tmp_path, source="export")
    assert artifact.details["ranks_lowered"] > 0
    checked = validate_mlpackage(artifact.main, spec=model.spec, precision="fp16")["checked"]  # raises above rank 5
    assert any("max rank" in c for c in checked)


def test_runner_says_why_it_cannot_run_off_macos():
    reason = CoreMLRunner.unavailable_reason()
    assert (reason is None) == (sys.platform == "darwin")


@pytest.mark.macos
@pytest.mark.skipif(CoreMLRunner.unavailable_reason() is not None, reason="needs macOS, where Core ML runs")
@pytest.mark.parametrize("compute_units", ["ALL", "CPU_ONLY"])
def test_package_matches_pytorch_on_core_ml(tiny_vit, tmp_path, compute_units):
    runner = CoreMLRunner(export(tiny_vit, tmp_path).main, compute_units=compute_units)
    images = load_batch(spec=tiny_vit.spec, n=16)
    reference = torch.log_softmax(torch.from_numpy(torch_logits(tiny_vit.module, images)), dim=1).numpy()
    parity = check_parity(reference=reference, runner=runner, images=images, max_abs_diff=0.1, min_top1_agreement=0.9)
    assert parity.passed, parity
    x = images[:1].numpy()
    stats = measure(lambda: runner.run(x), settings=BenchSettings(warmup=3, min_runs=10, min_time_s=0.1))
    print(f"Core ML {compute_units}: p50 {stats.p50:.2f} ms")  # a measurement, not a goal: goals live in bench/
    assert stats.runs >= 10 and stats.p50 > 0



@pytest.mark.skipif(CoreMLRunner.unavailable_reason() is None, reason="Core ML runs here")
@pytest.mark.parametrize("command", ["eval", "bench"])
def test_eval_and_bench_of_a_package_off_macos_say_why_in_one_line(cli, tiny_vit, tmp_path, command):
    package = export(tiny_vit, tmp_path).main
    extra = ["--data", str(tmp_path)] if command == "eval" else []
    result = cli(command, package, *extra)
    assert result.exit_code == 2 and "cannot run on this machine: Core ML runs only on macOS" in result.output
