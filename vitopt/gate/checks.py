"""Each budget metric judged against one report row: pass, fail or (for latency) inconclusive.

Latency metrics use bootstrap intervals of the stored samples (``stats.py``): fail only when the whole
interval is past the budget, pass when all of it is within. Everything else is exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vitopt.gate.budgets import Budget
from vitopt.gate.stats import Interval, percentile_interval, ratio_interval, unpaired_ratio_interval

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


@dataclass(frozen=True)
class Check:
    target: str
    precision: str
    metric: str
    limit: float
    verdict: str
    detail: str
    value: float | None = None
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_row(row: dict, budget: Budget, *, report: dict, baseline: dict | None) -> list[Check]:
    checks = []
    for metric, limit in budget.model_dump(exclude_none=True).items():
        checks.append(_CHECKS[metric](row, limit, report=report, baseline=baseline))
    return checks


def _make(row: dict, metric: str, limit: float, verdict: str, detail: str, interval: Interval | None = None,
          value: float | None = None) -> Check:  # fmt: skip
    if interval is not None:
        value = interval.estimate
    low, high = (interval.low, interval.high) if interval else (None, None)
    return Check(row["target"], row["precision"], metric, limit, verdict, detail, value, low, high)


def _ceiling(interval: Interval, limit: float) -> str:
    """Verdict of "at most ``limit``" for a quantity known to lie within ``interval``."""
    return FAIL if interval.low > limit else PASS if interval.high <= limit else INCONCLUSIVE


def _samples(row: dict) -> list | None:
    """Fresh samples from --remeasure where taken, else the ones compress stored."""
    return row.get("remeasured_samples_ms") or row.get("latency_samples_ms")


def _latency_ceiling(q: float, metric: str):
    def check(row: dict, limit: float, **_) -> Check:
        samples = _samples(row)
        if not samples:
            return _missing(row, metric, limit, "no latency samples in the report (not benchmarked?)")
        interval = percentile_interval(samples, q)
        ci = f"95% CI {interval.low:.4g}-{interval.high:.4g}"
        detail = f"p{q:.0f} {interval.estimate:.4g} ms ({ci}), budget {limit:g}"
        return _make(row, metric, limit, _ceiling(interval, limit), detail, interval)

    return check


def _min_speedup(row: dict, limit: float, **_) -> Check:
    ours, base = row.get("latency_samples_ms"), row.get("baseline_latency_samples_ms")
    if not ours or not base:
        return _missing(row, "min_speedup", limit, "no paired latency samples in the report")
    r = ratio_interval(ours, base)  # artifact / unmodified model: speedup = 1 / ratio
    speed = Interval(1 / r.estimate, 1 / r.high, 1 / r.low)
    verdict = FAIL if speed.high < limit else PASS if speed.low >= limit else INCONCLUSIVE
    detail = f"{speed.estimate:.3f}x (95% CI {speed.low:.3f}-{speed.high:.3f}), budget >= {limit:g}x"
    return _make(row, "min_speedup", limit, verdict, detail, speed)


def _max_regression(row: dict, limit: float, *, baseline: dict | None, **_) -> Check:
    if baseline is None:
        return _missing(row, "max_regression", limit, "needs --baseline REPORT")
    before = _matching(baseline, row)
    if before is None or not _samples(before) or not _samples(row):
        return _missing(row, "max_regression", limit, "no latency samples for this target in --baseline")
    paired = before.get("remeasured_with") == row.get("remeasured_with") and row.get("remeasured_with")
    pick = ratio_interval if paired else unpaired_ratio_interval
    r = pick(_samples(row), _samples(before))
    change = Interval(r.estimate - 1, r.low - 1, r.high - 1)
    ci = f"95% CI {change.low:+.1%} to {change.high:+.1%}"
    detail = f"p50 {change.estimate:+.1%} vs baseline ({ci}), budget {limit:.0%}"
    return _make(row, "max_regression", limit, _ceiling(change, limit), detail, change)


def _max_size_mb(row: dict, limit: float, **_) -> Check:
    if row.get("size_bytes") is None:
        return _missing(row, "max_size_mb", limit, "no size in the report")
    size = row["size_bytes"] / 2**20
    return _make(row, "max_size_mb", limit, PASS if size <= limit else FAIL, f"{size:.2f} MiB, budget {limit:g}",
                 value=size)  # fmt: skip


def _max_accuracy_drop(row: dict, limit: float, *, report: dict, **_) -> Check:
    acc, base = row.get("accuracy"), report.get("baseline", {}).get("accuracy")
    if not acc or not base:
        return _missing(row, "max_accuracy_drop", limit, "no accuracy in the report (compress with --eval-data)")
    drop = base["top1"] - acc["top1"]
    detail = f"top-1 {acc['top1']:.4f} vs {base['top1']:.4f} unmodified ({drop * 100:+.2f} points)"
    detail += f", budget {limit * 100:g}"
    return _make(row, "max_accuracy_drop", limit, PASS if drop <= limit else FAIL, detail, value=drop)


def _min_top1_agreement(row: dict, limit: float, **_) -> Check:
    source = row.get("fidelity") or row.get("parity") or {}
    agreement = source.get("top1_agreement")
    if agreement is None:
        return _missing(row, "min_top1_agreement", limit, "no agreement in the report")
    verdict = PASS if agreement >= limit else FAIL
    return _make(row, "min_top1_agreement", limit, verdict, f"{agreement:.4f}, budget >= {limit:g}", value=agreement)


def _missing(row: dict, metric: str, limit: float, why: str) -> Check:
    """A budget that cannot be checked fails: a gate that skips would pass a broken pipeline."""
    return _make(row, metric, limit, FAIL, f"cannot check: {why}")


def _matching(report: dict, row: dict) -> dict | None:
    key = (row["target"], row["precision"])
    return next((r for r in report.get("artifacts", []) if (r["target"], r["precision"]) == key
                 and r.get("chosen", True)), None)  # fmt: skip


_CHECKS = {
    "p50_ms": _latency_ceiling(50, "p50_ms"), "p90_ms": _latency_ceiling(90, "p90_ms"),
    "min_speedup": _min_speedup, "max_regression": _max_regression, "max_size_mb": _max_size_mb,
    "max_accuracy_drop": _max_accuracy_drop, "min_top1_agreement": _min_top1_agreement,
}  # fmt: skip
