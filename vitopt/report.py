"""The report: one versioned JSON document and a Markdown summary of it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from vitopt import __version__
from vitopt.artifacts import FAILED_STATUSES
from vitopt.environment import describe_environment, summary_line
from vitopt.flops import FLOPS_CONVENTION, ModelCost
from vitopt.models import LoadedModel
from vitopt.pruning.report import markdown as pruning_markdown
from vitopt.pruning.report import plot as pruning_plot
from vitopt.publish import write_atomic
from vitopt.recipe import Recipe

SCHEMA = "vitopt.report/1"


def build_report(
    *, model: LoadedModel, passes: list, costs: tuple[ModelCost, ModelCost], artifacts: list, baseline: dict,
    recipe: Recipe, threads: int, findings: dict[str, list] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The report document from what the pipeline measured; ``costs`` is (original, compressed)."""
    before, after = costs
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "vitopt_version": __version__,
        "model": _model_entry(model, cost=before),
        "compressed_model": after.to_dict(),
        "notices": list(model.notices),
        "recipe": recipe.model_dump(mode="json"),
        "passes": passes,
        "baseline": {**baseline, **before.to_dict()},
        "artifacts": [{**row, **after.to_dict()} for row in artifacts],
        "environment": describe_environment(threads=threads),
        "convertibility": {target: [f.to_dict() for f in fs] for target, fs in (findings or {}).items()},
    }


def _model_entry(model: LoadedModel, *, cost) -> dict[str, Any]:
    spec = model.spec
    return {
        "name": spec.name, "source": model.source, "weights": model.weights,
        "params": cost.params, "flops": cost.flops, "flops_convention": FLOPS_CONVENTION,
        "input_shape": list(spec.batch_shape(1)), "num_classes": spec.num_classes,
        "mean": list(spec.mean), "std": list(spec.std), "spec": spec.to_dict(),  # labels, resize: app bundles
    }  # fmt: skip


def add_plot(report: dict[str, Any], *, out_dir: Path) -> None:
    """The pruning widths plot beside the report (before the run's files are hashed)."""
    plot = pruning_plot(report, out_dir=out_dir)
    if plot:
        report["plot"] = plot


def write_report(report: dict[str, Any], *, out_dir: Path) -> None:
    write_atomic(out_dir / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    write_atomic(out_dir / "report.md", render_markdown(report))


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Artifacts that failed and were to ship: a candidate left out by the selection is not a failure."""
    return [a for a in report["artifacts"] if a["status"] in FAILED_STATUSES and a.get("chosen", True)]


def render_markdown(report: dict[str, Any]) -> str:
    m = report["model"]
    lines = [
        f"# vitopt report: {m['name']}",
        "",
        f"Model `{m['source']}` ({m['weights']} weights): {_millions(m['params'])} params, "
        f"{_giga(m['flops'])} GFLOPs ({m['flops_convention']}), input {m['input_shape']}.",
        "",
        *[f"> **Notice:** {n}" for n in report["notices"]],
        *_passes_md(report["passes"]),
        *pruning_markdown(report),
        *_artifacts_md(report),
        *_convertibility_md(report.get("convertibility") or {}),
        *_environment_md(report["environment"]),
    ]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def _passes_md(passes: list) -> list[str]:
    if not passes:
        return ["", "No model passes (baseline recipe)."]
    rows = ["", "## Passes", "", "| pass | seconds | params | GFLOPs |", "|---|---:|---:|---:|"]
    for p in passes:
        rows.append(
            f"| {p['name']} | {p['seconds']:.1f} | {_millions(p['params_before'])} -> "
            f"{_millions(p['params_after'])} | {_giga(p['flops_before'])} -> {_giga(p['flops_after'])} |"
        )
    return rows


def _artifacts_md(report: dict[str, Any]) -> list[str]:
    has_acc = any("accuracy" in a for a in report["artifacts"])
    head = "| target | precision | status | size | params | GFLOPs | parity (max diff / top-1) | p50 / p90 ms "
    rows = ["", "## Artifacts", "", head + ("| speedup | top-1 |" if has_acc else "| speedup |"),
            "|---|---|---|---:|---:|---:|---|---:|---:|" + ("---:|" if has_acc else "")]  # fmt: skip
    rows += [_artifact_row(a, has_acc=has_acc) for a in report["artifacts"]]
    rows += _baseline_md(report["baseline"])
    rows += [f"- **{a['target']} {a['precision']}**: {a['status']}: {a['reason']}"
             for a in report["artifacts"] if a.get("reason")]  # fmt: skip
    rows += [f"- **{a['target']} {a['precision']}** {'chosen' if a['chosen'] else 'not chosen'}: {a['selection']}"
             for a in report["artifacts"] if a.get("selection")]  # fmt: skip
    return rows


def _artifact_row(a: dict[str, Any], *, has_acc: bool) -> str:
    parity = a.get("parity")
    lat = a.get("latency_ms")
    cells = [
        a["target"], a["precision"], a["status"], _size(a.get("size_bytes")),
        _millions(a.get("params")), _giga(a.get("flops")),
        f"{parity['max_abs_diff']:.2e} / {parity['top1_agreement']:.3f}" if parity else "-",
        f"{lat['p50']:.2f} / {lat['p90']:.2f}" if lat else "-",
        f"{a['speedup']:.2f}x" if a.get("speedup") else "-",
    ]  # fmt: skip
    if has_acc:
        acc = a.get("accuracy")
        cells.append(f"{acc['top1']:.4f}" + (" (simulated)" if acc.get("simulated") else "") if acc else "-")
    return "| " + " | ".join(cells) + " |"


def _baseline_md(baseline: dict[str, Any]) -> list[str]:
    acc = baseline.get("accuracy")
    if not acc:
        return [""]
    return ["", f"Unmodified PyTorch model: top-1 {acc['top1']:.4f} on {acc['n_images']} images.", ""]


def _convertibility_md(findings: dict[str, list]) -> list[str]:
    """What each target needed rewritten (blockers never get here: compress stops first)."""
    rows = [f"- **{target}** {f['op']}: {f['detail']} -> {f['rewrite']}" for target, fs in findings.items() for f in fs]
    return ["", "## Rewrites for the targets", "", *rows] if rows else []


def _environment_md(env: dict[str, Any]) -> list[str]:
    return ["", "## Environment", "", summary_line(env)]


def _millions(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}M"


def _giga(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.3f}"


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"
