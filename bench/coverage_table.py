"""The support matrix bench_coverage.py prints: one row per family, one cell per target, and the first
line of every failure below the table (cells stay short)."""

from __future__ import annotations

from vitopt.environment import describe_environment, summary_line

TARGETS = ("onnx", "openvino", "coreml", "tensorrt")
REWRITE_KEYS = {"ranks_lowered": "rank>5 ops", "rolls_as_slices": "rolls", "resizes_as_matmuls": "resizes"}


def matrix_markdown(rows: list[dict]) -> str:
    header = ["family", "model", "params (M)", *TARGETS, "time (s)"]
    lines = [f"Machine: {summary_line(describe_environment())}", "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]  # fmt: skip
    notes = []
    for row in rows:
        cells = [_cell(row, target, notes) for target in TARGETS]
        lines.append(f"| {row['family']} | `{row['model']}` | {row.get('params_m', '?')} | " + " | ".join(cells)
                     + f" | {row['seconds']:.0f} |")  # fmt: skip
    ok = {t: sum(_passed(r, t) for r in rows) for t in TARGETS}
    lines += ["", "Passing: " + ", ".join(f"{t} {ok[t]}/{len(rows)}" for t in TARGETS)]
    return "\n".join(lines + (["", *notes] if notes else []))


def _passed(row: dict, target: str) -> bool:
    cell = row.get("targets", {}).get(target, {})
    wanted = "ok" if target in ("onnx", "openvino") else "not_benchmarked"
    return cell.get("status") == wanted and (target == "coreml" or cell.get("top1") == 1.0)


def _cell(row: dict, target: str, notes: list[str]) -> str:
    if "error" in row:
        if target == "onnx":
            notes.append(f"- {row['family']}: compress stopped: {row['error']}")
        return "stopped (see below)"
    cell = row["targets"].get(target)
    if cell is None:
        return "absent"
    if cell["status"] in ("export_failed", "verify_failed"):
        notes.append(f"- {row['family']} / {target}: {cell['status']}: {' '.join(cell['reason'])[:300]}")
        return f"**{cell['status']}**"
    if target == "coreml":
        rewrites = ", ".join(f"{name} {cell['export'][k]}" for k, name in REWRITE_KEYS.items()
                             if cell["export"].get(k))  # fmt: skip
        return "converted, validated" + (f" (rewrote {rewrites})" if rewrites else "")
    parity = f"agree {cell['top1']:.2f}, max diff {cell['max_abs_diff']:.0e}" if cell["top1"] is not None else ""
    if target == "tensorrt":
        return f"prepared; on {cell['parity_runtime']}: {parity}"
    return f"{cell['status']}, {parity}"
