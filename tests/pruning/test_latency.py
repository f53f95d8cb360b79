"""The latency lookup table: interpolation, a real measurement on ONNX Runtime, and its cache."""

from __future__ import annotations

import numpy as np
import pytest

import vitopt.pruning.latency_measure as latency_measure
from vitopt.models import load_model
from vitopt.pruning.families import family_for
from vitopt.pruning.latency import Grid, grid_levels, interpolate
from vitopt.pruning.widths import BlockWidths, Widths
from vitopt.recipe import Target

FAST_ONNX = Target(format="onnx", options={"exporter": "torchscript", "simplify": False})


def test_interpolation_is_exact_on_a_linear_function_inside_and_beyond_the_grid():
    axes = [[1, 3, 7], [10, 20]]
    values = np.array([[2 * a + 0.5 * b for b in axes[1]] for a in axes[0]])
    for point in ([2, 15], [7, 20], [0, 5], [9, 30]):  # inside, on a corner, below and above the edges
        assert interpolate(values, axes, point) == pytest.approx(2 * point[0] + 0.5 * point[1])


def test_grid_levels_are_multiples_and_end_at_the_full_width():
    widths = Widths(emb=192, blocks=(BlockWidths(heads=3, qk=64, v=64, mlp=768),))
    levels = grid_levels(widths, multiples={"emb": 16, "qk": 8, "v": 8, "mlp": 16}, points=3)
    assert levels["emb"][-1] == 192 and all(x % 16 == 0 for x in levels["emb"])
    assert levels["heads"] == [1, 2, 3] and levels["mlp"][-1] == 768 and len(levels["qk"]) == 3


def _tiny():
    model = load_model(name="vitopt/tiny-vit")
    return model, family_for(model.module)


def _table(model, family, *, target=FAST_ONNX, threads=1):
    return latency_measure.latency_table(model.module, family=family, spec=model.spec, target=target,
                                         threads=threads, multiples={"emb": 16, "qk": 8, "v": 8, "mlp": 16},
                                         points=2)  # fmt: skip


@pytest.mark.slow
def test_a_measured_table_predicts_the_whole_model_and_shrinks_with_widths():
    model, family = _tiny()
    grid, cached = _table(model, family)
    assert not cached
    full = family.read_widths(model.module)
    small = Widths(emb=32, blocks=tuple(BlockWidths(heads=1, qk=8, v=8, mlp=48) for _ in full.blocks))
    assert grid.model_ms(full) > 0 and grid.stem_ms >= 0
    assert grid.model_ms(small) < grid.model_ms(full)


def test_the_cache_is_reused_and_invalidated_when_its_key_changes(monkeypatch, isolated_latency_cache):
    calls = []

    def fake_measure(model, *, levels, **_):
        calls.append(1)
        shape = lambda dims: [len(levels[d]) for d in dims]  # noqa: E731
        return Grid(levels=levels, attn=np.ones(shape(("emb", "heads", "qk", "v"))),
                    mlp=np.ones(shape(("emb", "mlp"))), stem_ms=0.5)  # fmt: skip

    monkeypatch.setattr(latency_measure, "_measure_grid", fake_measure)
    model, family = _tiny()
    assert _table(model, family)[1] is False and _table(model, family)[1] is True
    assert len(calls) == 1
    _table(model, family, threads=2)  # another thread count: another table
    import vitopt.environment as environment

    real = environment.describe_environment
    monkeypatch.setattr(environment, "describe_environment",
                        lambda **kw: {**real(**kw), "cpu_model": "another CPU"})  # fmt: skip
    _table(model, family)
    assert len(calls) == 3
    assert len(list(isolated_latency_cache.glob("*.json"))) == 3
