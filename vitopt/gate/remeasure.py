"""``--remeasure``: the report's shipped artifacts (and the --baseline report's same targets) timed again on
this machine, interleaved in one run, so a relative verdict compares like with like."""

from __future__ import annotations

import uuid

import numpy as np

from vitopt.bench import BenchSettings, measure_interleaved
from vitopt.errors import InputError
from vitopt.formats import format_for_path
from vitopt.gate.gate import artifact_path


def remeasure(report: dict, baseline: dict | None, *, settings: BenchSettings) -> None:
    """Adds ``remeasured_samples_ms`` (and a shared ``remeasured_with`` id) to every shipped, ok row."""
    rows = [("new", r, report) for r in _shipped(report)]
    if baseline is not None:
        keys = {(r["target"], r["precision"]) for _, r, _ in rows}
        rows += [("old", r, baseline) for r in _shipped(baseline) if (r["target"], r["precision"]) in keys]
    if not rows:
        return
    runners = {f"{side}:{r['target']}:{r['precision']}": _runner(r, owner, settings) for side, r, owner in rows}
    x = np.zeros(report["model"]["input_shape"], dtype=np.float32)
    stats = measure_interleaved({k: (lambda r=r: r.run(x)) for k, r in runners.items()}, settings=settings)
    run_id = uuid.uuid4().hex[:12]
    for side, row, _ in rows:
        row["remeasured_samples_ms"] = list(stats[f"{side}:{row['target']}:{row['precision']}"].samples)
        row["remeasured_with"] = run_id


def _shipped(report: dict) -> list[dict]:
    return [r for r in report.get("artifacts", []) if r["status"] == "ok" and r.get("chosen", True) and r.get("path")]


def _runner(row: dict, report: dict, settings: BenchSettings):
    path = artifact_path(row, report)
    fmt = format_for_path(path)
    reason = fmt.runner_class().unavailable_reason() if fmt else "unknown format"
    if reason:
        raise InputError(f"cannot re-measure {row['target']} {row['precision']} here: {reason}",
                         hint="gate without --remeasure, or on a machine with that runtime")  # fmt: skip
    return fmt.open_runner(path, threads=settings.threads)
