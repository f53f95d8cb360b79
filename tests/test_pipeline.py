"""compress() end to end on tiny real models: passes recorded, artifacts verified and measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import CIFAR_TEST, fast_recipe_dict, needs_shared
from vitopt.models import load_model
from vitopt.passes import PASSES, ModelPass, PassOptions, PassResult
from vitopt.pipeline import compress
from vitopt.recipe import parse_recipe
from vitopt.run_files import verify_run_folder

pytestmark = pytest.mark.onnx


class DropLastBlockOptions(PassOptions):
    keep: int = 1


class DropLastBlocks(ModelPass):
    """A real structural change (fewer blocks) so 'model changed' paths run for real."""

    name = "test-drop-blocks"
    Options = DropLastBlockOptions

    def run(self, module, *, context):
        module.blocks = nn.Sequential(*list(module.blocks)[: self.options.keep])
        return PassResult(module=module, details={"kept_blocks": self.options.keep})


@pytest.fixture
def drop_pass():
    PASSES.add(DropLastBlocks.name, DropLastBlocks)
    yield DropLastBlocks
    PASSES._entries.pop(DropLastBlocks.name)


def test_baseline_writes_artifact_and_full_report(tiny_vit, fast_recipe, tmp_path):
    out = tmp_path / "out"
    report = compress(model=tiny_vit, recipe=fast_recipe, out_dir=out)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    (row,) = report["artifacts"]
    assert row["status"] == "ok" and (out / "model.onnx").is_file()
    assert row["parity"]["max_abs_diff"] < 1e-4 and row["parity"]["top1_agreement"] == 1.0
    for key in ("p50", "p90", "p99", "mean", "std", "runs"):
        assert row["latency_ms"][key] >= 0 and row["baseline_latency_ms"][key] >= 0
    assert row["speedup"] > 0 and row["size_bytes"] == (out / "model.onnx").stat().st_size
    assert report["passes"] == [] and report["model"]["flops"] > 0
    assert not list(out.glob(".vitopt-staging-*")) and not list(tmp_path.glob(".out.next-*")), "staging cleaned up"


def test_pass_is_recorded_and_baseline_is_the_unmodified_model(tiny_vit, drop_pass, tmp_path):
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": drop_pass.name, "options": {"keep": 1}}]))
    report = compress(model=tiny_vit, recipe=recipe, out_dir=tmp_path / "out")
    (record,) = report["passes"]
    assert record["params_after"] < record["params_before"]
    assert record["flops_after"] < record["flops_before"]
    assert record["details"] == {"kept_blocks": 1}
    assert report["compressed_model"]["params"] == record["params_after"]
    assert report["baseline"]["params"] == record["params_before"]
    row = report["artifacts"][0]
    assert row["fidelity"]["n_images"] == 32  # agreement with the original model, reported
    assert len(tiny_vit.module.blocks) == 2, "the user's module must not be modified"


def test_verify_failure_is_loud_and_never_replaces_a_good_run(tiny_vit, fast_recipe, tmp_path):
    out = tmp_path / "out"
    good = compress(model=tiny_vit, recipe=fast_recipe, out_dir=out)
    model = load_model(name="tests/fixtures/user_models.py:exports_differently",
                       spec_overrides={"input_size": (3, 8, 8)})  # fmt: skip
    report = compress(model=model, recipe=fast_recipe, out_dir=out)
    (row,) = report["artifacts"]
    assert row["status"] == "verify_failed" and "rejected" in row["reason"]
    assert json.loads((out / "report.json").read_text())["created"] == good["created"]  # the good run stays
    assert verify_run_folder(out) == [] and (out / "model.onnx").is_file()
    failed = Path(report["output_folder"])
    assert failed == tmp_path / "out.failed" and (failed / "rejected" / "model.onnx").is_file()
    assert verify_run_folder(failed) == [] and "latency_ms" not in row


def test_a_failed_first_run_still_reports_into_out(fast_recipe, tmp_path):
    model = load_model(name="tests/fixtures/user_models.py:exports_differently",
                       spec_overrides={"input_size": (3, 8, 8)})  # fmt: skip
    report = compress(model=model, recipe=fast_recipe, out_dir=tmp_path / "out")
    assert report["output_folder"] == str(tmp_path / "out") and (tmp_path / "out" / "rejected" / "model.onnx").is_file()


def test_export_failure_is_reported_with_its_cause(fast_recipe, tmp_path):
    model = load_model(name="tests/fixtures/user_models.py:refuses_export",
                       spec_overrides={"input_size": (3, 8, 8)})  # fmt: skip
    report = compress(model=model, recipe=fast_recipe, out_dir=tmp_path / "out")
    (row,) = report["artifacts"]
    assert row["status"] == "export_failed" and "refuses to be exported" in row["reason"]
    assert not (tmp_path / "out" / "model.onnx").exists()


@needs_shared
def test_eval_data_adds_accuracy_to_artifact_and_baseline(fast_recipe, tmp_path):
    model = load_model(name="vitopt/vit-cifar10")
    report = compress(model=model, recipe=fast_recipe, out_dir=tmp_path / "out", eval_data=CIFAR_TEST, eval_limit=40)
    baseline, row = report["baseline"]["accuracy"], report["artifacts"][0]["accuracy"]
    assert baseline["n_images"] == row["n_images"] == 40
    assert 0.0 <= row["top1"] <= 1.0 and "top5" in row
    assert abs(row["top1"] - baseline["top1"]) <= 1 / 40  # same model on two runtimes


def test_markdown_has_one_row_per_artifact(tiny_vit, tmp_path):
    targets = [{"format": "onnx"}, {"format": "onnx", "options": {"exporter": "torchscript"}}]
    compress(model=tiny_vit, recipe=parse_recipe(fast_recipe_dict(targets=targets)), out_dir=tmp_path / "out")
    lines = (tmp_path / "out" / "report.md").read_text().splitlines()
    table_rows = [line for line in lines if line.startswith("| onnx ")]
    assert len(table_rows) == 2
    assert torch.is_tensor(next(tiny_vit.module.parameters()))
