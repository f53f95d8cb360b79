"""The planner (global ranking against a cost) and the saliency criteria."""

from __future__ import annotations

import timm
import torch

from vitopt.pruning import saliency
from vitopt.pruning.families import family_for
from vitopt.pruning.plan import PlanSettings, plan_step
from vitopt.pruning.vit import block_cost, read_widths, tokens
from vitopt.pruning.widths import DIMENSIONS

MULTIPLES = {"emb": 16, "heads": 1, "qk": 8, "v": 8, "mlp": 16}


def tiny_vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=3,
                             num_classes=10).eval()  # fmt: skip


def flops_of(model):
    n = tokens(model)
    return lambda w: sum(block_cost(emb=w.emb, widths=b, tokens=n)["flops"] for b in w.blocks)


def uniform_scores(model, value=1.0):
    return {k: torch.full_like(v, value) for k, v in family_for(model).unit_sums(model, lambda p: p).items()}


def test_the_plan_meets_its_target_in_multiples_and_never_empties_a_dimension():
    model = tiny_vit()
    cost, widths = flops_of(model), read_widths(model)
    settings = PlanSettings(multiples=MULTIPLES, dimensions=DIMENSIONS, eta=1.0)
    keep = plan_step(widths=widths, scores=uniform_scores(model), cost=cost, target=0.4 * cost(widths),
                     settings=settings)
    family_for(model).slice_model(model, keep)
    after = read_widths(model)
    assert cost(after) <= 0.4 * cost(widths)
    assert after.emb % 16 == 0 and all(b.mlp % 16 == 0 and b.qk % 8 == 0 and b.v % 8 == 0 for b in after.blocks)
    tiny_target = plan_step(widths=after, scores=uniform_scores(model), cost=cost, target=0, settings=settings)
    assert all(len(v) >= 1 for b in tiny_target.blocks for v in b.values()) and len(tiny_target.emb) >= 16


def test_without_cost_weight_the_least_salient_units_go_first():
    model = tiny_vit()
    scores = uniform_scores(model)
    scores["mlp", 1] = torch.arange(192, dtype=torch.float) * 1e-6  # block 1's MLP units: near-zero saliency
    cost, widths = flops_of(model), read_widths(model)
    settings = PlanSettings(multiples=MULTIPLES, dimensions=DIMENSIONS, eta=0.0)
    keep = plan_step(widths=widths, scores=scores, cost=cost, target=0.9 * cost(widths), settings=settings)
    assert torch.equal(keep.blocks[0]["mlp"], torch.arange(192))  # block 0 untouched
    removed = sorted(set(range(192)) - set(keep.blocks[1]["mlp"].tolist()))
    assert removed == list(range(len(removed))) and len(removed) % 16 == 0  # the lowest-scoring, in groups


def test_only_the_listed_dimensions_shrink():
    model = tiny_vit()
    cost, widths = flops_of(model), read_widths(model)
    settings = PlanSettings(multiples=MULTIPLES, dimensions=("mlp",), eta=1.0)
    keep = plan_step(widths=widths, scores=uniform_scores(model), cost=cost, target=0.7 * cost(widths),
                     settings=settings)
    assert len(keep.emb) == 48 and all(len(b["heads"]) == 3 and len(b["qk"]) == 16 for b in keep.blocks)


def test_hessian_saliency_is_informative_where_the_kd_gradient_vanishes():
    """Student == teacher: the KD loss is at its minimum, its gradient exactly zero; the sampled-target
    Fisher form still ranks units, and a unit whose weights are zero scores zero."""
    model, teacher = tiny_vit(), tiny_vit()
    model.blocks[0].mlp.fc1.weight.data[5] = 0
    model.blocks[0].mlp.fc1.bias.data[5] = 0
    model.blocks[0].mlp.fc2.weight.data[:, 5] = 0
    batches = [torch.randn(16, 3, 32, 32) for _ in range(3)]
    scores = saliency.estimate(model, family=family_for(model), criterion="hessian", teacher=teacher, batches=batches)
    assert scores["mlp", 0][5] == 0
    assert all(bool((s > 0).sum() > 0) for s in scores.values())
    again = saliency.estimate(model, family=family_for(model), criterion="hessian", teacher=teacher, batches=batches)
    assert all(torch.equal(scores[k], again[k]) for k in scores)  # seeded: the same decisions on a rerun


def test_magnitude_saliency_is_the_squared_norm_of_each_units_weights():
    model = tiny_vit()
    scores = saliency.estimate(model, family=family_for(model), criterion="magnitude")
    fc1, fc2 = model.blocks[1].mlp.fc1, model.blocks[1].mlp.fc2
    expected = fc1.weight.pow(2).sum(1) + fc1.bias.pow(2) + fc2.weight.pow(2).sum(0)
    assert torch.allclose(scores["mlp", 1], expected.detach())


def test_unsupported_families_get_one_line_naming_what_is_supported():
    import pytest

    from vitopt.errors import UnsupportedOptionError

    levit = timm.create_model("levit_128s", num_classes=10)
    with pytest.raises(UnsupportedOptionError, match="Levit") as err:
        family_for(levit)
    assert "VisionTransformer" in err.value.hint and "SwinTransformer" in err.value.hint
