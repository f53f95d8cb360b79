"""The `vitopt` command: happy paths, and one clear line with exit code 2 for each bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import needs_shared

pytestmark = pytest.mark.onnx


def test_compress_writes_artifact_and_reports(cli, fast_recipe_file, tmp_path):
    args = ["--target", "onnx", "--out", tmp_path / "out", "--recipe", fast_recipe_file]
    result = cli("compress", "vitopt/tiny-vit", *args)
    assert result.exit_code == 0, result.output
    assert {"model.onnx", "report.json", "report.md"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert "RANDOM weights" in result.output and "onnx" in result.output


def test_bench_measures_an_artifact(cli, fast_recipe_file, tmp_path):
    cli("compress", "vitopt/tiny-vit", "--out", tmp_path / "out", "--recipe", fast_recipe_file)
    json_path = tmp_path / "b.json"
    result = cli("bench", tmp_path / "out" / "model.onnx", "--runs", "7", "--min-time", "0", "--json", json_path)
    assert result.exit_code == 0, result.output
    data = json.loads(json_path.read_text())
    assert data["runtime"] == "onnxruntime" and data["latency_ms"]["runs"] >= 7
    assert data["latency_ms"]["p50"] > 0 and "p50" in result.output


def test_inspect_shows_structure(cli, tmp_path):
    result = cli("inspect", "vitopt/tiny-deit", "--json", tmp_path / "i.json")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["params"] > 0 and info["flops"] > 0
    assert {"count": 2, "types": ["Block"]} in [c.get("blocks") for c in info["children"]]
    assert [a["num_heads"] for a in info["attention"]] == [3, 3]


def _bad_checkpoint(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"\x00garbage" * 64)
    return path


def _malformed_recipe(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nverify:\n  n_imags: 3\n")
    return path


def _pickled_checkpoint(tmp_path):
    import argparse

    from vitopt.models import load_model

    path = tmp_path / "train.pth"
    torch.save({"model": load_model(name="vitopt/tiny-vit").module.state_dict(),
                "args": argparse.Namespace(lr=1)}, path)  # fmt: skip
    return path


TINY = "vitopt/tiny-vit"
BAD_INPUTS = {
    "unknown model": (lambda t: ["compress", "deit_tiny_patch16_2244"], "did you mean 'deit_tiny_patch16_224'"),
    "missing checkpoint": (lambda t: ["compress", TINY, "--checkpoint", t / "no.pth"], "does not exist"),
    "missing data": (lambda t: ["compress", TINY, "--data", t / "nowhere"], "nowhere"),
    "missing recipe": (lambda t: ["compress", "--recipe", "baselin"], "did you mean 'baseline'"),
    "malformed recipe": (lambda t: ["compress", "--recipe", _malformed_recipe(t)], "bad.yaml:3"),
    "corrupt checkpoint": (lambda t: ["compress", TINY, "--checkpoint", _bad_checkpoint(t)], "corrupt"),
    "untrusted pickle": (lambda t: ["inspect", TINY, "--checkpoint", _pickled_checkpoint(t)], "--trust-checkpoint"),
    "bad input size": (lambda t: ["inspect", TINY, "--input-size", "3,64"], "--input-size takes 3 values"),
    "unknown target": (lambda t: ["compress", "--target", "onxx"], "did you mean 'onnx'"),
    "unknown artifact format": (lambda t: ["bench", _bad_checkpoint(t)], "no known format"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_exit_2(cli, tmp_path, case):
    make_args, expected = BAD_INPUTS[case]
    args = make_args(tmp_path)
    if args[0] == "compress":
        args += ["--out", tmp_path / "out"]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1
    assert not (tmp_path / "out" / "model.onnx").exists()


@pytest.mark.parametrize(
    ("package", "target", "extra"),
    [("onnxruntime", "onnx", "onnx"), ("openvino", "openvino", "openvino"), ("coremltools", "coreml", "coreml"),
     ("onnxslim", "tensorrt", "onnx")],
)  # fmt: skip
def test_missing_backend_names_the_extra(package, target, extra, tmp_path):
    shadow = tmp_path / "shadow" / package
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise ImportError('{package} is not installed here')\n")
    env = {"PYTHONPATH": str(shadow.parent), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "vitopt.cli", "compress", "vitopt/tiny-vit", "--target", target,
           "--out", str(tmp_path / "o")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stderr
    assert f"pip install 'vitopt[{extra}]'" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1 and not (tmp_path / "o").exists()


def test_failed_run_exits_1(cli, fast_recipe_file, tmp_path):
    result = cli("compress", "tests/fixtures/user_models.py:exports_differently", "--input-size", "3,8,8",
                 "--out", tmp_path / "out", "--recipe", fast_recipe_file)  # fmt: skip
    assert result.exit_code == 1
    assert "verify_failed" in result.output


def test_debug_shows_the_traceback(cli, tmp_path):
    from vitopt.errors import UnknownModelError

    with pytest.raises(UnknownModelError):
        cli("inspect", "no_such_model_xyz", "--debug")


@pytest.mark.slow
@needs_shared
def test_acceptance_deit_tiny_via_console_script(tmp_path):
    """The issue's own check: real deit_tiny, every report field, tight parity on >= 32 real images."""
    model = "deit_tiny_patch16_224"
    cmd = [sys.executable, "-m", "vitopt.cli", "compress", model, "--recipe", "reparam", "--target", "onnx",
           "--out", str(tmp_path)]  # fp32 ONNX, as the default recipe was before it chose precisions
    subprocess.run(cmd, check=True, capture_output=True)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == "vitopt.report/1"
    assert {"name", "params", "flops", "input_shape"} <= set(report["model"])
    (row,) = report["artifacts"]
    required = {"target", "runtime", "precision", "path", "size_bytes", "status", "parity", "latency_ms",
                "baseline_latency_ms", "speedup"}  # fmt: skip
    assert required <= set(row) and row["status"] == "ok"
    assert row["parity"]["max_abs_diff"] < 1e-4 and row["parity"]["top1_agreement"] == 1.0
    assert row["parity"]["n_images"] >= 32
    assert {"p50", "p90", "p99", "mean", "std", "runs"} <= set(row["latency_ms"])
    env = report["environment"]
    assert {"cpu_model", "isa", "threads", "packages"} <= set(env) and "avx2" in env["isa"]
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "report.md").is_file()
