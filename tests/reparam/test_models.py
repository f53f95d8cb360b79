"""The pass on the families of issue #4 (RepViT, FastViT, LeViT, EfficientFormer, MobileViT).

Protocol (ALGORITHMS.md section 3): eval mode, fp32, CPU; BatchNorm statistics and affine parameters
randomised first; logits on real images match within rtol = atol = 1e-4 (the pass raises otherwise);
no foldable BatchNorm is left, and anything left is reported with a reason. Tiny configurations of
each family's own timm classes run by default; the full-size models are ``slow``.
"""

from __future__ import annotations

import pytest
import timm
import torch

from tests.reparam.conftest import TINY, batch_norms, randomize_bn, real_images
from vitopt.reparam import reparameterize

FULL = ["repvit_m0_9", "fastvit_t8", "levit_128s", "efficientformer_l1", "mobilevit_xs"]


def check_folded(model: torch.nn.Module, images: torch.Tensor) -> dict:
    model = randomize_bn(model.eval())
    with torch.no_grad():
        expected = model(images)
    result = reparameterize(model, images=images, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(result.module(images), expected, rtol=1e-4, atol=1e-4)
    assert batch_norms(result.module) == [], result.details["left"]
    assert result.details["verification"]["passed"] and result.details["batchnorm"]["after"] == 0
    assert all(entry["reason"] for entry in result.details["left"])
    return result.details


@pytest.mark.parametrize("family", list(TINY))
def test_tiny_family_folds_completely(family):
    factory, size = TINY[family]
    details = check_folded(factory(), real_images(size))
    assert details["batchnorm"]["folded"] > 0


@pytest.mark.parametrize(
    ("family", "kinds"),
    [
        ("repvit", {"conv_bn", "branches", "heads"}),  # RepVGG token mixers and the two distilled heads
        ("fastvit", {"conv_bn", "branches", "scale", "bn_linear"}),  # MobileOne, RepMixer, RepCPE, attention norm
        ("levit", {"linear_bn", "conv_bn", "heads"}),
        ("efficientformer", {"conv_bn", "heads", "scale"}),
        ("mobilevit", {"conv_bn"}),
    ],
)
def test_each_family_uses_the_folds_it_needs(family, kinds):
    factory, size = TINY[family]
    details = check_folded(factory(), real_images(size))
    assert set(details["folds"]) == kinds


@pytest.mark.parametrize("family", list(TINY))
def test_folds_at_least_as_much_as_timms_own_methods(family):
    factory, size = TINY[family]
    model, images = randomize_bn(factory()).eval(), real_images(size)
    timm_fused = timm.utils.reparameterize_model(model)
    ours = reparameterize(model, images=images).module
    assert len(batch_norms(ours)) <= len(batch_norms(timm_fused))
    assert sum(1 for _ in ours.modules() if isinstance(_, torch.nn.Linear)) <= sum(
        1 for _ in timm_fused.modules() if isinstance(_, torch.nn.Linear))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_model_folds_completely(name):
    model = timm.create_model(name)
    details = check_folded(model, real_images(224, n=8))
    assert details["verification"]["n_images"] == 8


@pytest.mark.parametrize("randomised", [True, False])
def test_repvit_reference_model(randomised):
    from vitopt.models import load_model

    loaded = load_model(name="vitopt/repvit-cifar10")
    assert loaded.weights == "zoo"  # the trained reference, multi-branch blocks as trained
    model = randomize_bn(loaded.module) if randomised else loaded.module
    images = real_images(loaded.spec.input_size[-1], n=8)
    with torch.no_grad():
        expected = model(images)
    result = reparameterize(model, images=images)
    with torch.no_grad():
        torch.testing.assert_close(result.module(images), expected, rtol=1e-4, atol=1e-4)
    assert batch_norms(result.module) == [] and result.details["folds"]["branches"] > 0


def test_vit_without_batchnorm_passes_through_unchanged():
    from vitopt.models import load_model

    loaded = load_model(name="vitopt/tiny-deit")  # two heads on two different tokens: nothing to merge
    result = reparameterize(loaded.module, images=real_images(loaded.spec.input_size[-1]))
    assert result.details["folds"] == {} and result.details["verification"]["max_abs_diff"] == 0.0


@pytest.mark.parametrize("shared", [False, True])
def test_beit_blocks_still_take_the_keyword_their_model_passes(shared):
    # BEiT calls every block as blk(x, shared_rel_pos_bias=rel_pos_bias): None (traced as a constant) or a tensor
    model = timm.create_model("beit_base_patch16_224", depth=2, embed_dim=64, num_heads=2, img_size=64,
                              use_shared_rel_pos_bias=shared, num_classes=10)  # fmt: skip
    details = check_folded(model, real_images(64))
    assert details["folds"] == {"scale": 4}  # gamma_1 and gamma_2 of both blocks
    assert sorted(details["graph_rewrites"]) == ["blocks.0", "blocks.1"]


def _tiny_caformer() -> torch.nn.Module:
    """caformer_s18's classes and layout (SepConv then attention stages, StarReLU, res scales), one block a stage."""
    from timm.models.metaformer import Attention, LayerNorm2dNoBias, LayerNormNoBias, MetaFormer, SepConv

    mixers, norms = [SepConv, SepConv, Attention, Attention], [LayerNorm2dNoBias] * 2 + [LayerNormNoBias] * 2
    model = MetaFormer(depths=(1,) * 4, dims=(16, 32, 64, 64), token_mixers=mixers, norm_layers=norms, num_classes=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # StarReLU's scale 1 and bias 0, the res scales' 1, would hide a wrong fold
        for name, p in model.named_parameters():
            if name.endswith(("act.scale", "act1.scale", "res_scale1.scale", "res_scale2.scale")):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith(("act.bias", "act1.bias")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def test_caformer_starrelu_scales_fold_into_the_mlp():
    details = check_folded(_tiny_caformer(), real_images(64))
    # each MLP's StarReLU scale and bias go into fc2 (SepConv's stay: a shift before its zero-padded 7x7 cannot fold)
    assert details["folds"] == {"scale": 8}
    assert sorted(details["graph_rewrites"]) == [f"stages.{i}.blocks.0.mlp" for i in range(4)]


def _saturated_visformer() -> torch.nn.Module:
    """An untrained visformer whose attention has saturated, as the full-size one's does after its activations have
    grown block by block (here its qkv weights are scaled up instead): fp32 rounding decides which key wins."""
    torch.manual_seed(3)
    model = randomize_bn(timm.create_model("visformer_tiny", depth=(1, 1, 2), embed_dim=48, img_size=64,
                                           num_classes=10).eval())  # fmt: skip
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attn.qkv.weight"):
                p.mul_(3)
    return model


def test_visformer_whose_rounding_fp32_cannot_verify_folds_proven_in_float64():
    result = reparameterize(_saturated_visformer(), images=real_images(64))
    check = result.details["verification"]
    assert check["precision"] == "float64" and check["max_abs_diff"] > 1e-3  # fp32 alone could not verify it
    assert check["rounding"]["float64"]["max_abs_diff"] < 1e-6
    assert set(result.details["folds"]) == {"conv_bn", "bn_conv"}
    assert batch_norms(result.module) == ["norm"]  # before the pooling: not next to a layer


BATCH_NORMS_LEFT = {"visformer_tiny": ["norm"], "caformer_s18": []}  # visformer's last BatchNorm feeds the pooling


@pytest.mark.slow
@pytest.mark.parametrize("name", ["visformer_tiny", "caformer_s18"])
def test_full_size_models_the_coverage_matrix_failed_on(name):
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(name).eval())
    result = reparameterize(model, images=real_images(224, n=8))
    assert result.details["verification"]["passed"] and result.details["folds"]
    assert batch_norms(result.module) == BATCH_NORMS_LEFT[name]
