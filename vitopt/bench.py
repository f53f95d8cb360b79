"""Latency measurement that holds up on a noisy, shared machine.

Why interleave: CI runners and laptops are shared and drift. Another tenant, a frequency
governor or a heating chip can slow the machine by 10-30 % for seconds at a time. If the
baseline is timed first and the candidate afterwards, that drift lands entirely on one side
and shows up as a fake speedup (or slowdown). :func:`measure_interleaved` runs every
candidate once per round and rotates who goes first, so drift, thermal throttling and
cache warmth are shared evenly and a speedup is a same-run ratio.

Why p50 is the headline: latency samples are skewed to the right (a preemption or a page
fault adds milliseconds, nothing subtracts them). The median ignores those rare stalls,
while the mean absorbs them; p90/p99 and the coefficient of variation are kept to show
how noisy the run was.

What interleaving cannot fix: oversubscription (more runnable threads than cores). Then a
call longer than a scheduler slice (a few ms) is often preempted mid-call and waits
for whole slices, so its p50 can jump several-fold while a shorter call's does not (measured
here on 2 cores with 2 busy-loops: a 2 ms vs 4 ms pair read as 6x instead of 2x). A high
cv or p90/p50 flags such a run; benchmark on an otherwise idle machine.

Numbers are per call: with ``batch_size > 1`` one call processes a whole batch.
``threads`` and ``batch_size`` are recorded, not applied: the runtime that built ``fn``
owns its thread pool and its input shape.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitopt.errors import InputError, RunError

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies in milliseconds, plus how they were measured."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    cv: float
    min: float
    runs: int
    total_s: float
    threads: int | None
    batch_size: int
    samples: tuple[float, ...] = ()  # every timed call in order (ms): what a noise-aware gate resamples

    @classmethod
    def from_samples(
        cls, samples_ms: Any, *, threads: int | None, batch_size: int
    ) -> LatencyStats:
        """Summarise per-call latencies (ms); ``total_s`` is the sum of the timed calls."""
        samples = np.asarray(samples_ms, dtype=np.float64)
        if samples.ndim != 1 or samples.size == 0:
            raise InputError("latency statistics need at least one sample")
        p50, p90, p99 = np.percentile(samples, [50, 90, 99])
        mean = float(samples.mean())
        # Sample std (ddof=1) estimates run-to-run spread; one sample has no spread.
        std = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
        return cls(
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=mean,
            std=std,
            cv=std / mean if mean > 0 else 0.0,
            min=float(samples.min()),
            runs=int(samples.size),
            total_s=float(samples.sum()) / 1000.0,
            threads=threads,
            batch_size=batch_size,
            samples=tuple(round(float(x), 4) for x in samples),
        )

    @property
    def images_per_s(self) -> float:
        """Throughput at the median latency: images (batch items) per second."""
        return self.batch_size * 1000.0 / self.p50 if self.p50 > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view; latencies in ms rounded to 4 decimals (0.1 µs)."""
        ms = {
            k: round(getattr(self, k), 4)
            for k in ("p50", "p90", "p99", "mean", "std", "min")
        }
        return {
            **ms,
            "cv": round(self.cv, 4),
            "runs": self.runs,
            "total_s": round(self.total_s, 4),
            "threads": self.threads,
            "batch_size": self.batch_size,
            "images_per_s": round(self.images_per_s, 2),
        }


@dataclass(frozen=True)
class BenchSettings:
    """How long to measure.

    Timing stops once both ``min_runs`` and ``min_time_s`` are reached; ``max_runs`` and
    ``max_time_s`` are safety caps so a slow model cannot hang CI, and win over the minimums.
    """

    warmup: int = 5
    min_runs: int = 30
    min_time_s: float = 2.0
    max_runs: int = 10_000
    max_time_s: float = 120.0
    threads: int | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_runs < 1 or self.batch_size < 1:
            raise InputError(
                "bench settings need warmup >= 0, min_runs >= 1, batch_size >= 1"
            )
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1 or None, got {self.threads}")
        if self.min_time_s < 0 or self.max_runs < self.min_runs:
            raise InputError(
                "bench settings need min_time_s >= 0 and max_runs >= min_runs"
            )
        if self.max_time_s < self.min_time_s:
            raise InputError("bench settings need max_time_s >= min_time_s")


def measure(fn: Callable[[], object], *, settings: BenchSettings) -> LatencyStats:
    """Time ``fn()`` after warm-up until min_runs and min_time_s are both reached (or a cap)."""
    return measure_interleaved({"candidate": fn}, settings=settings)["candidate"]


def measure_interleaved(
    fns: dict[str, Callable[[], object]], *, settings: BenchSettings
) -> dict[str, LatencyStats]:
    """Time several candidates in one run, round-robin with a rotating order.

    Each round calls every candidate once; round ``r`` starts with candidate ``r mod n``, so
    none always goes first. Time budgets (min and max) scale with the number of candidates,
    so each one gets about what :func:`measure` would give it alone.
    """
    if not fns:
        raise InputError("measure_interleaved needs at least one candidate")
    names = list(fns)
    _warm_up(fns, names=names, warmup=settings.warmup)
    samples_ns = _timed_rounds(fns, names=names, settings=settings)
    return {
        name: LatencyStats.from_samples(
            np.asarray(samples_ns[name], dtype=np.float64) / _NS_PER_MS,
            threads=settings.threads,
            batch_size=settings.batch_size,
        )
        for name in names
    }


def speedup(*, baseline: LatencyStats, candidate: LatencyStats) -> float:
    """How many times faster the candidate is at the median: baseline.p50 / candidate.p50."""
    if candidate.p50 <= 0:
        raise RunError("cannot compute a speedup: candidate median latency is zero")
    return baseline.p50 / candidate.p50


def _warm_up(
    fns: dict[str, Callable[[], object]], *, names: list[str], warmup: int
) -> None:
    # Warm-up absorbs one-off costs (lazy init, JIT, allocator growth, cold caches) that
    # would otherwise inflate the first samples.
    for _ in range(warmup):
        for name in names:
            fns[name]()
    # Collect now so garbage left by warm-up is not paid for inside a timed call.
    gc.collect()


def _timed_rounds(
    fns: dict[str, Callable[[], object]], *, names: list[str], settings: BenchSettings
) -> dict[str, list[int]]:
    samples: dict[str, list[int]] = {name: [] for name in names}
    start = time.perf_counter_ns()
    rounds = 0
    while not _done(
        rounds=rounds,
        elapsed_ns=time.perf_counter_ns() - start,
        settings=settings,
        candidates=len(names),
    ):
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_time_call(fns[name]))
        rounds += 1
    return samples


def _time_call(fn: Callable[[], object]) -> int:
    before = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - before


def _done(
    *, rounds: int, elapsed_ns: int, settings: BenchSettings, candidates: int
) -> bool:
    # Every candidate runs once per round, so rounds == runs per candidate.
    if rounds == 0:
        return False  # always at least one sample, even if a cap is tiny
    elapsed_s = elapsed_ns / _NS_PER_S
    if rounds >= settings.max_runs or elapsed_s >= settings.max_time_s * candidates:
        return True
    return rounds >= settings.min_runs and elapsed_s >= settings.min_time_s * candidates
