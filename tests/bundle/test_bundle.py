"""``vitopt bundle`` from a compress run of the ViT reference, for iOS and Android; ``bundle verify``
against tampering, traversal, duplicates, zip bombs; byte-identical archives; no links followed out."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.conftest import fast_recipe_dict
from vitopt.models import load_model
from vitopt.pipeline import compress
from vitopt.recipe import parse_recipe


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "out"
    targets = [{"format": "onnx"}, {"format": "coreml", "precision": "fp16"}]
    compress(model=load_model(name="vitopt/vit-cifar10"), recipe=parse_recipe(fast_recipe_dict(targets=targets)),
             out_dir=out)  # fmt: skip
    return out


@pytest.mark.slow
@pytest.mark.parametrize("platform, model_file", [("ios", "model.mlpackage/Manifest.json"), ("android", "model.ort")])
def test_a_bundle_per_platform_verifies_and_is_byte_identical_when_rebuilt(cli, out_dir, tmp_path, platform,
                                                                           model_file):  # fmt: skip
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    for dest in (first, second):
        result = cli("bundle", out_dir, "--platform", platform, "--out", dest)
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        pre = json.loads(archive.read("preprocessing.json"))
        labels = archive.read("labels.txt").decode().split()
    assert model_file in names and "labels.txt" in names
    assert (manifest["platform"] == platform and manifest["measured"]["latency_ms"] is not None) or platform == "ios"
    if platform == "android":
        assert pre["input"]["shape"] == [1, 3, 32, 32] and pre["normalise"]["mean"][0] == pytest.approx(0.4914)
    else:  # the Core ML package takes the image and normalises inside
        assert pre["input"] == {"name": "image", "kind": "image", "size": [32, 32], "colour_order": "RGB"}
    assert labels[:2] == ["airplane", "automobile"]
    if platform == "ios":  # what Linux can know of the package: its operators, a static input
        assert manifest["mobile"]["ops"]["linear"] > 0 and manifest["mobile"]["static_shapes"]
    assert cli("bundle", "verify", first).exit_code == 0


@pytest.fixture(scope="module")
def android_zip(out_dir, tmp_path_factory) -> Path:
    """One Android bundle for the tests that tamper with copies of it (building one takes ~10 s)."""
    from typer.testing import CliRunner

    from vitopt.cli import app

    dest = tmp_path_factory.mktemp("android") / "app.zip"
    result = CliRunner().invoke(app, ["bundle", str(out_dir), "--platform", "android", "--out", str(dest)])
    assert result.exit_code == 0, result.output
    return dest


def rewrite(src: Path, dest: Path, change) -> Path:
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dest, "w") as b:
        for info in a.infolist():
            change(b, info.filename, a.read(info.filename))
    return dest


def test_a_tampered_file_fails_verification_with_exit_1(cli, android_zip, tmp_path):
    def tamper(z, name, data):
        z.writestr(name, data + b"x" if name == "labels.txt" else data)

    result = cli("bundle", "verify", rewrite(android_zip, tmp_path / "t.zip", tamper))
    assert result.exit_code == 1 and "labels.txt" in result.output and "hash" in result.output


@pytest.mark.parametrize("extra_name", ["../evil.sh", "/etc/evil", "a/../../evil"])
def test_a_traversal_member_is_refused_with_exit_2(cli, android_zip, tmp_path, extra_name):
    def add(z, name, data):
        z.writestr(name, data)
        if name == "labels.txt":
            z.writestr(extra_name, b"#!/bin/sh\n")

    result = cli("bundle", "verify", rewrite(android_zip, tmp_path / "t.zip", add))
    assert result.exit_code == 2 and "unsafe archive member" in result.output


def test_duplicates_and_zip_bombs_are_refused(cli, android_zip, tmp_path):
    def duplicate(z, name, data):
        z.writestr(name, data)
        if name == "labels.txt":
            z.writestr(name, b"other\n")

    def bomb(z, name, data):
        z.writestr(zipfile.ZipInfo(name), data if name != "labels.txt" else b"\0" * 50_000_000,
                   compress_type=zipfile.ZIP_DEFLATED)  # fmt: skip

    dup = cli("bundle", "verify", rewrite(android_zip, tmp_path / "d.zip", duplicate))
    assert dup.exit_code == 2 and "duplicate" in dup.output
    boom = cli("bundle", "verify", rewrite(android_zip, tmp_path / "b.zip", bomb))
    assert boom.exit_code == 2 and "zip bomb" in boom.output


def test_a_link_out_of_the_output_folder_is_not_followed(cli, out_dir, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(out_dir, copy, symlinks=True)
    package = next(copy.glob("*.mlpackage"))
    (package / "secret").symlink_to("/etc/passwd")
    result = cli("bundle", copy, "--platform", "ios", "--out", tmp_path / "x.zip")
    assert result.exit_code == 2 and "outside" in result.output
    assert not (tmp_path / "x.zip").exists()


def test_bad_bundle_arguments_are_one_line_and_exit_2(cli, out_dir, tmp_path):
    assert cli("bundle", out_dir, "--platform", "windows", "--out", tmp_path / "x.zip").exit_code == 2
    no_coreml = tmp_path / "onnx-only"
    no_coreml.mkdir()
    shutil.copy(out_dir / "report.json", no_coreml / "report.json")
    result = cli("bundle", no_coreml, "--platform", "ios", "--out", tmp_path / "x.zip")
    assert result.exit_code == 2 and "--target coreml" in result.output
    assert cli("bundle", "verify", tmp_path / "missing.zip").exit_code == 2


@pytest.mark.slow
def test_the_android_model_is_fixed_shape_checked_and_parity_verified(cli, out_dir, tmp_path):
    """Shapes fixed from the spec with no shape arithmetic left, ONNX Runtime's mobile checker's verdicts
    parsed from its real output, the .ort file verified against the compressed model."""
    assert cli("bundle", out_dir, "--platform", "android", "--out", tmp_path / "a.zip").exit_code == 0
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        mobile = json.loads(archive.read("manifest.json"))["mobile"]
    assert mobile["static_shapes"] and mobile["input_shape"] == [1, 3, 32, 32]
    assert mobile["shape_ops_left"] == {"Shape": 0, "Expand": 0, "ConstantOfShape": 0}
    checker = mobile["checker"]
    for ep in ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"):
        assert checker[ep]["verdict"] in ("YES", "MAYBE", "NO")
        assert 0 < checker[ep]["supported_nodes"] <= checker[ep]["nodes"]
    assert checker["recommended_android"] in ("NNAPI", "CPU")
    assert mobile["ort_parity"]["max_abs_diff"] < 1e-3 and mobile["ort_parity"]["top1_agreement"] == 1.0
    (chosen,) = [form for form in mobile["variants"] if form["chosen"]]
    assert chosen["checker"] == checker  # the manifest's verdict is the shipped form's
    nnapi = [form["checker"]["NNAPI"]["partitions"] for form in mobile["variants"]]
    assert checker["NNAPI"]["partitions"] == min(nnapi) or checker["recommended_android"] == "CPU"
    assert mobile["ort_optimization_style"] == ("Runtime" if checker["recommended_android"] == "NNAPI" else "Fixed")


@pytest.mark.slow
def test_a_dynamic_shape_model_ships_only_when_asked_for(cli, out_dir, tmp_path):
    result = cli("bundle", out_dir, "--platform", "android", "--dynamic-shapes", "--out", tmp_path / "d.zip")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "d.zip") as archive:
        mobile = json.loads(archive.read("manifest.json"))["mobile"]
    assert mobile["static_shapes"] is False and "shape_ops_left" not in mobile
