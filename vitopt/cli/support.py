"""Console, progress, error mapping and flag parsing shared by the CLI commands."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from vitopt.errors import DataError, InputError, UnsupportedOptionError, VitoptError, one_line
from vitopt.logs import write_traceback

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


def setup_logging(*, debug: bool) -> None:
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logger = logging.getLogger("vitopt")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


def handle_errors(command: Callable) -> Callable:
    """One clear line and an exit code for every failure; a traceback only with --debug.

    vitopt's errors are the user's to fix (exit 2) or a run that failed (exit 1). Anything else is a bug:
    one line plus the log file holding its traceback (exit 1). Paths a command writes are checked first,
    so a bad one is refused before minutes of work rather than after.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.pop("debug", False))
        setup_logging(debug=debug)
        try:
            _check_paths(kwargs)
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise  # the command's own exit code, or the option parser's usage error
        except VitoptError as err:
            if debug:
                raise
            hint = f"\n  hint: {escape(err.hint)}" if err.hint else ""
            console.print(f"[bold red]{err.label}:[/] {escape(err.message)}{hint}")
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: nothing half-written was left behind")
            raise typer.Exit(130) from None
        except Exception as err:
            if debug:
                raise
            _report_internal_error(err, command=command.__name__)
            raise typer.Exit(1) from None

    return wrapper


_INPUT_PATHS = {"data": "--data", "eval_data": "--eval-data", "val_data": "--val-data"}


def _check_paths(kwargs: dict[str, Any]) -> None:
    for name, flag in _INPUT_PATHS.items():
        check_input_path(kwargs.get(name), flag=flag)
    check_output_file(kwargs.get("json_out"), flag="--json")
    check_output_file(kwargs.get("out"), flag="--out")  # a file a command writes (bundle's archive)


def _report_internal_error(err: Exception, *, command: str) -> None:
    where = write_traceback(err, command=command)
    console.print(f"[bold red]internal error[/] in vitopt {command}: {escape(one_line(err, with_type=True))}\n"
                  f"  the full traceback is in {where}; please report it (--debug prints it here)")  # fmt: skip


def check_output_file(path: Path | None, *, flag: str) -> None:
    """A file a command will write: its folder must exist (or be creatable) and be writable, and it must
    not be a folder. Checked before the command runs."""
    if path is None:
        return
    if path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a folder", hint=f"{flag} takes a file path, e.g. result.json")
    from vitopt.run_folder import existing_ancestor

    parent = existing_ancestor(path.absolute().parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {flag} {str(path)!r}: {str(parent)!r} is not a writable folder",
                         hint=f"pick another path for {flag}")  # fmt: skip


def check_input_path(path: Path | None, *, flag: str) -> None:
    """Data a command reads later (after loading a model, or after hours of passes) must exist now."""
    if path is not None and not path.exists():
        raise DataError(f"{flag} {str(path)!r} does not exist", hint="a folder of images (class subfolders for "
                        "labels) or a .tar of one")  # fmt: skip


def write_json_file(path: Path, data: Any) -> None:
    from vitopt.publish import write_atomic

    write_atomic(path, json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars as numbers; anything else json cannot take (paths) as text."""
    return value.item() if hasattr(value, "item") else str(value)


@contextmanager
def step(description: str) -> Iterator[None]:
    """A spinner while a step runs, then a line with how long it took."""
    start = time.perf_counter()
    with console.status(f"{description}..."):
        yield
    console.print(f"[green]done[/] {description} [dim]({time.perf_counter() - start:.1f} s)[/]")


def parse_floats(text: str | None, *, flag: str, count: int | None = None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if count is not None and len(values) != count:
        raise InputError(f"{flag} takes {count} values, got {len(values)}", hint=f"e.g. {flag} 3,224,224")
    return values


def spec_overrides(*, input_size: str | None, mean: str | None, std: str | None,
                   labels: Path | None) -> dict[str, Any]:  # fmt: skip
    size = parse_floats(input_size, flag="--input-size", count=3)
    overrides = {
        "input_size": tuple(int(v) for v in size) if size else None,
        "mean": parse_floats(mean, flag="--mean"),
        "std": parse_floats(std, flag="--std"),
        "labels": _read_labels(labels) if labels else None,
    }
    return overrides


def _read_labels(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise InputError(f"labels file {str(path)!r} does not exist", hint="one class name per line")
    labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not labels:
        raise UnsupportedOptionError(f"labels file {str(path)!r} is empty")
    return labels


def parse_assignments(items: list[str] | None, *, flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML scalars (ints, floats, bools, lists)."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} takes key=value, got {item!r}", hint=f"e.g. {flag} embed_dim=96")
        try:
            result[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:  # e.g. an unclosed list: depths=[2,2
            problem = getattr(err, "problem", None) or err
            raise InputError(f"{flag} {item!r}: the value is not a YAML scalar or list ({problem})",
                             hint=f"e.g. {flag} depths=[2,2,6,2] or {flag} name=text") from err
    return result


def load_for_cli(name: str, *, checkpoint=None, trust=False, model_args=None, input_size=None, mean=None,
                 std=None, labels=None):  # fmt: skip
    """load_model with the CLI's spellings of its options, behind a progress step."""
    from vitopt.models import load_model

    overrides = spec_overrides(input_size=input_size, mean=mean, std=std, labels=labels)
    kwargs = parse_assignments(model_args, flag="--model-arg")
    with step(f"loading model {name}"):
        return load_model(name=name, checkpoint=checkpoint, trust_checkpoint=trust, spec_overrides=overrides,
                          model_kwargs=kwargs)  # fmt: skip
