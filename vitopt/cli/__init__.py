"""The ``vitopt`` command: a thin Typer layer that fills a recipe or settings and calls the library.

Commands live in focused modules that register on ``app``; ``python -m vitopt.cli`` (and
``torchrun -m vitopt.cli``) runs the same app as the ``vitopt`` console script.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="vitopt", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Compress, export, verify and measure vision transformers.",
)  # fmt: skip

# Each module registers its commands on `app`; --help lists them in this order.
for _module in ("compress_cmd", "check_cmds", "quant_cmd", "bench_cmd", "gate_cmd", "bundle_cmd", "inspect_cmd",
                "train_cmds"):
    importlib.import_module(f"vitopt.cli.{_module}")


def main() -> None:
    app()
