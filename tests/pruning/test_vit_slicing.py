"""Slicing a timm ViT: removing zeroed head/QK/V/MLP units is exact; EMB slicing keeps every
shape consistent; the result exports and runs."""

from __future__ import annotations

import pytest
import timm
import torch

from vitopt.pruning.attention import PrunedAttention
from vitopt.pruning.vit import Keep, emb_axes, read_widths, slice_vit, unit_sums

ARCHS = {
    "vit": ("vit_tiny_patch16_224", {}),
    "deit-distilled": ("deit_tiny_distilled_patch16_224", {}),
    "deit3-layerscale": ("deit3_small_patch16_224", {}),
    "qk-norm": ("vit_tiny_patch16_224", {"qk_norm": True}),
}


def tiny(arch: str, fused: bool, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    name, extra = ARCHS[arch]
    model = timm.create_model(name, img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3,
                              num_classes=10, **{**extra, **kwargs}).eval()  # fmt: skip
    for p in model.parameters():  # trained-like weights: zero-init biases and tokens would hide bugs
        p.data.normal_(0, 0.2)
    for block in model.blocks:
        block.attn.fused_attn = fused
    return model


def zero_and_keep(model, *, drop_heads=(), drop_qk=(), drop_v=(), drop_mlp=()) -> Keep:
    """Zero the weights of the dropped units of block 0 (so the function ignores them); the Keep."""
    w = read_widths(model).blocks[0]
    attn, mlp, d = model.blocks[0].attn, model.blocks[0].mlp, read_widths(model).emb
    qkv = attn.qkv.weight.data.view(3, w.heads, w.qk, d)
    bias = attn.qkv.bias.data.view(3, w.heads, w.qk)
    for h in drop_heads:
        qkv[:, h] = 0
        bias[:, h] = 0
    for j in drop_qk:
        qkv[:2, :, j] = 0
        bias[:2, :, j] = 0
    for j in drop_v:
        qkv[2, :, j] = 0
        bias[2, :, j] = 0
    mlp.fc1.weight.data[list(drop_mlp)] = 0
    mlp.fc1.bias.data[list(drop_mlp)] = 0
    keep = lambda n, drop: torch.tensor([i for i in range(n) if i not in drop])  # noqa: E731
    first = {"heads": keep(w.heads, drop_heads), "qk": keep(w.qk, drop_qk), "v": keep(w.v, drop_v),
             "mlp": keep(w.mlp, drop_mlp)}  # fmt: skip
    rest = [{k: torch.arange(b.get(k)) for k in first} for b in read_widths(model).blocks[1:]]
    return Keep(emb=torch.arange(d), blocks=(first, *rest))


CASES = {
    "heads": {"drop_heads": (1,)},
    "qk": {"drop_qk": (0, 3, 7, 11, 15)},
    "v": {"drop_v": (2, 5, 6)},
    "mlp": {"drop_mlp": tuple(range(0, 192, 3))},
    "all": {"drop_heads": (0,), "drop_qk": (1, 2), "drop_v": (4,), "drop_mlp": (5, 9)},
    "qk-equals-v": {"drop_qk": (1, 2), "drop_v": (1, 2)},
}


@pytest.mark.parametrize("fused", [True, False], ids=["fused-sdpa", "unfused"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("arch", ["vit", "deit-distilled", "deit3-layerscale"])
def test_slicing_zeroed_units_is_exact(arch, case, fused):
    model = tiny(arch, fused)
    keep = zero_and_keep(model, **CASES[case])
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        after = slice_vit(model, keep)(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=0), (before - after).abs().max()
    block = read_widths(model).blocks[0]
    assert (block.heads, block.qk, block.v) == tuple(len(keep.blocks[0][k]) for k in ("heads", "qk", "v"))


def test_qk_different_from_v_uses_the_pruned_attention_and_equal_widths_keep_timms():
    model = tiny("vit", True)
    slice_vit(model, zero_and_keep(model, drop_qk=(1, 2)))
    assert isinstance(model.blocks[0].attn, PrunedAttention)
    assert type(model.blocks[1].attn).__name__ == "Attention"


def test_emb_slicing_keeps_shapes_consistent_everywhere():
    for arch in ("vit", "deit-distilled", "deit3-layerscale"):
        model = tiny(arch, True)
        keep = Keep(emb=torch.arange(0, 48, 2), blocks=tuple(
            {k: torch.arange(read_widths(model).blocks[0].get(k)) for k in ("heads", "qk", "v", "mlp")}
            for _ in model.blocks))  # fmt: skip
        slice_vit(model, keep)
        assert read_widths(model).emb == 24 and model.num_features == 24
        for owner, name, axis in emb_axes(model):
            param = getattr(owner, name, None)
            assert param is None or param.shape[axis] == 24, name
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert unit_sums(model, lambda p: p**2)["emb", None].shape == (24,)


def test_unit_sums_cover_every_unit_of_every_dimension():
    model = tiny("vit", True)
    sums = unit_sums(model, lambda p: p**2)
    w = read_widths(model)
    assert sums["emb", None].shape == (w.emb,)
    for i, b in enumerate(w.blocks):
        assert [sums[d, i].numel() for d in ("heads", "qk", "v", "mlp")] == [b.heads, b.qk, b.v, b.mlp]
    total = sum(p.pow(2).sum() for n, p in model.named_parameters() if "blocks.0.mlp.fc1" in n)
    assert torch.isclose(sums["mlp", 0].sum(), total + model.blocks[0].mlp.fc2.weight.pow(2).sum())
