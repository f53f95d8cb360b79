"""``vitopt gate``: budgets against real compress reports of a tiny ViT, noise-aware latency verdicts,
JUnit output, malformed budgets and cross-machine refusals."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import fast_recipe_dict
from vitopt.models import load_model
from vitopt.pipeline import compress
from vitopt.recipe import parse_recipe

BENCH = {"warmup": 3, "min_runs": 40, "min_time_s": 0.3}


def _compress(out: Path, **model_kwargs) -> Path:
    torch.manual_seed(0)
    model = load_model(name="vitopt/tiny-vit", model_kwargs=model_kwargs or None)
    compress(model=model, recipe=parse_recipe(fast_recipe_dict(bench=BENCH)), out_dir=out)
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    # the "slower on purpose" model: the same ViT, 12 blocks deep instead of 2
    return {"fast": _compress(root / "fast"), "slow": _compress(root / "slow", depth=12)}


def budget(tmp_path: Path, data) -> Path:
    path = tmp_path / "budget.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_a_report_within_its_budgets_passes(cli, reports, tmp_path):
    b = budget(tmp_path, {"onnx": {"p50_ms": 500.0, "p90_ms": 800.0, "max_size_mb": 50, "min_top1_agreement": 0.99}})
    result = cli("gate", reports["fast"], "--budget", b, "--json", tmp_path / "g.json", "--junit", tmp_path / "j.xml")
    assert result.exit_code == 0, result.output
    checks = json.loads((tmp_path / "g.json").read_text())["checks"]
    assert {c["metric"] for c in checks} == {"p50_ms", "p90_ms", "max_size_mb", "min_top1_agreement"}
    assert all(c["verdict"] == "pass" for c in checks)
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "4" and suite.get("failures") == "0"


def test_a_slower_model_fails_naming_the_target_and_metric(cli, reports, tmp_path):
    b = budget(tmp_path, {"onnx": {"max_regression": 0.05}})
    result = cli("gate", reports["slow"], "--baseline", reports["fast"], "--budget", b, "--junit", tmp_path / "j.xml")
    assert result.exit_code == 1, result.output
    assert "onnx fp32" in result.output and "max_regression" in result.output and "FAIL" in result.output
    failure = ET.parse(tmp_path / "j.xml").getroot().find("testcase/failure")
    assert failure is not None and "vs baseline" in failure.get("message")


def test_an_absolute_ceiling_below_the_measured_latency_fails(cli, reports, tmp_path):
    result = cli("gate", reports["fast"], "--budget", budget(tmp_path, {"onnx/fp32": {"p50_ms": 1e-4}}))
    assert result.exit_code == 1 and "p50_ms" in result.output


def test_a_budget_for_a_target_the_report_lacks_fails(cli, reports, tmp_path):
    result = cli("gate", reports["fast"], "--budget", budget(tmp_path, {"openvino": {"p50_ms": 100.0}}))
    assert result.exit_code == 1 and "no shipped artifact for openvino" in result.output


def test_an_unchanged_model_remeasured_twenty_times_never_fails(cli, reports, tmp_path):
    b = budget(tmp_path, {"onnx": {"max_regression": 0.10}})
    verdicts = []
    for i in range(20):
        result = cli("gate", reports["fast"], "--baseline", reports["fast"], "--budget", b, "--remeasure",
                     "--min-time", "0.2", "--json", tmp_path / f"{i}.json")  # fmt: skip
        assert result.exit_code == 0, result.output
        verdicts += [c["verdict"] for c in json.loads((tmp_path / f"{i}.json").read_text())["checks"]]
    assert "fail" not in verdicts and len(verdicts) == 20


@pytest.mark.parametrize("text, expected", [
    ("onnx:\n  p50_msec: 4.0\n", "budget.yaml:2: onnx.p50_msec"),
    ("onxx:\n  p50_ms: 4.0\n", "unknown target 'onxx'"),
    ("onnx/int4:\n  p50_ms: 4.0\n", "no precision 'int4'"),
    ("onnx:\n  max_size_mb: -1\n", "greater than 0"),
    ("- onnx\n", "must map targets"),
    ("onnx: [1, 2\n", "not valid YAML"),
])  # fmt: skip
def test_malformed_budgets_are_one_line_and_exit_2(cli, reports, tmp_path, text, expected):
    result = cli("gate", reports["fast"], "--budget", budget(tmp_path, text))
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def test_a_relative_check_across_machines_is_refused_unless_remeasured(cli, reports, tmp_path):
    other = json.loads((reports["fast"] / "report.json").read_text())
    other["environment"]["cpu_model"] = "Some Other CPU"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "report.json").write_text(json.dumps(other))
    b = budget(tmp_path, {"onnx": {"max_regression": 0.5}})
    refused = cli("gate", reports["fast"], "--baseline", tmp_path / "other", "--budget", b)
    assert refused.exit_code == 2 and "different machines" in refused.output and "--remeasure" in refused.output
    remeasured = cli("gate", reports["fast"], "--baseline", tmp_path / "other", "--budget", b, "--remeasure",
                     "--min-time", "0.2")  # fmt: skip
    assert remeasured.exit_code == 0, remeasured.output


def test_budgets_in_the_recipe_are_used_without_a_budget_file(cli, tmp_path):
    torch.manual_seed(0)
    recipe = parse_recipe(fast_recipe_dict(bench=BENCH, budgets={"onnx": {"max_size_mb": 1e-6}}))
    compress(model=load_model(name="vitopt/tiny-vit"), recipe=recipe, out_dir=tmp_path / "out")
    result = cli("gate", tmp_path / "out")
    assert result.exit_code == 1 and "max_size_mb" in result.output


def test_the_example_budgets_and_workflow_are_valid():
    from vitopt.gate.budgets import load_budgets

    root = Path(__file__).resolve().parents[2] / "examples" / "ci"
    budgets = load_budgets(root / "budgets.yaml")
    assert budgets.for_row("openvino", "int8").min_speedup == 1.3 and budgets.for_row("onnx", "fp32").p50_ms == 4.0
    workflow = yaml.safe_load((root / "latency-gate.yml").read_text())
    assert any("vitopt gate" in step.get("run", "") for step in workflow["jobs"]["gate"]["steps"])
