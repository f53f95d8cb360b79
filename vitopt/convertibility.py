"""Will a target accept this model? Trace once, ask each target's probe, list what it rejects.

``vitopt check`` and ``compress`` (before any pass runs) call :func:`check_targets`. Each
format row names a probe ``probe(program, *, spec) -> list[Finding]`` that reads the one
``torch.export`` graph: a finding with a ``rewrite`` is something vitopt fixes on export
(and says how); one without is a blocker, and compress stops before hours of work.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from vitopt.errors import UnsupportedOptionError, one_line
from vitopt.spec import ModelSpec


@dataclass(frozen=True)
class Finding:
    target: str
    op: str  # the aten op or graph pattern concerned
    detail: str  # where and why: node names, shapes, the target's limit
    rewrite: str | None = None  # what vitopt does about it on export; None: nothing can, it is a blocker

    @property
    def blocking(self) -> bool:
        return self.rewrite is None

    def to_dict(self) -> dict:
        return {**asdict(self), "blocking": self.blocking}


def trace_for_check(module: nn.Module, *, spec: ModelSpec) -> torch.export.ExportedProgram:
    """One ``torch.export`` trace (batch 2, eval mode) in the ATen dialect, functional but not
    decomposed: the graph the Core ML exporter converts. A probe that reasons about the core
    ATen op set reads :func:`core_aten` of it."""
    return export_aten(module.eval(), example=torch.zeros(spec.batch_shape(2)))


def export_aten(module: nn.Module, *, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of an eval-mode module, functionalised ATen dialect (no decomposition)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.export.export(module, (example,), strict=False).run_decompositions({})


def check_targets(*, module: nn.Module, spec: ModelSpec, targets: list[str]) -> dict[str, list[Finding]]:
    """Findings per target name; targets without a probe get an empty list."""
    from vitopt.formats import FORMATS

    probes = {name: FORMATS.get(name).probe_function() for name in targets}
    if not any(probes.values()):
        return {name: [] for name in targets}
    try:
        program = trace_for_check(module, spec=spec)
    except Exception as err:  # torch.export raises many error types; the cause is what matters
        return {name: [_untraceable(name, err)] for name in targets if probes[name]} | {
            name: [] for name in targets if not probes[name]
        }
    return {name: (probe(program, spec=spec) if probe else []) for name, probe in probes.items()}


def _untraceable(target: str, err: Exception) -> Finding:
    reason = one_line(err)
    return Finding(target=target, op="torch.export", detail=f"the model cannot be traced: {reason}",
                   rewrite="the exporter falls back to its tracing path; the check could not look inside")  # fmt: skip


def blockers(findings: dict[str, list[Finding]]) -> dict[str, list[Finding]]:
    return {t: [f for f in fs if f.blocking] for t, fs in findings.items() if any(f.blocking for f in fs)}


def raise_on_blockers(findings: dict[str, list[Finding]]) -> None:
    """Fail fast, naming every op each target rejects."""
    blocked = blockers(findings)
    if not blocked:
        return
    lines = [f"{t}: {f.op} ({f.detail})" for t, fs in blocked.items() for f in fs]
    raise UnsupportedOptionError(
        "the model cannot be converted for " + ", ".join(blocked) + ": " + "; ".join(lines),
        hint="run `vitopt check MODEL --target T` for the full list, or drop that target",
    )


def core_aten(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """The program decomposed to the core ATen op set, computed once and shared by the probes
    whose op tables are written in core ATen (ONNX export and OpenVINO decompose to it)."""
    if not hasattr(program, "_vitopt_core_aten"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program._vitopt_core_aten = program.run_decompositions()
    return program._vitopt_core_aten


def aten_nodes(program: torch.export.ExportedProgram):
    """(node, op name like 'aten.roll') for every operator call in the traced graph."""
    for node in program.graph.nodes:
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            yield node, f"{node.target.namespace}.{node.target._opname}"


def summarise(nodes: list, limit: int = 3) -> str:
    """A few node names, enough to find the layers in the model."""
    names = [n.name for n in nodes[:limit]]
    return ", ".join(names) + (f" and {len(nodes) - limit} more" if len(nodes) > limit else "")
