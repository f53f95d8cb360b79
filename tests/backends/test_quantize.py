"""Each backend's quantiser on a tiny ViT and a tiny RepViT, and `precision: auto` choosing by measurement."""

from __future__ import annotations

import sys

import onnx
import pytest
import torch

from tests.backends.families import FAMILIES, load_family
from tests.conftest import CIFAR_TEST, fast_recipe_dict, needs_shared
from vitopt.backends.onnx.quantize import OnnxQuantizer
from vitopt.data import load_batch
from vitopt.pipeline import compress
from vitopt.recipe import QuantizeSettings, parse_recipe
from vitopt.select import choose

pytestmark = [pytest.mark.onnx, pytest.mark.openvino, pytest.mark.coreml]
FORMATS_RUN = ("openvino", "onnx", "coreml")
REPVIT = next(row for row in FAMILIES if row[0] == "repvit")


def _auto_recipe(**quantize):
    targets = [{"format": f, "precision": "auto", "quantize": {"calibration_images": 16, **quantize}}
               for f in FORMATS_RUN]  # fmt: skip
    return parse_recipe(fast_recipe_dict(targets=targets, verify={"n_images": 16}))


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    torch.manual_seed(0)
    from vitopt.models import load_model

    out = tmp_path_factory.mktemp("quant-vit")
    return compress(model=load_model(name="vitopt/tiny-vit"), recipe=_auto_recipe(), out_dir=out), out


@pytest.fixture(scope="module")
def repvit_run(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("quant-repvit")
    return compress(model=load_family(*REPVIT[1:]), recipe=_auto_recipe(), out_dir=out), out


@pytest.mark.parametrize("run", ["vit_run", "repvit_run"])
def test_every_candidate_is_a_row_and_one_per_target_ships_at_the_usual_path(run, request):
    report, out = request.getfixturevalue(run)
    rows = report["artifacts"]
    assert [(r["target"], r["precision"]) for r in rows] == [
        ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8"), ("openvino", "int8-weights"),
        ("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"), ("onnx", "int8-dynamic"),
        ("coreml", "fp32"), ("coreml", "fp16"), ("coreml", "int8-weights"), ("coreml", "palette8"),
        ("coreml", "palette6"), ("coreml", "palette4")]  # fmt: skip
    for target, usual in (("openvino", "model.xml"), ("onnx", "model.onnx"), ("coreml", "model.mlpackage")):
        group = [r for r in rows if r["target"] == target]
        (chosen,) = [r for r in group if r["chosen"]]
        assert chosen["path"] == str(out / usual) and (out / usual).exists()
        assert all(r["selection"] for r in group)
        assert all("/candidates/" in r["path"] for r in group if not r["chosen"])
    for row in rows:  # every quantiser ran; its artifact runs here, or (Core ML) was validated as a file
        assert row["status"] == ("not_benchmarked" if row["target"] == "coreml" else "ok"), row
        if row["precision"] not in ("fp32", "fp16"):  # int8-dynamic leaves a conv net's convs in float
            assert row["size_bytes"] < next(r for r in rows if r["target"] == row["target"])["size_bytes"]


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML runs and is measured instead")
def test_core_ml_candidates_shrink_by_scheme_and_are_simulated_where_they_cannot_run(vit_run):
    report, _ = vit_run
    rows = {r["precision"]: r for r in report["artifacts"] if r["target"] == "coreml"}
    sizes = [rows[p]["size_bytes"] for p in ("fp32", "fp16", "palette6", "palette4")]
    assert sizes == sorted(sizes, reverse=True)
    assert rows["int8-weights"]["size_bytes"] < 0.6 * rows["fp16"]["size_bytes"]
    assert rows["fp16"]["chosen"], "nothing measured: the format's default precision is kept"
    for scheme in ("int8-weights", "palette8", "palette6", "palette4"):
        assert "compressed weight tensors" in " ".join(rows[scheme]["validation"]["checked"])
        assert 0 <= rows[scheme]["simulated"]["top1_agreement"] <= 1 and rows[scheme]["simulated"]["n_images"] == 16


def test_simulation_applies_the_scheme_to_the_weights(tiny_vit):
    from vitopt.backends.coreml.quantize import CoreMLQuantizer

    quantizer = CoreMLQuantizer(settings=QuantizeSettings())
    weight = quantizer.simulate(tiny_vit.module, scheme="palette4").blocks[0].mlp.fc1.weight
    assert torch.unique(weight).numel() <= 16  # a 4-bit palette: at most 16 distinct values per tensor
    assert torch.unique(tiny_vit.module.blocks[0].mlp.fc1.weight).numel() > 16, "the user's model is untouched"


def test_quantised_artifacts_are_really_quantised_and_keep_vit_ops_float(vit_run):
    report, _ = vit_run
    rows = {(r["target"], r["precision"]): r for r in report["artifacts"]}
    assert rows["openvino", "int8"]["export"]["quantization"]["fake_quantize_ops"] > 0
    int8 = onnx.load(rows["onnx", "int8"]["path"])
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)
    assert rows["onnx", "int8"]["export"]["quantization"]["nodes_kept_float"] > 0
    producers = {o: n for n in int8.graph.node for o in n.output}
    for node in int8.graph.node:  # no LayerNorm reads a dequantised tensor: it stays in float
        if node.op_type == "LayerNormalization":
            assert producers.get(node.input[0]) is None or producers[node.input[0]].op_type != "DequantizeLinear"
    dynamic = onnx.load(rows["onnx", "int8-dynamic"]["path"])
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in dynamic.graph.node)


