"""The floor of the precision choice is applied exactly as the recipe writes it."""

from __future__ import annotations

from vitopt.recipe import QuantizeSettings
from vitopt.select import choose


def _row(precision: str, *, p50: float, top1: float) -> dict:
    return {"target": "openvino", "precision": precision, "status": "ok", "latency_ms": {"p50": p50},
            "accuracy": {"top1": top1, "n_images": 2000}}  # fmt: skip


def test_a_drop_of_exactly_the_allowed_point_holds_the_floor():
    # Swin reference, bench/bench_quant.py: fp32 0.6670, int8 0.6570 is 0.01000000000000001 below in floats.
    rows = choose([_row("fp32", p50=2.946, top1=0.667), _row("int8", p50=2.342, top1=0.657)],
                  settings=QuantizeSettings(max_accuracy_drop=0.01))  # fmt: skip
    assert [r["precision"] for r in rows if r["chosen"]] == ["int8"]


def test_a_drop_past_the_floor_or_a_gain_under_min_gain_keeps_fp32():
    below = choose([_row("fp32", p50=3.0, top1=0.70), _row("int8", p50=2.0, top1=0.6899)],
                   settings=QuantizeSettings(max_accuracy_drop=0.01))  # fmt: skip
    assert [r["chosen"] for r in below] == [True, False] and "below the floor" in below[1]["selection"]
    marginal = choose([_row("fp32", p50=3.0, top1=0.70), _row("int8", p50=2.9, top1=0.70)],
                      settings=QuantizeSettings(min_gain=0.05))  # fmt: skip
    assert [r["chosen"] for r in marginal] == [True, False] and "required gain" in marginal[1]["selection"]
