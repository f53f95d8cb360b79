"""Shared helpers for the reparameterisation tests: randomised BatchNorm, tiny timm models, real images.

ALGORITHMS.md section 3: a fresh BatchNorm (mean 0, var 1, gamma 1, beta 0) hides most folding
bugs, so every test randomises running statistics and affine parameters before folding.
"""

from __future__ import annotations

from functools import partial

import pytest
import timm
import torch
from torch import nn

import vitopt.reparam  # noqa: F401  (registers the pass until vitopt.passes lists it)
from vitopt.data import load_batch
from vitopt.spec import ModelSpec


def randomize_bn(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters for every BatchNorm (in place); returns the model."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.randn(n, generator=g) * 0.5 + 1.0)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model


def real_images(size: int, n: int = 4) -> torch.Tensor:
    """Real calibration photographs (shipped with vitopt), preprocessed at ``size`` x ``size``."""
    return load_batch(spec=ModelSpec(name="test", input_size=(3, size, size), num_classes=10), n=n)


def batch_norms(model: nn.Module) -> list[str]:
    return [p for p, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _tiny_fastvit():
    from timm.models.fastvit import FastVit, RepConditionalPosEnc

    return FastVit(layers=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), mlp_ratios=(2, 2, 2, 2),
                   token_mixers=("repmixer", "repmixer", "repmixer", "attention"),
                   pos_embs=(None, None, None, partial(RepConditionalPosEnc, spatial_shape=(7, 7))),
                   num_classes=10)  # fmt: skip


def _tiny_repvit():
    from timm.models.repvit import RepVit

    return RepVit(embed_dim=(16, 32, 48), depth=(1, 2, 1), num_classes=10, distillation=True)


def _tiny_levit():
    from timm.models.levit import LevitDistilled

    return LevitDistilled(img_size=64, embed_dim=(32, 48), key_dim=8, num_heads=(2, 3), depth=(1, 1), num_classes=10)


def _tiny_efficientformer():
    from timm.models.efficientformer import EfficientFormer

    return EfficientFormer(depths=(1, 1, 1, 2), embed_dims=(8, 16, 24, 32), num_vit=1, num_classes=10)


# family -> (factory of a tiny model built from the family's own timm classes, input size)
TINY = {
    "repvit": (_tiny_repvit, 64),
    "fastvit": (_tiny_fastvit, 64),
    "levit": (_tiny_levit, 64),
    "efficientformer": (_tiny_efficientformer, 224),  # its attention biases are fixed at 7x7 (224 input)
    "mobilevit": (partial(timm.create_model, "mobilevit_xxs", num_classes=10), 64),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads spin against other tenants and a
    tiny model's forward goes from milliseconds to seconds. Correctness does not depend on it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
