"""``vitopt check``: per-target findings from one trace, exit code 1 when a target rejects the model."""

from __future__ import annotations

import json

import pytest

from tests.backends.families import FAMILIES, load_family
from vitopt.convertibility import check_targets

pytestmark = pytest.mark.openvino
SPECTRAL = "tests/fixtures/user_models.py:spectral_head"


def test_check_lists_blockers_and_exits_1(cli, tmp_path):
    result = cli("check", SPECTRAL, "--input-size", "3,8,8", "-t", "tensorrt", "-t", "openvino",
                 "--json", tmp_path / "c.json")  # fmt: skip
    assert result.exit_code == 1
    findings = json.loads((tmp_path / "c.json").read_text())
    (blocker,) = [f for f in findings["tensorrt"] if f["blocking"]]
    assert blocker["op"] == "aten._fft_r2c" and "DFT" in blocker["detail"]
    assert "not convertible for tensorrt" in result.output


def test_check_passes_a_model_every_probed_target_accepts(cli):
    result = cli("check", "vitopt/tiny-vit", "-t", "openvino", "-t", "tensorrt")
    assert result.exit_code == 0, result.output
    assert "rewritten" in result.output  # TensorRT's static shapes are a rewrite, not a blocker


def test_unknown_target_is_bad_input(cli):
    result = cli("check", "vitopt/tiny-vit", "-t", "openvin")
    assert result.exit_code == 2 and "did you mean 'openvino'" in result.output


def test_openvino_probe_reads_openvino_own_op_table():
    swin = load_family(*next(row for row in FAMILIES if row[0] == "swin")[1:])
    assert check_targets(module=swin.module, spec=swin.spec, targets=["openvino"]) == {"openvino": []}


@pytest.mark.slow
def test_check_mobile_runs_onnx_runtimes_own_checker_on_a_static_export(cli, tmp_path):
    result = cli("check", "vitopt/tiny-vit", "--target", "onnx", "--mobile", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    mobile = json.loads((tmp_path / "c.json").read_text())["mobile"]
    assert set(mobile) >= {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram", "recommended_android"}
    assert all(mobile[ep]["nodes"] > 0 and mobile[ep]["verdict"] in ("YES", "MAYBE", "NO")
               for ep in ("NNAPI", "CoreML MLProgram"))  # fmt: skip
    assert "mobile checker" in result.output
