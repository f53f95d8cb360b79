"""``gate``: a report (and maybe an earlier one) held to budgets; ``--remeasure`` times the artifacts
again here, interleaved with the earlier report's, so a relative verdict never compares two machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitopt.errors import InputError
from vitopt.gate.budgets import Budgets, parse_budgets
from vitopt.gate.checks import FAIL, Check, check_row
from vitopt.run_files import check_against_report

MACHINE_KEYS = ("cpu_model", "threads")


def read_report(path: Path) -> dict[str, Any]:
    path = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read report {str(path)!r}: {err}",
                         hint="give a compress output folder or its report.json") from err
    if not isinstance(report, dict) or report.get("schema") != "vitopt.report/1":
        raise InputError(f"{str(path)!r} is not a vitopt report (schema vitopt.report/1)")
    _check_structure(report, path=path)
    report["_path"] = str(path)
    return report


_SECTIONS = {"model": dict, "artifacts": list, "environment": dict}
_ROW_KEYS = ("target", "precision", "status")


def _check_structure(report: dict, *, path: Path) -> None:
    """The parts every reader relies on, so an edited or truncated report is one line, not a KeyError."""
    broken = [key for key, kind in _SECTIONS.items() if not isinstance(report.get(key), kind)]
    rows = report.get("artifacts") if isinstance(report.get("artifacts"), list) else []
    broken += [f"artifacts[{i}]" for i, row in enumerate(rows) if not isinstance(row, dict)
               or not all(isinstance(row.get(k), str) for k in _ROW_KEYS)]  # fmt: skip
    if broken:
        raise InputError(f"report {str(path)!r} is damaged: {', '.join(broken)} missing or malformed",
                         hint="re-run compress to write a complete report")  # fmt: skip


def budgets_for(report: dict, budget_file: Path | None) -> Budgets:
    from vitopt.gate.budgets import load_budgets

    if budget_file is not None:
        return load_budgets(budget_file)
    inline = (report.get("recipe") or {}).get("budgets")
    if not inline:
        raise InputError("no budgets: the report's recipe has none",
                         hint="pass --budget FILE (see the README's gate section)")
    return parse_budgets(inline, source="the report's recipe")


def run_gate(*, report: dict, budgets: Budgets, baseline: dict | None = None, remeasured: bool = False) -> list[Check]:
    if baseline is not None and not remeasured:
        _same_machine(report, baseline)
    checks = []
    for key in budgets.root:
        rows = _rows_for(report, key)
        if not rows:
            checks.append(Check(*_split(key), metric="artifact", limit=0, verdict=FAIL,
                                detail=f"no shipped artifact for {key} in the report"))  # fmt: skip
        for row in rows:
            checks += _row_checks(row, budgets, report=report, baseline=baseline)
    return checks


def _row_checks(row: dict, budgets: Budgets, *, report: dict, baseline: dict | None) -> list[Check]:
    if row["status"] != "ok":
        return [Check(row["target"], row["precision"], "status", 0, FAIL, f"{row['status']}: {row.get('reason', '')}")]
    return check_row(row, budgets.for_row(row["target"], row["precision"]), report=report, baseline=baseline)


def _rows_for(report: dict, key: str) -> list[dict]:
    target, _, precision = key.partition("/")
    return [r for r in report.get("artifacts", []) if r["target"] == target and r.get("chosen", True)
            and (not precision or r["precision"] == precision)]  # fmt: skip


def _split(key: str) -> tuple[str, str]:
    target, _, precision = key.partition("/")
    return target, precision or "*"


def _same_machine(report: dict, baseline: dict) -> None:
    """Latency from two machines (CPU, ISA, threads, runtime versions) is not comparable: refused."""
    a, b = report.get("environment", {}), baseline.get("environment", {})
    diffs = [k for k in MACHINE_KEYS if a.get(k) != b.get(k)]
    diffs += ["isa"] if a.get("isa") != b.get("isa") else []
    diffs += [f"{p} version" for p in ("onnxruntime", "openvino", "coremltools", "torch")
              if (a.get("packages") or {}).get(p) != (b.get("packages") or {}).get(p)]  # fmt: skip
    if diffs:
        raise InputError(f"the report and --baseline were measured on different machines ({', '.join(diffs)} differ)",
                         hint="add --remeasure to time both here, interleaved")  # fmt: skip


def artifact_path(row: dict, report: dict, *, beside_only: bool = False) -> Path:
    """The file of the row's name beside the report (a folder moved by a CI artifact download still works),
    else the path the row recorded (unless ``beside_only``)."""
    path = Path(row["path"])
    beside = Path(report["_path"]).parent / path.name
    for found in (beside, None if beside_only else path):
        if found is not None and found.exists():
            check_against_report(found)
            return found
    raise InputError(f"artifact {row['path']!r} of {report['_path']!r} is missing", hint="re-run compress")
