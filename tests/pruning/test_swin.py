"""Swin: whole heads and MLP units per block; slicing zeroed units is exact (the relative-position bias
table follows its heads); FLOPs budgets priced exactly; latency budgets refused in one line."""

from __future__ import annotations

import pytest
import timm
import torch

from tests.conftest import fast_recipe_dict
from tests.pruning.test_prune_pass import PRUNE
from vitopt.errors import UnsupportedOptionError
from vitopt.flops import model_cost
from vitopt.models import load_model
from vitopt.pipeline import compress
from vitopt.pruning.families import family_for
from vitopt.pruning.vit import Keep
from vitopt.recipe import parse_recipe

SWIN = {"img_size": 32, "patch_size": 2, "window_size": 4, "embed_dim": 32, "depths": (2, 2), "num_heads": (2, 4),
        "num_classes": 10}  # fmt: skip


def tiny_swin(fused: bool):
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", **SWIN).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    for block in family_for(model).blocks_of(model):
        block.attn.fused_attn = fused
    return model


@pytest.mark.parametrize("fused", [True, False], ids=["fused-sdpa", "unfused"])
def test_slicing_zeroed_heads_and_mlp_units_is_exact(fused):
    model = tiny_swin(fused)
    family = family_for(model)
    blocks, keeps = family.blocks_of(model), []
    for block in blocks:
        heads, dim = block.attn.num_heads, block.attn.qkv.in_features
        head_dim = block.attn.qkv.out_features // (3 * heads)
        drop = heads - 1  # the last head of every block
        block.attn.qkv.weight.data.view(3, heads, head_dim, dim)[:, drop] = 0
        block.attn.qkv.bias.data.view(3, heads, head_dim)[:, drop] = 0
        block.mlp.fc1.weight.data[::3] = 0
        block.mlp.fc1.bias.data[::3] = 0
        mlp = block.mlp.fc1.out_features
        keeps.append({"heads": torch.arange(heads - 1), "qk": torch.arange(head_dim), "v": torch.arange(head_dim),
                      "mlp": torch.tensor([i for i in range(mlp) if i % 3])})  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        after = family.slice_model(model, Keep(emb=torch.arange(32), blocks=tuple(keeps)))(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=0), (before - after).abs().max()
    assert [b.attn.num_heads for b in blocks] == [1, 1, 3, 3]
    assert blocks[2].attn.relative_position_bias_table.shape[1] == 3


def test_flops_are_priced_as_the_counter_counts_them():
    model = tiny_swin(True)
    family = family_for(model)
    from vitopt.pruning.budget import _counted

    cost = _counted(model, family=family, kind="flops", input_size=(3, 32, 32))
    assert cost(family.read_widths(model)) == pytest.approx(model_cost(model, input_size=(3, 32, 32)).flops)
    keep = Keep(emb=torch.arange(32), blocks=tuple(
        {"heads": torch.arange(1), "qk": torch.arange(16), "v": torch.arange(16), "mlp": torch.arange(32)}
        for _ in family.blocks_of(model)))  # fmt: skip
    family.slice_model(model, keep)
    assert cost(family.read_widths(model)) == pytest.approx(model_cost(model, input_size=(3, 32, 32)).flops, rel=0.02)


def test_a_swin_prunes_to_a_flops_budget_and_refuses_a_latency_one(cifar_dir, tmp_path):
    torch.manual_seed(0)
    model = load_model(name="vitopt/swin-cifar10", model_kwargs={"embed_dim": 32, "num_heads": (2, 4, 8)})
    options = {**PRUNE, "multiples": {"mlp": 16}}
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": "prune", "options": options}], verify={"n_images": 16}))
    report = compress(model=model, recipe=recipe, out_dir=tmp_path / "out", data=cifar_dir)
    p = report["passes"][0]
    assert p["flops_after"] <= 0.55 * p["flops_before"] and report["artifacts"][0]["status"] == "ok"
    reloaded = load_model(name=str(tmp_path / "out" / "pytorch"))
    assert family_for(reloaded.module).read_widths(reloaded.module).to_dict() == p["details"]["widths_after"]
    latency = parse_recipe(fast_recipe_dict(passes=[{"name": "prune", "options": {**PRUNE, "flops": None,
                                                                                  "latency": 0.5}}]))  # fmt: skip
    with pytest.raises(UnsupportedOptionError, match="latency tables"):
        compress(model=model, recipe=latency, out_dir=tmp_path / "lat", data=cifar_dir)


def test_swin_v2_heads_slice_exactly_with_their_position_bias_and_logit_scale():
    """v2: cosine attention (zeroed q/k still attend), so a head is silenced through its proj columns;
    slicing it also slices the continuous position bias MLP's output row, logit_scale and q/v bias."""
    torch.manual_seed(0)
    model = timm.create_model("swinv2_tiny_window8_256", **{**SWIN, "img_size": 32}).eval()
    family = family_for(model)
    keeps = []
    for block in family.blocks_of(model):
        heads, head_dim = block.attn.num_heads, block.attn.qkv.out_features // (3 * block.attn.num_heads)
        block.attn.proj.weight.data[:, :head_dim] = 0  # head 0 of every block contributes nothing
        keeps.append({"heads": torch.arange(1, heads), "qk": torch.arange(head_dim), "v": torch.arange(head_dim),
                      "mlp": torch.arange(block.mlp.fc1.out_features)})  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        after = family.slice_model(model, Keep(emb=torch.arange(32), blocks=tuple(keeps)))(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=0), (before - after).abs().max()
    attn = family.blocks_of(model)[2].attn
    assert attn.num_heads == 3 and attn.logit_scale.shape[0] == 3 and attn.cpb_mlp[-1].out_features == 3
    assert attn.q_bias.shape[0] == 3 * 16 and attn.k_bias.shape[0] == 3 * 16
