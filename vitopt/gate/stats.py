"""Bootstrap confidence intervals for latency verdicts.

A shared CI runner's latency samples are skewed and drift; a single p50 compared with a budget
flakes. The gate instead resamples the timed calls (4,000 resamples, seeded, so the same report
always gets the same verdict) and judges the whole 95% interval: fail only when all of it is past
the budget, pass when all of it is within, inconclusive when it straddles. A ratio of an artifact
to its baseline resamples *rounds*: call k of both was timed in the same interleaved round, so
their drift cancels in the ratio (a paired bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES, CONFIDENCE, SEED, CHUNK = 4_000, 0.95, 0, 250


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def _bounds(values: np.ndarray, estimate: float) -> Interval:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def _resampled(n: int, statistic, rng) -> np.ndarray:
    """``statistic(indices)`` over RESAMPLES index draws, in chunks (thousands of samples per report)."""
    out = [statistic(rng.integers(0, n, size=(CHUNK, n))) for _ in range(RESAMPLES // CHUNK)]
    return np.concatenate(out)


def percentile_interval(samples, q: float) -> Interval:
    """The ``q``-th percentile of ``samples`` (ms) with its bootstrap interval."""
    x = np.asarray(samples, dtype=np.float64)
    values = _resampled(len(x), lambda idx: np.percentile(x[idx], q, axis=1), np.random.default_rng(SEED))
    return _bounds(values, np.percentile(x, q))


def ratio_interval(numerator, denominator) -> Interval:
    """median(numerator) / median(denominator), resampled in pairs (call k of both: the same round)."""
    n = min(len(numerator), len(denominator))
    a, b = np.asarray(numerator[:n], dtype=np.float64), np.asarray(denominator[:n], dtype=np.float64)
    ratio = lambda idx: np.median(a[idx], axis=1) / np.median(b[idx], axis=1)  # noqa: E731
    return _bounds(_resampled(n, ratio, np.random.default_rng(SEED)), np.median(a) / np.median(b))


def unpaired_ratio_interval(numerator, denominator) -> Interval:
    """As ``ratio_interval`` for samples of different runs (no shared rounds): each side resampled alone."""
    a, b = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    rng = np.random.default_rng(SEED)
    ma = _resampled(len(a), lambda idx: np.median(a[idx], axis=1), rng)
    mb = _resampled(len(b), lambda idx: np.median(b[idx], axis=1), rng)
    return _bounds(ma / mb, np.median(a) / np.median(b))
