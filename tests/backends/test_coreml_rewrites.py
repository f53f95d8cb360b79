"""The Core ML graph rewrites compute exactly what the original graph computed (pure torch)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vitopt.backends.coreml.rank_lowering import MAX_RANK, rank_of
from vitopt.backends.coreml.rewrites import prepare_program

from .families import FAMILIES, load_family


class Windows(nn.Module):
    """Swin's window partition then reverse, with a cyclic shift in between: rank-6 views."""

    def __init__(self, window: int, shifts: tuple[int, int]) -> None:
        super().__init__()
        self.window, self.shifts = window, shifts

    def forward(self, x):  # x: B, H, W, C
        b, h, w, c = x.shape
        s = self.window
        parts = x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, c)
        parts = torch.roll(parts * 2 + 1, shifts=self.shifts, dims=(1, 2))
        back = parts.view(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        return back


@pytest.mark.parametrize("shifts", [(1, 2), (-3, 5), (0, 4), (9, -9)])
def test_windows_and_rolls_rewritten_give_identical_outputs(shifts):
    module, x = Windows(4, shifts).eval(), torch.randn(2, 8, 12, 5)
    program, log = prepare_program(module, example=x)
    assert log.rank_ops["aten.permute"] == 2 and log.rolls_as_slices == 1 and log.above_rank_5 == []
    assert max(rank_of(n) for n in program.graph.nodes) <= MAX_RANK
    assert not any("roll" in str(n.target) for n in program.graph.nodes)
    assert torch.equal(program.module()(x), module(x))


def test_swin_rewritten_is_the_same_function():
    swin = load_family(*next(row for row in FAMILIES if row[0] == "swin")[1:])
    x = torch.randn(swin.spec.batch_shape(1))
    program, log = prepare_program(swin.module.eval(), example=x)
    assert log.changed and log.above_rank_5 == []
    with torch.no_grad():
        assert torch.equal(program.module()(x), swin.module(x))


def test_a_model_without_the_patterns_is_left_alone():
    _, log = prepare_program(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval(), example=torch.randn(1, 3, 2, 2))
    assert not log.changed and not any(log.counts().values())


class Resize(nn.Module):
    """A bicubic resize (coremltools has no converter for it), as timm's position-embedding resampling does."""

    def __init__(self, mode: str = "bicubic", **kwargs) -> None:
        super().__init__()
        self.mode, self.kwargs = mode, kwargs

    def forward(self, x):
        return torch.nn.functional.interpolate(x * 2, mode=self.mode, **self.kwargs) + 1


@pytest.mark.parametrize("kwargs", [{"size": (11, 5), "align_corners": False}, {"size": (3, 17), "align_corners": True},
                                    {"scale_factor": 2.0, "align_corners": False},
                                    {"scale_factor": (0.5, 1.5), "align_corners": False}])  # fmt: skip
@pytest.mark.parametrize(("mode", "antialias"), [("bicubic", False), ("bicubic", True), ("bilinear", True)])
def test_bicubic_and_antialiased_resizes_become_matmuls_within_float_rounding(kwargs, mode, antialias):
    module, x = Resize(mode, antialias=antialias, **kwargs).eval(), torch.randn(2, 3, 7, 9)
    program, log = prepare_program(module, example=x)
    assert log.resizes_as_matmuls == 1
    assert not any("upsample" in str(n.target) for n in program.graph.nodes if n.op == "call_function")
    assert torch.allclose(program.module()(x), module(x), atol=1e-5, rtol=0)


class ResizingClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 12 * 12, 5)

    def forward(self, x):
        return self.head(torch.nn.functional.interpolate(self.conv(x), size=(12, 12), mode="bicubic").flatten(1))


@pytest.mark.coreml
def test_a_model_with_a_bicubic_resize_converts_to_core_ml(tmp_path):
    from vitopt.convertibility import check_targets
    from vitopt.formats import FORMATS
    from vitopt.spec import ModelSpec

    module, spec = ResizingClassifier().eval(), ModelSpec(name="resizing", input_size=(3, 8, 8), num_classes=5)
    (finding,) = [f for f in check_targets(module=module, spec=spec, targets=["coreml"])["coreml"]
                  if "bicubic" in f.op]  # fmt: skip
    assert finding.rewrite and "matmul" in finding.rewrite  # a rewrite, not a blocker
    fmt = FORMATS.get("coreml")
    artifact = fmt.exporter_class()(fmt=fmt, precision="fp32", options={}).export(module, spec=spec, staging=tmp_path,
                                                                                  calibration=None)  # fmt: skip
    fmt.validator_function()(artifact.main, spec=spec, precision="fp32")


