"""compress() to every target at once: one honest row per target, and a fast failure before any work."""

from __future__ import annotations

import pytest

from tests.backends.families import FAMILIES, load_family
from tests.conftest import fast_recipe_dict
from vitopt.backends.coreml.runner import CoreMLRunner
from vitopt.backends.tensorrt.runner import TensorRTRunner
from vitopt.errors import UnsupportedOptionError
from vitopt.models import load_model
from vitopt.pipeline import compress
from vitopt.recipe import parse_recipe
from vitopt.report_view import render_text

pytestmark = [pytest.mark.onnx, pytest.mark.openvino, pytest.mark.coreml]
SWIN = next(row for row in FAMILIES if row[0] == "swin")


def _recipe(*formats: str):
    return parse_recipe(fast_recipe_dict(targets=[{"format": f} for f in formats]))


@pytest.fixture(scope="module")
def swin_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("swin")
    model = load_family(*SWIN[1:])
    return compress(model=model, recipe=_recipe("onnx", "openvino", "tensorrt", "coreml"), out_dir=out), out


def test_every_target_gets_one_row_with_an_honest_status(swin_report):
    report, out = swin_report
    rows = {row["target"]: row for row in report["artifacts"]}
    assert list(rows) == ["onnx", "openvino", "tensorrt", "coreml"]
    for name in ("onnx", "openvino"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["parity"]["max_abs_diff"] < 1e-3 and rows[name]["speedup"] > 0
    trt = rows["tensorrt"]
    assert trt["status"] == "not_benchmarked"
    assert trt["reason"].startswith(TensorRTRunner.unavailable_reason())
    assert "parity checked on onnxruntime" in trt["reason"]
    assert trt["parity"]["runtime"] == "onnxruntime" and trt["parity"]["passed"]
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "model.xml", "model.bin", "model.trt.onnx",
                                               "model.trt.manifest.json", "model.fp16.mlpackage", "report.json",
                                               "report.md"}  # fmt: skip


@pytest.mark.skipif(CoreMLRunner.unavailable_reason() is None, reason="Core ML runs here: the package is measured")
def test_core_ml_row_says_why_it_was_not_run_and_what_was_checked(swin_report):
    report, _ = swin_report
    (row,) = [row for row in report["artifacts"] if row["target"] == "coreml"]
    assert row["status"] == "not_benchmarked" and row["precision"] == "fp16"
    assert row["reason"].startswith(CoreMLRunner.unavailable_reason()) and "file validated (ML program" in row["reason"]
    assert row["export"]["ranks_lowered"] > 0 and "max rank 5" in " ".join(row["validation"]["checked"])


def test_report_lists_what_each_target_needed_rewritten(swin_report):
    report, out = swin_report
    assert set(report["convertibility"]) == {"onnx", "openvino", "tensorrt", "coreml"}
    coreml_ops = {f["op"] for f in report["convertibility"]["coreml"]}
    assert coreml_ops == {"aten.alias", "aten.roll", "tensor rank > 5"}
    assert any(f["op"] == "dynamic batch" for f in report["convertibility"]["tensorrt"])
    assert "| tensorrt | fp32 | not_benchmarked |" in (out / "report.md").read_text()


def test_terminal_report_fits_80_columns_with_every_status_whole(swin_report):
    report, _ = swin_report
    text = render_text(report)
    assert all(len(line) <= 80 for line in text.splitlines()), max(text.splitlines(), key=len)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("target "))
    table = [line.split()[:3] for line in lines[header + 1 : header + 1 + len(report["artifacts"])]]
    assert table == [[a["target"], a["precision"], a["status"]] for a in report["artifacts"]]
    assert "\u2026" not in text and "tensorrt fp32: not_benchmarked: " + report["artifacts"][2]["reason"][:20] in text


def test_a_target_that_rejects_the_model_fails_before_any_work(tmp_path):
    model = load_model(name="tests/fixtures/user_models.py:spectral_head", spec_overrides={"input_size": (3, 8, 8)})
    with pytest.raises(UnsupportedOptionError, match=r"tensorrt: aten\._fft_r2c .*DFT"):
        compress(model=model, recipe=_recipe("onnx", "tensorrt"), out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_format_default_precision_applies_when_omitted():
    assert parse_recipe(fast_recipe_dict(targets=[{"format": "coreml"}])).targets[0].precision == "fp16"
    assert parse_recipe(fast_recipe_dict(targets=[{"format": "openvino"}])).targets[0].precision == "fp32"
