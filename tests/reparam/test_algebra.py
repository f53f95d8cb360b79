"""The tensor algebra against the nn modules it replaces, on randomised BatchNorms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.reparam.conftest import randomize_bn
from vitopt.reparam.algebra import (
    ConvTerm,
    Diag,
    FoldRefused,
    bn_diag,
    conv_term,
    diag_as_conv,
    linear_term,
    pad_kernel,
    regroup,
    scale_input,
    scale_output,
)
from vitopt.reparam.merge import conv_module, linear_module, merge_conv, merge_linear, plan_conv


def _bn(n: int, dims: int = 2, seed: int = 0, affine: bool = True) -> nn.Module:
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    return randomize_bn(cls(n, affine=affine, eps=1e-3).eval(), seed=seed)


def _diag(bn: nn.Module) -> Diag:
    stats = {k: getattr(bn, k) for k in ("running_mean", "running_var", "weight", "bias")}
    return bn_diag(stats, eps=bn.eps)


def _conv(module: nn.Conv2d) -> ConvTerm:
    return conv_term(module, padding=module.padding)


@pytest.mark.parametrize("groups", [1, 2, 8])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_conv_then_batchnorm(groups, bias, affine):
    conv, bn = nn.Conv2d(8, 16, 3, padding=1, groups=groups, bias=bias), _bn(16, affine=affine)
    x = torch.randn(2, 8, 9, 9)
    fused = conv_module(scale_output(_conv(conv), _diag(bn)), like=conv)
    torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_conv1d_then_batchnorm1d():
    conv, bn = nn.Conv1d(4, 6, 3, padding=1), _bn(6, dims=1)
    x = torch.randn(3, 4, 11)
    fused = conv_module(scale_output(_conv(conv), _diag(bn)), like=conv)
    torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
def test_batchnorm_then_linear(bias):
    bn, linear = _bn(12, dims=1), nn.Linear(12, 5, bias=bias)
    x = torch.randn(7, 12)
    fused = linear_module(scale_input(linear_term(linear), _diag(bn)), like=linear)
    torch.testing.assert_close(fused(x), linear(bn(x)), rtol=1e-5, atol=1e-5)


def test_linear_then_batchnorm_on_tokens():
    linear, bn = nn.Linear(12, 6, bias=False), _bn(6, dims=1)
    x = torch.randn(2, 5, 12)
    fused = linear_module(scale_output(linear_term(linear), _diag(bn)), like=linear)
    expected = bn(linear(x).flatten(0, 1)).reshape(2, 5, 6)  # LeViT's LinearNorm
    torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 4])
def test_batchnorm_then_unpadded_conv(groups):
    bn, conv = _bn(8), nn.Conv2d(8, 12, 1, groups=groups)
    x = torch.randn(2, 8, 5, 5)
    fused = conv_module(scale_input(_conv(conv), _diag(bn)), like=conv)
    torch.testing.assert_close(fused(x), conv(bn(x)), rtol=1e-5, atol=1e-5)


def test_batchnorm_before_padded_conv_is_refused():
    bn, conv = _bn(8), nn.Conv2d(8, 8, 3, padding=1)
    with pytest.raises(FoldRefused, match="padding"):
        scale_input(_conv(conv), _diag(bn))


def test_pad_kernel_centres_and_refuses_even_in_odd():
    k = torch.arange(4.0).reshape(1, 1, 2, 2)
    with pytest.raises(FoldRefused):
        pad_kernel(k, (3, 3))
    one = torch.ones(2, 1, 1, 1)
    assert pad_kernel(one, (3, 3))[:, :, 1, 1].eq(1).all() and pad_kernel(one, (3, 3)).sum() == 2


def test_regroup_is_the_same_convolution():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    dense = nn.Conv2d(8, 8, 3, padding=1, groups=2)
    with torch.no_grad():
        dense.weight.copy_(regroup(conv.weight, 8, 2))
        dense.bias.copy_(conv.bias)
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(dense(x), conv(x))


@pytest.mark.parametrize("groups", [1, 4, 8])
def test_identity_as_a_kernel(groups):
    like = _conv(nn.Conv2d(8, 8, 3, padding=1, groups=groups))
    diag = Diag(torch.rand(8, dtype=torch.float64) + 0.5, torch.randn(8, dtype=torch.float64))
    conv = conv_module(diag_as_conv(diag, like=like), like=nn.Conv2d(8, 8, 3))
    x = torch.randn(2, 8, 5, 5)
    expected = x * diag.s.float().view(1, -1, 1, 1) + diag.t.float().view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_repvgg_depthwise_block_merges_into_one_conv():
    """y = BN2(BN1(DW3x3(x)) + DW1x1(x) + x): ALGORITHMS.md's RepViT token mixer."""
    c = 8
    dw3, bn1 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), _bn(c, seed=1)
    dw1, bn2 = nn.Conv2d(c, c, 1, groups=c), _bn(c, seed=2)
    x = torch.randn(2, c, 7, 7)
    merged = merge_conv([(1.0, scale_output(_conv(dw3), _diag(bn1))), (1.0, _conv(dw1)), (1.0, Diag.identity(c))])
    fused = conv_module(scale_output(merged, _diag(bn2)), like=dw3)
    assert fused.kernel_size == (3, 3) and fused.groups == c
    torch.testing.assert_close(fused(x), bn2(bn1(dw3(x)) + dw1(x) + x), rtol=1e-5, atol=1e-5)


