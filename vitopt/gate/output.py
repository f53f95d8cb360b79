"""What a gate prints and writes: a table, JUnit XML for CI systems, GitHub Actions annotations, JSON."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from vitopt.gate.checks import FAIL, INCONCLUSIVE, Check
from vitopt.publish import write_atomic


def table(checks: list[Check]) -> str:
    rows = [("target", "metric", "verdict", "detail")]
    rows += [(f"{c.target} {c.precision}", c.metric, c.verdict.upper() if c.verdict == FAIL else c.verdict, c.detail)
             for c in checks]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]).rstrip() for r in rows) + "\n"


def summary(checks: list[Check]) -> str:
    counts = {v: sum(c.verdict == v for c in checks) for v in ("pass", FAIL, INCONCLUSIVE)}
    return f"{counts['pass']} passed, {counts[FAIL]} failed, {counts[INCONCLUSIVE]} inconclusive"


def junit(checks: list[Check], *, path: Path, name: str) -> None:
    """One test case per check; a failure is <failure>, an inconclusive latency verdict is <skipped>."""
    suite = ET.Element("testsuite", name=f"vitopt gate: {name}", tests=str(len(checks)),
                       failures=str(sum(c.verdict == FAIL for c in checks)),
                       skipped=str(sum(c.verdict == INCONCLUSIVE for c in checks)))  # fmt: skip
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"{c.target}.{c.precision}", name=c.metric)
        if c.verdict == FAIL:
            ET.SubElement(case, "failure", message=c.detail).text = c.detail
        elif c.verdict == INCONCLUSIVE:
            ET.SubElement(case, "skipped", message=f"inconclusive: {c.detail}")
    write_atomic(path, ET.tostring(ET.ElementTree(suite).getroot(), encoding="unicode", xml_declaration=True) + "\n")


def github_annotations(checks: list[Check]) -> str:
    """``::error``/``::warning`` lines, printed when ``GITHUB_ACTIONS`` is set."""
    if not os.environ.get("GITHUB_ACTIONS"):
        return ""
    kinds = {FAIL: "error", INCONCLUSIVE: "warning"}
    return "".join(f"::{kinds[c.verdict]} title=vitopt gate {c.target} {c.precision} {c.metric}::{c.detail}\n"
                   for c in checks if c.verdict in kinds)  # fmt: skip


def write_json(checks: list[Check], *, path: Path, context: dict) -> None:
    write_atomic(path, json.dumps({**context, "checks": [c.to_dict() for c in checks]}, indent=2) + "\n")