def test_the_choice_follows_the_rule_on_the_measured_numbers(vit_run):
    report, _ = vit_run
    settings = parse_recipe(fast_recipe_dict(targets=[{"format": "onnx", "precision": "auto"}])).targets[0].quantize
    for target in ("openvino", "onnx"):  # the measured ones
        group = [r for r in report["artifacts"] if r["target"] == target]
        fp32 = next(r for r in group if r["precision"] == "fp32")
        eligible = [r for r in group if r["parity"]["top1_agreement"] >= settings.min_top1_agreement]
        fastest = min(eligible, key=lambda r: r["latency_ms"]["p50"])
        gain = fp32["latency_ms"]["p50"] / fastest["latency_ms"]["p50"] - 1
        expected = fastest if gain >= settings.min_gain else fp32
        assert next(r for r in group if r["chosen"]) is not None
        assert [r["precision"] for r in group if r["chosen"]] == [expected["precision"]]
        # choose() on the same rows (without its own verdicts) reproduces the decision
        again = choose([{k: v for k, v in r.items() if k not in ("chosen", "selection")} for r in group],
                       settings=settings)  # fmt: skip
        assert [r["precision"] for r in again if r["chosen"]] == [expected["precision"]]


def test_quantisers_calibrate_on_the_real_images(tiny_vit, tmp_path, monkeypatch):
    seen = []
    original = OnnxQuantizer.quantize

    def spy(self, artifact, *, scheme, calibration, dest, labelled=None):
        seen.append(calibration.clone())
        return original(self, artifact, scheme=scheme, calibration=calibration, dest=dest, labelled=labelled)

    monkeypatch.setattr(OnnxQuantizer, "quantize", spy)
    recipe = parse_recipe(fast_recipe_dict(targets=[{"format": "onnx", "precision": "int8",
                                                     "quantize": {"calibration_images": 12}}]))  # fmt: skip
    report = compress(model=tiny_vit, recipe=recipe, out_dir=tmp_path)
    assert report["artifacts"][0]["status"] in ("ok", "verify_failed")
    (calibration,) = seen
    assert torch.equal(calibration, load_batch(spec=tiny_vit.spec, path=None, n=12))


def test_bad_quantisation_options_exit_2_naming_the_key(cli, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("version: 1\ntargets:\n  - format: openvino\n    precision: auto\n"
                      "    quantize: {calibraton_images: 5}\n")  # fmt: skip
    result = cli("compress", "vitopt/tiny-vit", "--recipe", recipe, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "calibraton_images" in result.output and "calibration_images" in result.output
    recipe.write_text("version: 1\ntargets:\n  - format: onnx\n    precision: auto\n"
                      "    quantize: {candidates: [int8, palette4]}\n")  # fmt: skip
    result = cli("compress", "vitopt/tiny-vit", "--recipe", recipe, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "palette4" in result.output
    assert not (tmp_path / "out").exists()


@needs_shared
def test_labelled_data_turns_on_nncf_accuracy_control_for_openvino_int8(tiny_vit, tmp_path):
    quantize = {"candidates": ["int8"], "calibration_images": 16, "validation_images": 20}
    recipe = parse_recipe(fast_recipe_dict(targets=[{"format": "openvino", "precision": "auto", "quantize": quantize}],
                                           verify={"n_images": 16}))  # fmt: skip
    report = compress(model=tiny_vit, recipe=recipe, out_dir=tmp_path, data=CIFAR_TEST)
    (int8,) = [r for r in report["artifacts"] if r["precision"] == "int8"]
    control = int8["export"]["quantization"]["accuracy_control"]
    assert control == {"max_drop": 0.01, "source": "--data (labelled)", "validation_images": 20}
