"""The `reparam` pass inside vitopt: options, the shipped recipe, the pipeline and the ONNX artifact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import fast_recipe_dict
from tests.reparam import blocks
from tests.reparam.conftest import TINY, randomize_bn, real_images
from vitopt.errors import RecipeError
from vitopt.models import LoadedModel
from vitopt.passes import PassContext, pass_registry
from vitopt.recipe import parse_recipe
from vitopt.recipes import resolve_recipe
from vitopt.spec import ModelSpec


def test_pass_is_registered_with_validated_options():
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": "reparam", "options": {"include_kinds": ["conv_bn"]}}]))
    assert recipe.passes[0].build_options().include_kinds == ["conv_bn"]
    with pytest.raises(RecipeError, match="include_kinds"):
        parse_recipe(fast_recipe_dict(passes=[{"name": "reparam", "options": {"include_kinds": ["conv_relu"]}}]))
    with pytest.raises(RecipeError, match="did you mean 'verify_atol'"):
        parse_recipe(fast_recipe_dict(passes=[{"name": "reparam", "options": {"verify_atl": 1e-3}}]))


def test_shipped_recipe_runs_reparam_first():
    recipe = resolve_recipe(recipe="reparam", targets=["onnx"])
    assert recipe.passes[0].name == "reparam" and recipe.passes[0].build_options().strategy == "auto"


def test_pass_run_reports_folds_and_equivalence():
    spec = ModelSpec(name="blocks", input_size=(3, 16, 16), num_classes=5)
    model = randomize_bn(blocks.DistilledHeads()).eval()
    the_pass = pass_registry().get("reparam")(pass_registry().get("reparam").Options())
    result = the_pass.run(model, context=PassContext(spec=spec, calibration=real_images(16)))
    assert result.details["folds"] == {"conv_bn": 1, "heads": 1}
    assert result.details["verification"]["passed"] and result.details["verification"]["n_images"] == 4
    assert result.details["batchnorm"] == {"before": 3, "after": 0, "folded": 3}


def test_pass_without_calibration_loads_real_images():
    spec = ModelSpec(name="blocks", input_size=(3, 16, 16), num_classes=5)
    options = pass_registry().get("reparam").Options(verify_images=3)
    result = pass_registry().get("reparam")(options).run(randomize_bn(blocks.DistilledHeads()).eval(),
                                                         context=PassContext(spec=spec))  # fmt: skip
    assert result.details["verification"]["n_images"] == 3


@pytest.mark.onnx
def test_compress_folds_exports_and_measures(tmp_path):
    from vitopt.pipeline import compress

    factory, size = TINY["repvit"]
    spec = ModelSpec(name="tiny-repvit", input_size=(3, size, size), num_classes=10)
    model = LoadedModel(module=randomize_bn(factory()).eval(), spec=spec, source="test", weights="random", notices=[])
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": "reparam"}], verify={"n_images": 8}))
    report = compress(model=model, recipe=recipe, out_dir=tmp_path)
    (record,) = report["passes"]
    assert record["details"]["batchnorm"]["after"] == 0 and record["params_after"] < record["params_before"]
    artifact = report["artifacts"][0]
    assert artifact["status"] == "ok" and artifact["parity"]["max_abs_diff"] < 1e-4
    assert artifact["fidelity"] is not None and artifact["speedup"] > 0


@pytest.mark.onnx
def test_graph_rewritten_model_exports_to_onnx(tmp_path):
    import onnxruntime as ort

    from vitopt.backends.onnx.exporter import OnnxOptions, export_onnx
    from vitopt.reparam import reparameterize

    spec = ModelSpec(name="blocks", input_size=(3, 16, 16), num_classes=5)
    images = real_images(16)
    model = randomize_bn(nn.Sequential(blocks.DistilledHeads())).eval()
    folded = reparameterize(model, images=images).module
    export_onnx(folded, spec=spec, path=tmp_path / "m.onnx", options=OnnxOptions())
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": images.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(images), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.onnx
def test_cli_compress_repvit_with_the_reparam_recipe_reports_the_speedup(cli, tmp_path):
    import json
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "reparam.yaml"
    result = cli("compress", "repvit_m0_9", "--recipe", recipe, "--target", "onnx", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    details = report["passes"][0]["details"]
    assert report["passes"][0]["name"] == "reparam" and details["batchnorm"]["after"] == 0
    assert details["folds"]["branches"] > 0 and details["verification"]["passed"]
    artifact = report["artifacts"][0]
    assert artifact["status"] == "ok" and artifact["speedup"] > 0 and "speedup" in report["artifacts"][0]
