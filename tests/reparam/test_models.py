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
