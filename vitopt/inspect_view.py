"""Rich rendering of ``describe_model`` output for ``vitopt inspect``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render_description(info: dict[str, Any], *, console: Console) -> None:
    spec = info["spec"]
    console.print(f"[bold]{info['name']}[/] ({info['weights']} weights)")
    console.print(f"params {info['params'] / 1e6:.3f}M, {info['flops'] / 1e9:.3f} GFLOPs "
                  f"({info['flops_convention']})")  # fmt: skip
    console.print(f"input {spec['input_size']}, mean {spec['mean']}, std {spec['std']}, "
                  f"{spec['num_classes']} classes, {spec['interpolation']}, crop {spec['crop_pct']}")  # fmt: skip
    console.print(_children_table(info["children"]))
    if info["attention"]:
        console.print(_attention_table(info["attention"]))
    console.print(f"BatchNorm layers: {info['batchnorm_layers']}")


def _children_table(children: list[dict[str, Any]]) -> Table:
    table = Table(title="top-level modules")
    for column in ("name", "type", "params", "blocks"):
        table.add_column(column)
    for c in children:
        blocks = c.get("blocks")
        table.add_row(c["name"], c["type"], f"{c['params']:,}",
                      f"{blocks['count']} x {', '.join(blocks['types'])}" if blocks else "")  # fmt: skip
    return table


def _attention_table(layers: list[dict[str, Any]]) -> Table:
    table = Table(title="attention layers")
    for column in ("name", "type", "heads", "head dim"):
        table.add_column(column)
    for a in layers:
        table.add_row(a["name"], a["type"], str(a["num_heads"]), str(a["head_dim"]))
    return table
