"""The Core ML graph rewrites compute exactly what the original graph computed (pure torch)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vitopt.backends.coreml.rewrites import MAX_RANK, _rank, prepare_program

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
    assert log.permutes_lowered == 2 and log.rolls_as_slices == 1 and log.above_rank_5 == []
    assert max(_rank(n) for n in program.graph.nodes) <= MAX_RANK
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
    assert not log.changed and log.counts() == {"aliases_dropped": 0, "rolls_as_slices": 0, "permutes_lowered": 0}
