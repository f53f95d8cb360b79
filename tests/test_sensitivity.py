"""`vitopt quant-sensitivity`: one layer group quantised at a time, ranked by what it costs."""

from __future__ import annotations

import json

import pytest

from vitopt.sensitivity import layer_groups

pytestmark = [pytest.mark.openvino]


def test_layer_groups_split_sequences_and_wildcard_kinds(tiny_vit):
    groups = layer_groups(tiny_vit.module)
    depth = len(tiny_vit.module.blocks)
    assert [g for g in groups if g.startswith("blocks.")] == [f"blocks.{i}" for i in range(depth)]
    assert {"patch_embed", "head"} <= set(groups)
    kinds = layer_groups(tiny_vit.module, by="kinds")
    assert {"blocks.*.attn.qkv", "blocks.*.mlp.fc1", "head"} <= set(kinds)


def test_each_group_alone_is_quantised_and_ranked(cli, tmp_path):
    path = tmp_path / "sensitivity.json"
    result = cli("quant-sensitivity", "vitopt/tiny-vit", "--images", 16, "--json", path)
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    names = [g["group"] for g in data["groups"]]
    assert {"patch_embed", "blocks.0", "head"} <= set(names) and len(names) == len(set(names))
    losses = [1 - g["top1_agreement"] for g in data["groups"]]
    assert losses == sorted(losses, reverse=True) and all(0 <= loss <= 1 for loss in losses)
    assert "patch_embed" in result.output and "cost = agreement_loss" in result.output


def test_only_the_named_group_gets_quantisers(tiny_vit, tmp_path):
    from vitopt.backends.openvino.quantize import OpenVinoQuantizer
    from vitopt.data import load_batch
    from vitopt.recipe import QuantizeSettings
    from vitopt.sensitivity import _export_float

    images = load_batch(spec=tiny_vit.spec, n=8)
    float_ir = _export_float(tiny_vit, images=images, staging=tmp_path)
    counts = {}
    for name, only in (("all", None), ("head", "head")):
        quantizer = OpenVinoQuantizer(settings=QuantizeSettings(), only=only)
        out = quantizer.quantize(float_ir, scheme="int8", calibration=images, dest=tmp_path / f"{name}.xml")
        counts[name] = out.details["quantization"]["fake_quantize_ops"]
    assert 0 < counts["head"] < counts["all"]
