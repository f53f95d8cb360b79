"""Choosing a target's precision by measurement: the fastest candidate that holds the accuracy floor.

The floor is ``max_accuracy_drop`` (top-1 on labelled images, against the float candidate) when
the run has labels, else ``min_top1_agreement`` with the float model on the verification images.
A lower precision replaces fp32 only when it is measurably faster (``min_gain``, a ratio of
medians taken in the same interleaved run): int8 is never assumed faster. Where the runtime cannot
run here, nothing can be measured and the format's default precision is kept, saying so.
"""

from __future__ import annotations

from typing import Any

from vitopt.artifacts import FAILED_STATUSES
from vitopt.formats import FORMATS
from vitopt.recipe import QuantizeSettings

# Accuracies are ratios of counts: 0.667 - 0.657 is 0.01000000000000001 in floats, which must meet a
# floor of 0.01 (1 point) exactly as the user wrote it.
EPSILON = 1e-9


def choose(rows: list[dict[str, Any]], *, settings: QuantizeSettings, isa: str = "") -> list[dict[str, Any]]:
    """The rows with ``chosen`` and ``selection`` (why chosen, or why not) filled in; ``isa`` (the CPU's
    instruction sets that decide int8 speed) is written next to the decision."""
    reference = next((r for r in rows if r["precision"] == "fp32"), rows[0])
    verdicts = [_floor(row, reference=reference, settings=settings) for row in rows]
    eligible = [r for r, why in zip(rows, verdicts, strict=True) if why is None and r.get("latency_ms")]
    chosen = _fastest(eligible, reference=reference, settings=settings) if eligible else _default(rows)
    on = f" on {isa}" if isa and chosen.get("latency_ms") else ""
    return [{**row, "chosen": row is chosen, "selection": _why(row, chosen, why, reference, settings)
             + (on if row is chosen else "")} for row, why in zip(rows, verdicts, strict=True)]  # fmt: skip


def _floor(row: dict, *, reference: dict, settings: QuantizeSettings) -> str | None:
    """Why ``row`` is not a candidate at all (failed, or below the accuracy floor), or None."""
    if row["status"] in FAILED_STATUSES:
        return f"{row['status']}: see its reason"
    acc, ref_acc = row.get("accuracy"), reference.get("accuracy")
    if acc and ref_acc:
        drop = ref_acc["top1"] - acc["top1"]
        return None if drop <= settings.max_accuracy_drop + EPSILON else (
            f"below the floor: top-1 {acc['top1']:.4f} is {drop * 100:.2f} points under fp32's "
            f"(allowed {settings.max_accuracy_drop * 100:.2f})")  # fmt: skip
    agreement = (row.get("parity") or {}).get("top1_agreement")
    if agreement is not None and agreement < settings.min_top1_agreement - EPSILON:
        return f"below the floor: top-1 agreement {agreement:.3f} < {settings.min_top1_agreement}"
    return None


def _fastest(eligible: list[dict], *, reference: dict, settings: QuantizeSettings) -> dict:
    best = min(eligible, key=lambda r: r["latency_ms"]["p50"])
    if reference in eligible and best is not reference:
        gain = reference["latency_ms"]["p50"] / best["latency_ms"]["p50"] - 1
        if gain < settings.min_gain:
            return reference
    return best


def _default(rows: list[dict]) -> dict:
    """Nothing measured here: the format's default precision, if it was built and verified."""
    default = FORMATS.get(rows[0]["target"]).default_precision
    usable = [r for r in rows if r["status"] not in FAILED_STATUSES]
    return next((r for r in usable if r["precision"] == default), usable[0] if usable else rows[0])


def _why(row: dict, chosen: dict, floor: str | None, reference: dict, settings: QuantizeSettings) -> str:
    if floor is not None:
        return floor
    lat, ref = row.get("latency_ms"), reference.get("latency_ms")
    if row is chosen:
        if not lat:
            return "nothing could be measured on this machine: the format's default precision is kept"
        return "fastest within the floor" + (f" ({ref['p50'] / lat['p50']:.2f}x fp32's median)" if ref else "")
    if not lat:
        return "not measured on this machine (see its reason)"
    ratio = ref["p50"] / lat["p50"] if ref else None
    if chosen is reference and ratio and ratio > 1:
        return f"{ratio:.2f}x fp32's median, under the required gain of {settings.min_gain:.0%}"
    return f"slower than {chosen['precision']} ({lat['p50']:.3f} vs {chosen['latency_ms']['p50']:.3f} ms median)"
