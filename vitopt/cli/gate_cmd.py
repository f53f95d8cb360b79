"""``vitopt gate``: hold a compress report to latency, size and accuracy budgets (exit 1 on a violation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitopt.cli import app
from vitopt.cli.options import Debug, JsonOut, Threads
from vitopt.cli.support import console, handle_errors, step


@app.command()
@handle_errors
def gate(
    report: Annotated[Path, typer.Argument(help="A compress output folder or its report.json.")],
    baseline: Annotated[Optional[Path], typer.Option(help="An earlier report, for max_regression.")] = None,
    budget: Annotated[Optional[Path], typer.Option(help="Budget YAML (default: the recipe's budgets).")] = None,
    remeasure: Annotated[bool, typer.Option(
        "--remeasure", help="Time the artifacts (and --baseline's) again here, interleaved.")] = False,
    min_time: Annotated[float, typer.Option(min=0.1, help="Seconds of timed runs with --remeasure.")] = 5.0,
    junit: Annotated[Optional[Path], typer.Option(help="Write JUnit XML here.")] = None,
    threads: Threads = None, json_out: JsonOut = None, debug: Debug = False,
) -> None:  # fmt: skip
    """Check REPORT against budgets: exit 0 within them (inconclusive allowed), 1 when one is violated."""
    from vitopt.bench import BenchSettings
    from vitopt.environment import default_threads
    from vitopt.gate import output
    from vitopt.gate.checks import FAIL
    from vitopt.gate.gate import budgets_for, read_report, run_gate

    the_report = read_report(report)
    earlier = read_report(baseline) if baseline else None
    budgets = budgets_for(the_report, budget)
    if remeasure:
        from vitopt.gate.remeasure import remeasure as run_remeasure

        settings = BenchSettings(warmup=10, min_runs=50, min_time_s=min_time, threads=threads or default_threads())
        with step("re-measuring the artifacts, interleaved"):
            run_remeasure(the_report, earlier, settings=settings)
    checks = run_gate(report=the_report, budgets=budgets, baseline=earlier, remeasured=remeasure)
    typer.echo(output.table(checks) + output.github_annotations(checks), nl=False)
    if junit:
        output.junit(checks, path=junit, name=the_report["model"]["name"])
    if json_out:
        output.write_json(checks, path=json_out, context={"report": the_report["_path"], "remeasured": remeasure})
    console.print(output.summary(checks))
    if any(c.verdict == FAIL for c in checks):
        raise typer.Exit(1)
