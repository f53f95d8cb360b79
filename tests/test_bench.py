"""Tests for vitopt.bench: statistics, stopping rules, interleaving and a real 2x ratio."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from vitopt.bench import (
    BenchSettings,
    LatencyStats,
    measure,
    measure_interleaved,
    speedup,
)
from vitopt.errors import InputError

FAST = BenchSettings(
    warmup=0, min_runs=1, min_time_s=0.0, max_runs=10_000, max_time_s=1.0
)


def test_from_samples_percentiles_on_known_samples():
    stats = LatencyStats.from_samples(np.arange(1, 101), threads=2, batch_size=4)
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.mean == pytest.approx(50.5)
    assert stats.std == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert stats.cv == pytest.approx(stats.std / stats.mean)
    assert (stats.min, stats.runs, stats.threads, stats.batch_size) == (1.0, 100, 2, 4)
    assert stats.total_s == pytest.approx(5050 / 1000)


def test_from_samples_single_sample_has_no_spread_and_empty_is_rejected():
    stats = LatencyStats.from_samples([3.0], threads=None, batch_size=1)
    assert (stats.p50, stats.std, stats.cv) == (3.0, 0.0, 0.0)
    with pytest.raises(InputError):
        LatencyStats.from_samples([], threads=None, batch_size=1)


def test_to_dict_rounds_to_four_decimals_and_is_json_ready():
    stats = LatencyStats.from_samples([1.234567, 1.234567], threads=None, batch_size=2)
    data = stats.to_dict()
    assert data["p50"] == 1.2346 and data["min"] == 1.2346
    assert data["images_per_s"] == pytest.approx(2 * 1000 / 1.234567, abs=0.01)
    json.dumps(data)


def test_measure_stops_at_min_runs_when_time_is_not_required():
    calls = []
    settings = BenchSettings(warmup=3, min_runs=50, min_time_s=0.0, max_time_s=1.0)
    stats = measure(lambda: calls.append(1), settings=settings)
    assert stats.runs == 50
    assert len(calls) == 3 + 50  # warm-up calls are made but not timed


def test_measure_keeps_going_until_min_time_is_reached():
    settings = BenchSettings(warmup=0, min_runs=3, min_time_s=0.05, max_time_s=1.0)
    start = time.perf_counter()
    stats = measure(lambda: time.sleep(0.001), settings=settings)
    assert time.perf_counter() - start >= 0.05
    assert stats.runs > 3  # 3 sleeps of 1 ms cannot fill 50 ms
    assert stats.p50 >= 1.0 and stats.total_s >= 0.04


def test_measure_max_runs_cap_wins_over_min_time():
    settings = BenchSettings(
        warmup=0, min_runs=5, min_time_s=10.0, max_runs=20, max_time_s=20.0
    )
    stats = measure(lambda: None, settings=settings)
    assert stats.runs == 20
    assert stats.total_s < settings.min_time_s, "stopped at max_runs, not after min_time_s"


def test_measure_max_time_cap_wins_over_min_runs():
    settings = BenchSettings(
        warmup=0, min_runs=1000, max_runs=1000, min_time_s=0.0, max_time_s=0.1
    )
    stats = measure(lambda: time.sleep(0.005), settings=settings)
    # each run sleeps >= 5 ms, so a 0.1 s cap allows at most ~20 runs, however loaded the machine
    assert 1 <= stats.runs <= 21


def test_settings_reject_contradictory_values():
    for bad in (
        {"min_runs": 0},
        {"warmup": -1},
        {"batch_size": 0},
        {"threads": 0},
        {"min_runs": 50, "max_runs": 10},
        {"min_time_s": 5.0, "max_time_s": 1.0},
    ):
        with pytest.raises(InputError):
            BenchSettings(**bad)


def test_interleaved_gives_every_candidate_min_runs_and_rotates_order():
    order: list[str] = []
    fns = {name: (lambda n=name: order.append(n)) for name in ("a", "b", "c")}
    settings = BenchSettings(warmup=0, min_runs=12, min_time_s=0.0, max_time_s=1.0)
    results = measure_interleaved(fns, settings=settings)
    assert {name: s.runs for name, s in results.items()} == {"a": 12, "b": 12, "c": 12}
    rounds = [order[i : i + 3] for i in range(0, len(order), 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)  # each runs once per round
    firsts = [r[0] for r in rounds]
    assert {firsts.count(name) for name in fns} == {4}  # each goes first equally often


def test_interleaved_two_candidates_alternate_who_goes_first():
    order: list[str] = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    measure_interleaved(
        fns, settings=BenchSettings(warmup=2, min_runs=10, min_time_s=0.0)
    )
    timed = order[4:]  # 2 warm-up rounds of 2 calls
    assert [timed[i] for i in range(0, len(timed), 2)] == ["a", "b"] * 5


def test_interleaved_rejects_no_candidates():
    with pytest.raises(InputError):
        measure_interleaved({}, settings=FAST)


def test_speedup_is_ratio_of_medians():
    slow = LatencyStats.from_samples([4.0, 4.0, 40.0], threads=None, batch_size=1)
    fast = LatencyStats.from_samples([2.0, 2.0, 2.0], threads=None, batch_size=1)
    assert speedup(baseline=slow, candidate=fast) == pytest.approx(2.0)


def test_same_run_ratio_detects_a_real_2x_difference():
    # ~0.6 ms per call here: short enough to stay inside one scheduler slice, so the test
    # holds even when other jobs oversubscribe the cores (2 ms calls read as 6x then).
    data = np.random.default_rng(0).random(100_000)

    def work() -> float:
        return float(np.sin(data).sum())

    def work_twice() -> float:
        return work() + work()

    settings = BenchSettings(warmup=3, min_runs=20, min_time_s=0.2, max_time_s=2.0)
    results = measure_interleaved(
        {"once": work, "twice": work_twice}, settings=settings
    )
    ratio = speedup(baseline=results["twice"], candidate=results["once"])
    assert 1.5 <= ratio <= 2.7, results