class ScatteredPermute(nn.Module):
    """A rank-6/7 view permuted so that no two dims move together (more than five runs)."""

    def __init__(self, shape: tuple[int, ...], perm: tuple[int, ...]) -> None:
        super().__init__()
        self.shape, self.perm = shape, perm

    def forward(self, x):
        return (x + 1).view(self.shape).permute(self.perm).reshape(x.shape[0], -1) * 2


@pytest.mark.parametrize(("shape", "perm"), [((2, 3, 2, 5, 2, 3), (5, 3, 1, 4, 0, 2)),
                                             ((2, 2, 3, 2, 3, 2), (1, 0, 3, 2, 5, 4)),
                                             ((2, 3, 2, 2, 3, 2, 2), (6, 4, 2, 0, 5, 3, 1))])  # fmt: skip
def test_a_scattered_permute_above_rank_5_runs_as_rank_5_transpositions(shape, perm):
    module, x = ScatteredPermute(shape, perm).eval(), torch.randn(shape[0], *shape[1:]).reshape(shape[0], -1)
    program, log = prepare_program(module, example=x)
    assert log.rank_ops["aten.permute"] == 1 and log.above_rank_5 == []
    assert max(rank_of(n) for n in program.graph.nodes) <= MAX_RANK
    assert torch.equal(program.module()(x), module(x))


def test_swaps_compose_to_the_permutation():
    from vitopt.backends.coreml.transpositions import swaps_for

    for perm in ([5, 3, 1, 4, 0, 2], [6, 4, 2, 0, 5, 3, 1], [0, 1, 2]):
        order = list(range(len(perm)))
        for i, j in swaps_for(perm):
            order[i], order[j] = order[j], order[i]
        assert order == perm


class ScatteringClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scatter, self.head = ScatteredPermute((1, 3, 2, 4, 2, 4), (5, 3, 1, 4, 0, 2)), nn.Linear(192, 5)

    def forward(self, x):
        return self.head(self.scatter(x.reshape(x.shape[0], -1)))


@pytest.mark.coreml
def test_a_scattered_rank_6_permute_converts_and_validates(tmp_path):
    from vitopt.formats import FORMATS
    from vitopt.spec import ModelSpec

    module, spec = ScatteringClassifier().eval(), ModelSpec(name="scatter", input_size=(3, 8, 8), num_classes=5)
    fmt = FORMATS.get("coreml")
    artifact = fmt.exporter_class()(fmt=fmt, precision="fp32", options={}).export(module, spec=spec, staging=tmp_path,
                                                                                  calibration=None)  # fmt: skip
    fmt.validator_function()(artifact.main, spec=spec, precision="fp32")  # checks no tensor above rank 5


