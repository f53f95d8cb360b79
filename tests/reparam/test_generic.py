"""The generic fold on modules it has never seen: what folds, what is refused and why, and the module it returns."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from tests.reparam import blocks
from tests.reparam.conftest import batch_norms, randomize_bn
from vitopt.reparam import reparameterize


def fold(module: nn.Module, x: torch.Tensor, **kwargs):
    module = randomize_bn(module.eval())
    with torch.no_grad():
        expected = module(x)
    result = reparameterize(module, images=x, **kwargs)
    with torch.no_grad():
        torch.testing.assert_close(result.module(x), expected, rtol=1e-4, atol=1e-4)
    return result


def left_reasons(details: dict, kind: str = "batchnorm") -> dict[str, str]:
    return {e["module"]: e["reason"] for e in details["left"] if e["kind"] == kind}


IMAGE = torch.randn(4, 8, 12, 12)


@pytest.mark.parametrize("groups", [1, 2, 8])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_batchnorm_folds_in_place_keeping_names(groups, bias):
    result = fold(blocks.conv_bn(groups=groups, bias=bias), IMAGE)
    assert result.details["folds"] == {"conv_bn": 1}
    assert isinstance(result.module[1], nn.Identity) and set(result.module.state_dict()) == {"0.weight", "0.bias"}
    assert result.details["batchnorm"] == {"before": 1, "after": 0, "folded": 1}


def test_linear_batchnorm_through_a_reshape():
    result = fold(blocks.LinearNormTokens(), torch.randn(2, 5, 8))
    assert result.details["folds"] == {"linear_bn": 1} and not batch_norms(result.module)


def test_batchnorm_into_the_linear_after_flatten_and_transpose():
    result = fold(blocks.NormThenTokenLinear(), IMAGE)
    assert result.details["folds"] == {"bn_linear": 1} and not batch_norms(result.module)


def test_repvgg_block_becomes_one_conv():
    result = fold(nn.Sequential(blocks.RepVggDw()), IMAGE)
    merged = result.module[0]
    assert type(merged) is nn.Conv2d and merged.kernel_size == (3, 3) and merged.groups == 8
    assert result.details["folds"] == {"branches": 1}
    (merge,) = result.details["merged_branches"]
    assert merge["module"] == "0" and merge["kernels"] == ["1x1", "3x3", "identity"] and merge["batch_norms"] == 2


def test_mobileone_block_keeps_its_activation():
    result = fold(nn.Sequential(blocks.MobileOneLike()), IMAGE)
    block = result.module[0]
    assert list(dict(block.named_children())) == ["reparam_conv", "act"] and block.reparam_conv.groups == 2
    assert result.details["folds"] == {"branches": 1} and result.details["batchnorm"]["after"] == 0


def test_repmixer_with_a_layer_scale_becomes_one_depthwise_conv():
    result = fold(nn.Sequential(blocks.RepMixerLike()), IMAGE)
    assert type(result.module[0]) is nn.Conv2d and result.module[0].groups == 8


def test_distilled_heads_merge_into_one_linear():
    model = blocks.DistilledHeads()
    result = fold(model, torch.randn(4, 3, 16, 16))
    assert result.details["folds"] == {"conv_bn": 1, "heads": 1}
    linears = [m for m in result.module.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    assert result.details["graph_rewrites"] == ["(model)"]  # the average is in the model's own forward
    assert {"stem.0.weight", "stem.0.bias"} <= set(result.module.state_dict())


def test_a_rewritten_forward_still_calls_the_blocks_no_fold_reaches():
    result = fold(blocks.DistilledHeadsWithCache(), torch.randn(4, 3, 16, 16))
    assert result.details["folds"] == {"conv_bn": 1, "heads": 1}
    body = result.module.body
    assert type(body) is blocks.CachedBias
    called = {n.target for n in result.module.graph.nodes if n.op == "call_module"}
    assert {"stem", "body"} <= called  # kept as modules, not inlined into the graph
    before = body.gathers
    with torch.no_grad():
        result.module(torch.randn(2, 3, 16, 16))
    assert body.gathers == before  # the block's own eval-mode cache still serves the call


def test_layer_scale_folds_into_the_projection():
    result = fold(blocks.LayerScaleMlp(), torch.randn(2, 5, 8))
    assert result.details["folds"] == {"scale": 1}
    assert "ls" not in dict(result.module.named_parameters())


def test_non_linear_op_between_branches_is_refused_and_reported():
    result = fold(blocks.NonLinearBetweenBranches(), IMAGE)
    assert result.details["folds"] == {"conv_bn": 2}
    (reason,) = left_reasons(result.details, "branches").values()
    assert "relu" in reason and "not linear" in reason


def test_strided_identity_is_refused():
    result = fold(blocks.StridedIdentity(), IMAGE)
    assert result.details["folds"] == {"conv_bn": 1}
    (reason,) = left_reasons(result.details, "branches").values()
    assert "a strided slice" in reason


def test_identity_next_to_a_stride_two_conv_is_refused():
    result = fold(blocks.StrideTwoWithIdentity(), torch.randn(2, 8, 1, 1))
    assert result.details["folds"] == {"conv_bn": 1}
    (reason,) = left_reasons(result.details, "branches").values()
    assert "stride-2" in reason and "only stride 1 folds" in reason


def test_model_in_training_mode_is_refused_unchanged():
    model = randomize_bn(nn.Sequential(blocks.RepVggDw())).train()
    result = reparameterize(model, images=IMAGE)
    assert "training mode" in result.details["refused"] and len(batch_norms(result.module)) == 2
    assert result.module is not model


def test_batchnorm_in_training_mode_inside_an_eval_model_stays():
    model = randomize_bn(blocks.conv_bn()).eval()
    model[1].train()  # batch statistics: outputs depend on the batch, not on a fixed affine map
    result = reparameterize(model, images=IMAGE)
    assert "training mode" in left_reasons(result.details)["1"]


def test_batchnorm_without_running_statistics_stays():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, track_running_stats=False)).eval()
    result = reparameterize(model, images=IMAGE)
    assert "running statistics" in left_reasons(result.details)["1"]


def test_shared_conv_is_never_edited():
    result = fold(blocks.SharedConv(), IMAGE)
    reasons = left_reasons(result.details)
    assert set(reasons) == {"bn1", "bn2"} and all("runs 2 times" in r for r in reasons.values())


def test_batchnorm_before_a_zero_padded_conv_stays():
    result = fold(blocks.NormBeforePaddedConv(), IMAGE)
    assert "zero-pads" in left_reasons(result.details)["bn"]


def test_tied_parameters_are_never_edited():
    model = nn.Sequential(blocks.conv_bn(), blocks.conv_bn())
    model[1][0].weight = model[0][0].weight
    result = fold(model, IMAGE)
    assert result.details["folds"] == {} and all("tied" in r for r in left_reasons(result.details).values())


def test_include_kinds_limits_the_folds():
    result = fold(nn.Sequential(blocks.RepVggDw()), IMAGE, include_kinds=["conv_bn"])
    assert result.details["folds"] == {"conv_bn": 1}
    assert any("include_kinds" in e["reason"] for e in result.details["left"])


def test_untraceable_block_is_reported_and_its_neighbours_still_fold():
    model = nn.Sequential(blocks.conv_bn(), blocks.Untraceable())
    result = fold(model, IMAGE, strategy="generic")
    assert result.details["folds"] == {"conv_bn": 1} and "1" in result.details["untraceable"]
    assert "cannot trace" in left_reasons(result.details)["1.bn"]


def test_untraceable_block_folds_itself_through_the_protocol():
    model = nn.Sequential(blocks.conv_bn(), blocks.UntraceableReparameterizable())
    result = fold(model, IMAGE)  # strategy auto: the block's own reparameterize(), checked on real inputs
    assert result.details["native"] == {"UntraceableReparameterizable.reparameterize": 1}
    assert result.details["folds"] == {"conv_bn": 1} and not batch_norms(result.module)


def test_input_module_is_not_mutated():
    model = randomize_bn(nn.Sequential(blocks.conv_bn(), blocks.RepVggDw(), blocks.MobileOneLike())).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reparameterize(model, images=IMAGE)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_fold_that_changes_the_function_fails_verification(monkeypatch):
    from vitopt.errors import VerificationError
    from vitopt.reparam import expr

    real = expr.bn_diag
    monkeypatch.setattr(expr, "bn_diag", lambda stats, eps: real(stats, eps=eps * 100 + 0.5))
    model = randomize_bn(nn.Sequential(blocks.conv_bn(), nn.ReLU(), blocks.conv_bn())).eval()
    with pytest.raises(VerificationError, match="first differing module: 0"):
        reparameterize(model, images=IMAGE)


TOKENS = torch.randn(2, 5, 8)


@pytest.mark.parametrize("keywords", [{"bias": None}, {"bias": None, "double": True}])
def test_a_rewritten_child_takes_the_keywords_its_parent_passes(keywords):
    result = fold(blocks.CallsWithKeywords(blocks.LayerScaleMlpWithOptions(), **keywords), TOKENS)
    assert result.details["folds"] == {"scale": 1} and result.details["graph_rewrites"] == ["child"]
    child = result.module.child
    assert list(inspect.signature(child.forward).parameters) == ["x", "bias", "double"]
    double = keywords.get("double", False)
    for other in ({"bias": torch.ones(8), "double": double}, {"bias": None, "double": not double}):
        with pytest.raises(AssertionError, match="specialized"):  # traced as constants: other values are refused
            child(TOKENS, **other)


def test_a_merged_block_its_parent_calls_with_a_keyword_is_rewritten_not_replaced_by_a_conv():
    result = fold(blocks.CallsWithKeywords(blocks.RepVggDwWithBias(), bias=None), IMAGE)
    assert result.details["folds"] == {"branches": 1} and result.details["graph_rewrites"] == ["child"]
    assert [type(m) for m in result.module.child.children()] == [nn.Conv2d]


def test_a_child_whose_parameters_a_trace_would_reorder_stays_unrewritten():
    result = fold(blocks.CallsWithKeywords(blocks.LayerScaleMlpWithExtras(), double=True), TOKENS)
    assert result.details["folds"] == {} and type(result.module.child) is blocks.LayerScaleMlpWithExtras
    (reason,) = [e["reason"] for e in result.details["left"]]
    assert "would change how it is called" in reason and "forward(x, *extra, double=False)" in reason


def test_scalars_under_a_pass_through_fold_into_the_layer_outside_their_module():
    # MetaFormer's StarReLU: one-element scale and bias (no channel axis of their own) reach fc2 through a Dropout
    # and an Identity, and sit in the activation module, not in the MLP that holds fc2
    result = fold(nn.Sequential(blocks.StarReLUMlp()), IMAGE)
    assert result.details["folds"] == {"scale": 2} and result.details["graph_rewrites"] == ["0"]
    assert set(result.module.state_dict()) == {"0.fc1.weight", "0.fc1.bias", "0.fc2.weight", "0.fc2.bias"}


def test_a_right_fold_in_a_model_that_amplifies_rounding_is_proven_in_float64():
    model = randomize_bn(blocks.AmplifiesRounding()).eval()
    result = reparameterize(model, images=IMAGE)
    check = result.details["verification"]
    assert result.details["folds"] == {"conv_bn": 1, "scale": 1} and check["passed"] and check["precision"] == "float64"
    assert check["max_abs_diff"] > 1e-3  # fp32 rounding alone, amplified: no fp32 check could pass
    assert check["rounding"]["float64"]["max_abs_diff"] < 1e-6
    assert check["rounding"]["folded_fp32_error"] < 8 * check["rounding"]["model_fp32_error"]


def test_a_wrong_fold_in_a_model_that_amplifies_rounding_still_fails(monkeypatch):
    from vitopt.errors import VerificationError
    from vitopt.reparam import expr

    real = expr.bn_diag
    monkeypatch.setattr(expr, "bn_diag", lambda stats, eps: real(stats, eps=eps * 100 + 0.5))
    model = randomize_bn(blocks.AmplifiesRounding()).eval()
    with pytest.raises(VerificationError, match="not rounding: in float64 the folded model differs too"):
        reparameterize(model, images=IMAGE)


def test_a_fold_that_rounds_worse_than_the_model_fails(monkeypatch):
    from vitopt.errors import VerificationError
    from vitopt.reparam import precision

    monkeypatch.setattr(precision, "ROUNDING_SLACK", 0.0)  # any fp32 rounding error at all counts as worse
    model = randomize_bn(blocks.AmplifiesRounding()).eval()
    with pytest.raises(VerificationError, match="not rounding: the folded model rounds worse"):
        reparameterize(model, images=IMAGE)


def test_a_wrong_fold_is_not_blamed_on_the_batchnorm_it_folded_away(monkeypatch):
    from vitopt.errors import VerificationError
    from vitopt.reparam import expr

    real = expr.bn_diag
    monkeypatch.setattr(expr, "bn_diag", lambda stats, eps: real(stats, eps=eps * 100 + 0.5))
    # bn_conv: the BatchNorm "0" now returns its input, as it should; the first wrong output is the ReLU's
    model = randomize_bn(nn.Sequential(nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3))).eval()
    with pytest.raises(VerificationError, match="first differing module: 2;"):
        reparameterize(model, images=IMAGE)
