"""A pruned ViT, with QK != V in a block (vitopt's attention module), exports to every target: parity on
ONNX Runtime and OpenVINO, and Core ML conversion (validated off macOS)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import fast_recipe_dict
from vitopt.models import load_model
from vitopt.pipeline import compress
from vitopt.pruning.attention import PrunedAttention
from vitopt.pruning.families import family_for
from vitopt.pruning.vit import Keep
from vitopt.recipe import parse_recipe


@pytest.mark.slow
def test_a_pruned_vit_with_unequal_qk_and_v_exports_to_every_target(tmp_path):
    torch.manual_seed(0)
    model = load_model(name="vitopt/tiny-vit")
    w = family_for(model.module).read_widths(model.module)
    blocks = tuple({"heads": torch.arange(2), "qk": torch.arange(8), "v": torch.arange(16), "mlp": torch.arange(96)}
                   for _ in w.blocks)  # fmt: skip
    family_for(model.module).slice_model(model.module, Keep(emb=torch.arange(32), blocks=blocks))
    assert isinstance(model.module.blocks[0].attn, PrunedAttention)
    targets = [{"format": "onnx"}, {"format": "openvino"}, {"format": "coreml", "precision": "fp32"}]
    report = compress(model=model, recipe=parse_recipe(fast_recipe_dict(targets=targets)), out_dir=tmp_path / "out")
    rows = {r["target"]: r for r in report["artifacts"]}
    for fmt in ("onnx", "openvino"):
        assert rows[fmt]["status"] == "ok" and rows[fmt]["parity"]["max_abs_diff"] < 1e-4, rows[fmt]
    assert rows["coreml"]["status"] in ("ok", "not_benchmarked"), rows["coreml"]
    assert (tmp_path / "out" / "model.mlpackage").is_dir()