def test_mobileone_branches_with_different_groups_and_subtraction():
    dense = nn.Conv2d(8, 8, 3, padding=1, groups=2)
    scale_branch, bn = nn.Conv2d(8, 8, 1, groups=8), _bn(8, seed=3)
    x = torch.randn(1, 8, 6, 6)
    merged = merge_conv([(1.0, _conv(dense)), (-1.0, _conv(scale_branch)), (1.0, _diag(bn))])
    fused = conv_module(merged, like=dense)
    assert fused.groups == 2
    torch.testing.assert_close(fused(x), dense(x) - scale_branch(x) + bn(x), rtol=1e-5, atol=1e-5)


def test_two_linear_heads_average_into_one():
    bn_a, bn_b = _bn(6, dims=1, seed=4), _bn(6, dims=1, seed=5)
    head_a, head_b = nn.Linear(6, 3), nn.Linear(6, 3)
    x = torch.randn(4, 6)
    merged = merge_linear([(0.5, scale_input(linear_term(head_a), _diag(bn_a))),
                           (0.5, scale_input(linear_term(head_b), _diag(bn_b)))])  # fmt: skip
    fused = linear_module(merged, like=head_a)
    torch.testing.assert_close(fused(x), (head_a(bn_a(x)) + head_b(bn_b(x))) / 2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("convs", "identity", "match"),
    [
        ([nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 1, stride=1)], False, "stride"),
        ([nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 1, stride=2)], True, "stride-2"),
        ([nn.Conv2d(8, 8, 3, padding=0), nn.Conv2d(8, 8, 1)], False, "centre"),
        ([nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.Conv2d(8, 8, 3, padding=1)], False, "dilation"),
        ([nn.Conv2d(8, 16, 3, padding=1)], True, "input as output channels"),
    ],
)
def test_branches_that_cannot_share_a_kernel_are_refused(convs, identity, match):
    with pytest.raises(FoldRefused, match=match):
        plan_conv([_conv(c) for c in convs], identity=identity)


def test_float64_folding_keeps_fp32_error_at_rounding_level():
    conv, bn = nn.Conv2d(64, 64, 3, padding=1), _bn(64)
    with torch.no_grad():
        bn.running_var.mul_(1e-3)  # large scales amplify any float32 rounding in the fold
    x = torch.randn(1, 64, 8, 8)
    fused = conv_module(scale_output(_conv(conv), _diag(bn)), like=conv)
    reference = bn.double()(conv.double()(x.double()))
    assert (fused(x).double() - reference).abs().max() <= 1e-5 * reference.abs().max()
