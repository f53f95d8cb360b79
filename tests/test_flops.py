"""FLOPs and params counting (torch.utils.flop_counter) on models whose forward trips the counter's hooks."""

from __future__ import annotations

import timm
import torch

from vitopt.flops import count_flops, model_cost


def test_cait_class_attention_is_counted_and_parameters_still_train():
    # CaiT expands its class-token parameter under no_grad: a view that requires grad without a grad_fn,
    # which the counter's module tracker used to assert on.
    model = timm.create_model("cait_xxs24_224", depth=1, depth_token_only=1, img_size=32, patch_size=8,
                              embed_dim=48, num_heads=2, num_classes=10).eval()  # fmt: skip
    cost = model_cost(model, input_size=(3, 32, 32))
    assert cost.flops > 0 and cost.params == sum(p.numel() for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_flops_scale_with_a_linear_layers_size():
    small, large = torch.nn.Linear(8, 4), torch.nn.Linear(16, 4)
    assert count_flops(small, input_shape=(2, 8)) == 2 * 2 * 8 * 4
    assert count_flops(large, input_shape=(2, 16)) == 2 * count_flops(small, input_shape=(2, 8))
