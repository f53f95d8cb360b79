"""The pruning part of the report: widths per block before and after, NViT's redistribution plot
(a PNG beside report.md), and the pass's predicted latency next to the one measured."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vitopt.pruning.widths import Widths

log = logging.getLogger("vitopt")
PLOT_FILE = "widths.png"
LABELS = {"emb": "EMB", "heads": "H", "qk": "QK", "v": "V", "mlp": "MLP"}


def pruning_passes(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in report.get("passes", []) if "widths_after" in p.get("details", {})]


def measured(report: dict[str, Any], details: dict[str, Any]) -> dict[str, float] | None:
    """The measured latency of the fp32 artifact on the runtime the budget was set on."""
    fmt = details.get("cost_info", {}).get("runtime_target")
    for a in report.get("artifacts", []):
        if a["target"] == fmt and a["precision"] in ("fp32", "fp16") and a.get("speedup") and a.get("latency_ms"):
            return {"ms": a["latency_ms"]["p50"], "fraction": 1 / a["speedup"], "speedup": a["speedup"]}
    return None


def markdown(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for p in pruning_passes(report):
        d = p["details"]
        nvit = "budget" in d  # NViT's closed-loop budget; DIMAP states its own rule in `summary`
        title = f"{d['criterion']} saliency" if nvit else d["criterion"]
        lines += ["", f"## Pruning ({p['name']}, {title})", "", _budget_line(report, d) if nvit else d["summary"], ""]
        if report.get("plot"):
            lines += [f"![widths per block before and after]({report['plot']})", ""]
        lines += _widths_table(Widths.from_dict(d["widths_before"]), Widths.from_dict(d["widths_after"]))
    return lines


def _budget_line(report: dict[str, Any], d: dict[str, Any]) -> str:
    b, pred = d["budget"], d["predicted"]
    line = (f"Budget: {b['kind']} {b['fraction']:.2f} of the original ({b['original']:.4g} -> target "
            f"{b['target']:.4g} {b['unit']}); predicted {pred['value']:.4g} {b['unit']} ({pred['fraction']:.3f})")
    seen = measured(report, d) if b["kind"] == "latency" else None
    if seen:
        line += f"; measured {seen['ms']:.4g} ms ({seen['fraction']:.3f} of the unmodified model"
        line += f", {seen['speedup']:.2f}x)"
    return line + "."


def _widths_table(before: Widths, after: Widths) -> list[str]:
    rows = ["| block | EMB | H | QK | V | MLP |", "|---:|---:|---:|---:|---:|---:|"]
    for i, (b, a) in enumerate(zip(before.blocks, after.blocks, strict=True)):
        cells = [f"{before.emb} -> {after.emb}"] + [f"{b.get(k)} -> {a.get(k)}" for k in ("heads", "qk", "v", "mlp")]
        rows.append(f"| {i} | " + " | ".join(cells) + " |")
    return rows


def plot(report: dict[str, Any], *, out_dir: Path) -> str | None:
    """Per block, each dimension's kept fraction (NViT's redistribution plot); None without matplotlib."""
    passes = pruning_passes(report)
    if not passes:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no widths plot (pip install 'vitopt[pruning]')")
        return None
    before, after = (Widths.from_dict(passes[-1]["details"][k]) for k in ("widths_before", "widths_after"))
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=120)
    _bars(ax, before, after)
    fig.tight_layout()
    fig.savefig(out_dir / PLOT_FILE)
    plt.close(fig)
    return PLOT_FILE


def _bars(ax, before: Widths, after: Widths) -> None:
    n, dims = len(before.blocks), ("heads", "qk", "v", "mlp")
    width = 0.8 / (len(dims) + 1)
    for j, dim in enumerate(("emb", *dims)):
        kept = [(after.emb / before.emb) if dim == "emb" else a.get(dim) / b.get(dim)
                for b, a in zip(before.blocks, after.blocks, strict=True)]  # fmt: skip
        ax.bar([i + j * width for i in range(n)], kept, width, label=LABELS[dim])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(n)], [str(i) for i in range(n)])
    ax.set_xlabel("block")
    ax.set_ylabel("kept fraction")
    ax.set_ylim(0, 1.05)
    ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.18), frameon=False)
