"""``vitopt check``: will each target accept the model, and what will vitopt rewrite on export?"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from vitopt.cli import app
from vitopt.cli.options import Debug, JsonOut, ModelName, ModelOptions, model_options
from vitopt.cli.support import console, handle_errors, out, step, write_json_file

TARGET_HELP = "Target to check (repeatable; default: every target)."


@app.command()
@handle_errors
@model_options()
def check(
    model: ModelName,
    target: Annotated[Optional[list[str]], typer.Option("--target", "-t", help=TARGET_HELP)] = None,
    mobile: Annotated[bool, typer.Option("--mobile", help="Also run ONNX Runtime's mobile usability checker "
                                         "on a static ONNX export (NNAPI, Core ML EP).")] = False,
    json_out: JsonOut = None, debug: Debug = False, model_options: ModelOptions = ModelOptions(),
) -> None:  # fmt: skip
    """Trace the model once and list, per target, what it rejects and the rewrites vitopt applies.

    Exit code 0 when every target accepts the model (possibly after vitopt's rewrites), 1 when
    some target would reject it, 2 for bad input.
    """
    from vitopt.convertibility import blockers, check_targets
    from vitopt.formats import FORMATS

    targets = target or FORMATS.names()
    for name in targets:
        FORMATS.get(name)  # an unknown target fails here, with a did-you-mean
    loaded = model_options.load(model)
    with step("tracing the model and asking each target"):
        findings = check_targets(module=loaded.module, spec=loaded.spec, targets=targets)
    probed = {name for name in targets if FORMATS.get(name).probe}
    out.print(_table(findings, model=loaded.spec.name, probed=probed))
    result = {t: [f.to_dict() for f in fs] for t, fs in findings.items()}
    if mobile:
        from vitopt.bundle.mobile import check_module

        with step("exporting a static ONNX graph and running ONNX Runtime's mobile checker"):
            result["mobile"] = check_module(loaded.module, spec=loaded.spec)
        out.print(_mobile_table(result["mobile"]))
    if json_out:
        write_json_file(json_out, result)
    blocked = blockers(findings)
    if blocked:
        console.print(f"[bold red]not convertible for {', '.join(blocked)}[/]: see the rows marked 'rejects'")
        raise typer.Exit(1)


def _table(findings: dict, *, model: str, probed: set[str]) -> Table:
    table = Table(title=f"convertibility of {model}", show_lines=False)
    for column in ("target", "verdict", "op / pattern", "where and why", "what vitopt does"):
        table.add_column(column, overflow="fold")
    for target, items in findings.items():
        if not items:
            why = "nothing this target rejects" if target in probed else "no rules for this target: export will tell"
            table.add_row(target, "ok" if target in probed else "not probed", "-", why, "-")
        for f in items:
            verdict = "[red]rejects[/]" if f.blocking else "[yellow]rewritten[/]"
            table.add_row(target, verdict, f.op, f.detail, f.rewrite or "[red]nothing: it blocks the export[/]")
    return table


def _mobile_table(verdicts: dict) -> Table:
    table = Table(title="ONNX Runtime mobile checker (static ONNX export)")
    for column in ("execution provider", "verdict", "partitions", "nodes it runs", "operators it cannot run"):
        table.add_column(column, overflow="fold")
    for ep, v in verdicts.items():
        if isinstance(v, dict):
            ops = ", ".join(o.split(":")[-1] for o in v["unsupported_ops"]) or "-"
            table.add_row(ep, v["verdict"], str(v["partitions"]), f"{v['supported_nodes']}/{v['nodes']}", ops)
    if "error" in verdicts:
        table.add_row("-", "[red]checker failed[/]", "-", "-", verdicts["error"])
    return table
