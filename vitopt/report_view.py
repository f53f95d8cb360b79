"""The report as plain text for a terminal or a CI log: short columns, details as lines below.

Plain text, not a rich table: a CI log has no terminal width, and a table squeezed to 80
columns cuts ``not_benchmarked`` to ``not_ben…``. Every line fits in 80 columns.
"""

from __future__ import annotations

import textwrap
from typing import Any

from vitopt.environment import summary_line

WIDTH = 80
COLUMNS = (("target", 8, "<"), ("precision", 12, "<"), ("status", 15, "<"), ("size", 9, ">"), ("p50 ms", 7, ">"),
           ("speedup", 7, ">"), ("top-1", 6, ">"), ("chosen", 6, ">"))  # fmt: skip


def render_text(report: dict[str, Any]) -> str:
    m = report["model"]
    lines = [f"{m['name']} ({m['weights']} weights): {m['params'] / 1e6:.2f}M params, {m['flops'] / 1e9:.3f} GFLOPs"]
    lines += [f"notice: {n}" for n in report["notices"]]
    lines += [_pass_line(p) for p in report["passes"]] or ["passes: none"]
    acc = report["baseline"].get("accuracy")
    if acc:
        lines.append(f"unmodified model: top-1 {acc['top1']:.4f} on {acc['n_images']} images")
    lines += ["", _cells([name for name, _, _ in COLUMNS]), *(_cells(_row(a)) for a in report["artifacts"]), ""]
    lines += [detail for a in report["artifacts"] for detail in _details(a)]
    lines.append(summary_line(report["environment"]))
    return "\n".join(_wrap(line) for line in lines) + "\n"


def _pass_line(p: dict[str, Any]) -> str:
    params = f"params {p['params_before'] / 1e6:.2f}M -> {p['params_after'] / 1e6:.2f}M"
    return f"pass {p['name']}: {p['seconds']:.1f} s, {params}, GFLOPs {p['flops_before'] / 1e9:.3f} -> " \
        f"{p['flops_after'] / 1e9:.3f}"


def _row(a: dict[str, Any]) -> list[str]:
    lat, acc = a.get("latency_ms"), a.get("accuracy")
    return [
        a["target"], a["precision"], a["status"],
        f"{a['size_bytes'] / 2**20:.1f} MiB" if a.get("size_bytes") else "-",
        f"{lat['p50']:.2f}" if lat else "-",
        f"{a['speedup']:.2f}x" if a.get("speedup") else "-",
        (f"{acc['top1']:.3f}" + ("*" if acc.get("simulated") else "")) if acc else "-",
        {True: "yes", False: "no"}.get(a.get("chosen"), ""),
    ]  # fmt: skip


def _cells(values: list[str]) -> str:
    return " ".join(f"{v:{align}{width}}" for v, (_, width, align) in zip(values, COLUMNS, strict=True)).rstrip()


def _details(a: dict[str, Any]) -> list[str]:
    name, parity, lat = f"{a['target']} {a['precision']}", a.get("parity"), a.get("latency_ms")
    lines = []
    if parity:
        lines.append(f"{name}: parity on {parity['runtime']}: max |diff| {parity['max_abs_diff']:.2e}, "
                     f"top-1 agreement {parity['top1_agreement']:.3f} on {parity['n_images']} images")  # fmt: skip
    mobile = (a.get("validation") or {}).get("mobile") or {}
    if "NNAPI" in mobile:
        eps = ", ".join(f"{ep} {mobile[ep]['verdict']} ({mobile[ep]['partitions']} partitions)"
                        for ep in ("NNAPI", "CoreML MLProgram"))  # fmt: skip
        lines.append(f"{name}: ONNX Runtime mobile checker: {eps}")
    if lat:
        base = a["baseline_latency_ms"]
        lines.append(f"{name}: p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms; unmodified model "
                     f"p50 {base['p50']:.3f} ms ({lat['runs']} runs each, interleaved)")  # fmt: skip
    if a.get("simulated"):
        sim = a["simulated"]
        top1 = f", top-1 {a['accuracy']['top1']:.4f}" if a.get("accuracy") else ""
        lines.append(f"{name}: * simulated ({sim['how']}): top-1 agreement {sim['top1_agreement']:.3f}{top1}")
    if a.get("reason"):
        lines.append(f"{name}: {a['status']}: {a['reason']}")
    if a.get("selection"):
        lines.append(f"{name}: {'chosen' if a['chosen'] else 'not chosen'}: {a['selection']}")
    if a.get("path"):
        lines.append(f"{name}: {a['path']}")
    return lines


def _wrap(line: str) -> str:
    return "\n".join(textwrap.wrap(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False)) or line