class HighRankOps(nn.Module):
    """Ops above rank 5 that are not reshape -> permute: broadcasting elementwise ops against a rank-6 or
    rank-7 parameter and a low-rank tensor, softmax, a reduction, a slice, a permute of a computed (not
    reshaped) tensor, an expand, a cat, then back to rank 2."""

    def __init__(self, shape: tuple[int, ...], scale_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape
        self.scale = nn.Parameter(torch.rand(scale_shape) + 0.5)
        self.bias = nn.Parameter(torch.randn(shape[-2], shape[-1]))
        self.linear, self.norm = nn.Linear(shape[-1], shape[-1]), nn.LayerNorm(shape[-1])

    def forward(self, x):
        y = x.view(self.shape) * self.scale + self.bias  # rank-6/7 broadcasts (parameter and rank-2 tensor)
        y = torch.where(y > 0, y, y * 0.1).softmax(dim=2)
        y = self.norm(self.linear(y))  # over the last dim, with every leading dim a row
        y = y.permute(*reversed(range(y.dim()))).contiguous()
        y = y - y.mean(dim=(1, 3), keepdim=True).transpose(0, -1).transpose(0, -1)
        y = torch.cat([y, y[..., :1].expand(*y.shape[:-1], 2)], dim=-1)
        first, second = y.unbind(1)[:2]  # rank-7 input: pieces above rank 5 themselves
        y = y + (first * second).unsqueeze(1)
        return y.sum(dim=-1).reshape(x.shape[0], -1)


@pytest.mark.parametrize(("shape", "scale_shape"), [((2, 2, 3, 2, 2, 5), (1, 2, 1, 2, 1, 1)),
                                                    ((2, 3, 2, 2, 3, 2, 4), (1, 3, 1, 2, 1, 2, 1)),
                                                    ((2, 2, 2, 2, 2, 2, 2), (2, 1, 2, 1, 2, 1, 1))])  # fmt: skip
def test_rank_6_and_7_ops_are_lowered_and_compute_exactly_the_same(shape, scale_shape):
    module = HighRankOps(shape, scale_shape).eval()
    x = torch.randn(shape[0], math.prod(shape[1:]))
    program, log = prepare_program(module, example=x)
    assert log.above_rank_5 == [] and max(rank_of(n) for n in program.graph.nodes) <= MAX_RANK
    lowered = {"aten.mul", "aten.add", "aten.where", "aten.softmax", "aten.mean", "aten.cat", "aten.unbind"}
    assert lowered <= set(log.rank_ops)
    with torch.no_grad():
        assert torch.equal(program.module()(x), module(x))


def test_broadcast_dims_merge_by_pattern():
    from vitopt.backends.coreml.rank_ops import broadcast_groups

    # out [2,3,4,5,6,7]; operand broadcast over dims 1 and 4: runs {0}, {1}, {2,3}, {4}, {5}
    assert broadcast_groups([2, 3, 4, 5, 6, 7], [[2, 1, 4, 5, 1, 7]]) == [[0], [1], [2, 3], [4], [5]]
    # size-1 output dims hold no elements: they join no run
    assert broadcast_groups([2, 1, 3, 1, 4, 5], [[2, 1, 3, 1, 4, 5], [5]]) == [[0, 2, 4], [5]]


class UnloweredHighRank(nn.Module):
    def forward(self, x):  # a rank-6 flip: no rule lowers it (it stays, and is reported)
        return x.view(1, 2, 2, 2, 2, -1).flip(2).reshape(1, -1)


def test_a_high_rank_op_without_a_rule_stays_and_is_named():
    module, x = UnloweredHighRank().eval(), torch.randn(1, 32)
    program, log = prepare_program(module, example=x)
    assert any("aten.flip" in name for name in log.above_rank_5)
    assert torch.equal(program.module()(x), module(x))


class UnbindThenView(nn.Module):
    """Hiera's pattern: a rank-7 permute unbound into rank-6 pieces, each viewed at rank 7 and reduced."""

    def forward(self, x):
        q, _, v = x.view(2, 3, 2, 4, 2, 3, 4).permute(1, 0, 2, 3, 4, 5, 6).unbind(0)
        pooled = q.reshape(2, 2, 4, 2, 3, 2, 2).amax(dim=-1) + v.reshape(2, 2, 4, 2, 3, 2, 2).sum(dim=-1)
        return pooled.reshape(2, -1)


def test_pieces_of_an_unbind_above_rank_5_are_lowered_too():
    module, x = UnbindThenView().eval(), torch.randn(2, 3 * 2 * 4 * 2 * 3 * 4)
    program, log = prepare_program(module, example=x)
    assert log.above_rank_5 == [] and max(rank_of(n) for n in program.graph.nodes) <= MAX_RANK
    assert {"aten.unbind", "aten.amax", "aten.sum"} <= set(log.rank_ops)
    assert torch.equal(program.module()(x), module(x))


class Unfolds(nn.Module):
    """HaloNet's pattern: overlapping windows by ``Tensor.unfold`` along H then W (rank 5, then 6)."""

    def forward(self, x):  # [B, C, H, W]
        windows = torch.nn.functional.pad(x, (1, 1, 1, 1)).unfold(2, 4, 2).unfold(3, 4, 2)
        return (windows * 2).amax(dim=(-1, -2)) + windows.mean(dim=-1).sum(dim=-1)


def test_unfold_becomes_static_slices_and_the_rank_6_result_is_lowered():
    module, x = Unfolds().eval(), torch.randn(2, 3, 8, 10)
    program, log = prepare_program(module, example=x)
    assert log.unfolds_as_slices == 2 and log.above_rank_5 == []
    assert not any("unfold" in str(n.target) for n in program.graph.nodes)
    assert max(rank_of(n) for n in program.graph.nodes) <= MAX_RANK
    assert torch.equal(program.module()(x), module(x))


class OverlappingFold(nn.Module):
    """VOLO's outlook attention folds overlapping windows back (coremltools takes only stride >= kernel)."""

    def __init__(self, stride: int, dilation: int) -> None:
        super().__init__()
        self.stride, self.dilation = stride, dilation

    def forward(self, x):  # [B, C, H, W]
        size, kw = x.shape[-2:], dict(kernel_size=3, padding=1, stride=self.stride, dilation=self.dilation)
        columns = torch.nn.functional.unfold(x, **kw) * 2 + 1
        return torch.nn.functional.fold(columns, output_size=size, **kw)


@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2)])
def test_overlapping_fold_becomes_padded_adds(stride, dilation):
    module, x = OverlappingFold(stride, dilation).eval(), torch.randn(2, 3, 9, 8)
    program, log = prepare_program(module, example=x)
    assert log.folds_as_pads == 1
    assert not any("col2im" in str(n.target) for n in program.graph.nodes)
    assert torch.allclose(program.module()(x), module(x), atol=1e-6, rtol=0)
