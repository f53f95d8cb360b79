"""The ``vitopt`` command: a thin Typer layer that fills a recipe or settings and calls the library.

Commands live in focused modules that register on ``app``; ``python -m vitopt.cli`` (and
``torchrun -m vitopt.cli``) runs the same app as the ``vitopt`` console script.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="vitopt", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Compress, export, verify and measure vision transformers.",
)  # fmt: skip

from vitopt.cli import check_cmds, export_cmds, train_cmds  # noqa: E402,F401  (register the commands)


def main() -> None:
    app()
